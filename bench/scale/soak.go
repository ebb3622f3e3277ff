package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// soakSeries are the figures sampled from each sidecar. heap is the heap
// marked live by the last collection (/gc/heap/live:bytes): unlike the
// heap in use it does not follow the garbage made since, so a trend in it
// is data kept.
var soakSeries = []struct {
	name, metric string
	unit         float64 // divisor for printing
	unitName     string
	// floor is the growth over the soak (slope times duration) that
	// fails it whatever the mean; a series also fails beyond 5% of its
	// mean, whichever is larger.
	floor float64
	// info: printed, not judged (it follows garbage, not only data kept).
	info bool
}{
	{"heap live", "go_gc_heap_live_bytes", 1 << 20, "MiB", 2 << 20, false},
	{"heap objects (live and garbage)", "go_memory_classes_heap_objects_bytes", 1 << 20, "MiB", 0, true},
	{"GC cycles", "go_gc_cycles_total_gc_cycles_total", 1, "", 0, true},
	{"client connections open", "outrider_overload_connections", 1, "", 0, true},
	{"goroutines", "go_goroutines", 1, "", 20, false},
	{"open fds", "process_open_fds", 1, "", 20, false},
	{"RSS", "", 1 << 20, "MiB", 8 << 20, false},
}

const (
	soakEvery  = 10 * time.Second
	soakWarmup = time.Minute // left out of the slope: pools and buffers filling
)

// soak offers rate for o.soakFor and samples both sidecars every
// soakEvery, then prints each series' first, last and largest value, its
// least-squares slope per minute after soakWarmup, and a verdict.
func soak(o options, p loadPair, rate float64) error {
	names := []string{"client", "web"}
	type sample struct {
		t time.Duration
		v []float64 // per soakSeries
	}
	samples := map[string][]sample{}
	done := make(chan struct{})
	var results []result
	var notSent, offered []int
	var errs errorCounts
	go func() {
		defer close(done)
		results, notSent, offered, errs = openLoop(p.up, o.workers, []step{{rate, o.soakFor}}, o.soakFor)
	}()
	fmt.Printf("soak: open loop at %.0f req/s (half capacity) for %v, %d client connections, sampling every %v\n", rate, o.soakFor, o.workers, soakEvery)
	start := time.Now()
	tick := time.NewTicker(soakEvery)
	defer tick.Stop()
	profiled := false
	for running := true; running; {
		select {
		case <-done:
			running = false
			continue
		case <-tick.C:
		}
		t := time.Since(start)
		if o.profileDir != "" && t >= soakWarmup && !profiled {
			profiled = true
			if err := saveProfiles(p, names, o.profileDir, "1m"); err != nil {
				return err
			}
		}
		for _, name := range names {
			sc := p.Sidecar(name)
			m, err := scrape(sc.Admin)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			r, err := rss(sc.Pid())
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			s := sample{t: t}
			for _, ser := range soakSeries {
				v, ok := m[ser.metric]
				if ser.metric == "" {
					v, ok = float64(r), true
				}
				if !ok {
					return fmt.Errorf("%s: /metrics has no %s", name, ser.metric)
				}
				s.v = append(s.v, v)
			}
			samples[name] = append(samples[name], s)
		}
	}
	if o.profileDir != "" {
		if err := saveProfiles(p, names, o.profileDir, "end"); err != nil {
			return err
		}
	}
	ws := windows(results, notSent, offered, o.soakFor)
	c := ws[0]
	fmt.Printf("soak: offered %d, admitted %d, shed %d, other errors %d, not sent %d; admitted p50 %s p99 %s\n",
		c.offered, c.ok, c.shed, c.other, c.notSent, ms(c.lat.p(0.5)), ms(c.lat.p(0.99)))
	fmt.Printf("soak: other errors: %v\n", errs)
	for _, name := range names {
		fmt.Printf("soak: %s samples (s", name)
		for _, ser := range soakSeries {
			fmt.Printf(", %s", ser.name)
		}
		fmt.Print("):")
		for _, s := range samples[name] {
			fmt.Printf(" %.0f", s.t.Seconds())
			for i, ser := range soakSeries {
				fmt.Printf("/%.1f", s.v[i]/ser.unit)
			}
		}
		fmt.Println()
	}
	fmt.Println("| sidecar | series | first | last | max | slope per minute (after the first minute) | growth over the soak | threshold | verdict |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	pass, short := c.other == 0, false
	for _, name := range names {
		ss := samples[name]
		for i, ser := range soakSeries {
			var xs, ys []float64
			first, last, peak := ss[0].v[i], ss[len(ss)-1].v[i], 0.0
			var sum float64
			for _, s := range ss {
				peak = max(peak, s.v[i])
				sum += s.v[i]
				if s.t >= soakWarmup {
					xs = append(xs, s.t.Minutes())
					ys = append(ys, s.v[i])
				}
			}
			slope := leastSquares(xs, ys)
			growth := slope * o.soakFor.Minutes()
			limit := max(ser.floor, 0.05*sum/float64(len(ss)))
			f := func(v float64) string { return fmt.Sprintf("%.1f%s", v/ser.unit, unitSuffix(ser.unitName)) }
			verdict, lim := "pass", f(limit)
			switch {
			case ser.info:
				verdict, lim = "(not judged)", "-"
			case len(xs) < 3:
				verdict, short = "too short", true
			case growth > limit:
				verdict, pass = "FAIL", false
			}
			fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, ser.name, f(first), f(last), f(peak), f(slope), f(growth), lim, verdict)
		}
	}
	verdict := "PASS"
	switch {
	case !pass:
		verdict = "FAIL"
	case short:
		verdict = "NO VERDICT (too short for a slope after the first minute)"
	}
	fmt.Printf("soak: %s: growth over %v (least-squares slope after the first minute, times the duration) against max(floor, 5%% of the mean) for heap live, goroutines, open fds and RSS on both sidecars, and no request failed other than shed (other errors %d; shed %d, %.2f%% of those sent)\n",
		verdict, o.soakFor, c.other, c.shed, 100*float64(c.shed)/float64(max(1, c.offered-c.notSent)))
	return nil
}

func unitSuffix(u string) string {
	if u == "" {
		return ""
	}
	return " " + u
}

// leastSquares is the slope of the least-squares line through (xs, ys),
// 0 with fewer than two points.
func leastSquares(xs, ys []float64) float64 {
	n := float64(len(xs))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// saveProfiles writes each sidecar's heap and goroutine profiles (the
// pair runs with -enable-pprof when -profile-dir is set) as
// NAME-KIND-WHEN.pb.gz into dir.
func saveProfiles(p loadPair, names []string, dir, when string) error {
	for _, name := range names {
		for _, kind := range []string{"heap", "goroutine"} {
			resp, err := http.Get("http://" + p.Sidecar(name).Admin + "/debug/pprof/" + kind)
			if err != nil {
				return err
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			if resp.StatusCode != 200 {
				return fmt.Errorf("%s /debug/pprof/%s: status %d", name, kind, resp.StatusCode)
			}
			if err := os.WriteFile(filepath.Join(dir, name+"-"+kind+"-"+when+".pb.gz"), b, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}
