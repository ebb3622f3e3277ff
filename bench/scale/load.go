package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrider-mesh/outrider/internal/testutil/binmesh"
)

// loadPair is the mesh of the load figures: a client sidecar with one
// HTTP upstream to a server sidecar in front of app, both with the same
// overload budget.
type loadPair struct {
	*binmesh.Mesh
	up string // the client sidecar's HTTP upstream listener
}

func startLoadPair(o options, app string, maxRequests int) (loadPair, error) {
	addrs, err := binmesh.FreeAddrs(4)
	if err != nil {
		return loadPair{}, err
	}
	budget := fmt.Sprintf("overload: {max_requests: %d, max_memory: %s}\n", maxRequests, o.maxMemory)
	p := loadPair{up: addrs[0]}
	flags := []string{"-log-level", "warn"}
	if o.profileDir != "" {
		flags = append(flags, "-enable-pprof")
	}
	p.Mesh, err = binmesh.Start(context.Background(), binmesh.Options{
		Bin: o.bin, TrustDomain: trustDomain, Flags: flags,
		Sidecars: []binmesh.Sidecar{
			{Name: "client", Admin: addrs[2], Config: fmt.Sprintf(`upstreams:
  - {name: web, bind: %q, protocol: http, endpoints: [{address: %q, spiffe_id: %q}]}
`, p.up, addrs[1], id("web")) + budget},
			{Name: "web", Admin: addrs[3], Config: server(addrs[1], app, "http", budget)},
		},
	})
	if err == nil {
		// Warm the pair (the pool of mesh connections, buffers) before
		// anything is recorded.
		closedLoop(p.up, o.capacityConns, o.warmup)
	}
	return p, err
}

// withPair starts a load pair with max_requests, runs f on it and stops it.
func withPair(o options, app string, maxRequests int, f func(loadPair) error) error {
	p, err := startLoadPair(o, app, maxRequests)
	if p.Mesh != nil {
		defer p.Stop()
	}
	if err != nil {
		return err
	}
	if err := f(p); err != nil {
		return fmt.Errorf("%w\n%s", err, p.Logs())
	}
	return nil
}

// load runs the capacity phase, then the overload phase and the soak,
// each on a pair of its own: the capacity pair has the default
// max_requests (10,000, not reached by the closed loop), the other two
// the one sized from the capacity, and neither's heap blurs the next's.
func load(o options, app string) error {
	rate := o.capacityRate
	err := withPair(o, app, 0, func(p loadPair) error {
		if rate > 0 {
			fmt.Printf("capacity: taken as %.0f req/s (-capacity-rate)\n", rate)
			return nil
		}
		c, lat := closedLoop(p.up, o.capacityConns, o.capacityFor)
		rate = c.rate(o.capacityFor)
		fmt.Printf("capacity: %d keep-alive clients, closed loop for %v: %.0f req/s; latency p50 %s p99 %s (%d errors)\n",
			o.capacityConns, o.capacityFor, rate, ms(lat.p(0.5)), ms(lat.p(0.99)), c.other)
		if rate <= 0 {
			return fmt.Errorf("capacity: nothing served")
		}
		return nil
	})
	if err != nil {
		return err
	}
	maxRequests := o.maxRequests
	if maxRequests == 0 {
		maxRequests = int(math.Ceil(rate * o.admitLatency.Seconds()))
	}
	fmt.Printf("budget: max_requests %d (capacity x %v), max_memory %s, on both sidecars\n", maxRequests, o.admitLatency, o.maxMemory)
	if o.overloadFor > 0 {
		err := withPair(o, app, maxRequests, func(p loadPair) error { return overload(o, p, rate) })
		if err != nil {
			return fmt.Errorf("overload: %w", err)
		}
	}
	if o.soakFor > 0 {
		err := withPair(o, app, maxRequests, func(p loadPair) error { return soak(o, p, rate/2) })
		if err != nil {
			return fmt.Errorf("soak: %w", err)
		}
	}
	return nil
}

// counts are the outcomes of the requests of one window.
type counts struct {
	offered int // arrivals scheduled
	notSent int // arrivals with no free client: the generator was saturated
	ok      int // 200
	shed    int // 503 with x-outrider-error: overloaded
	other   int // any other status or error
	lat     latencies
}

func (c counts) rate(d time.Duration) float64 { return float64(c.ok) / d.Seconds() }

func (c *counts) add(r result) {
	switch r.kind {
	case kindOK:
		c.ok++
		c.lat = append(c.lat, r.lat)
	case kindShed:
		c.shed++
	default:
		c.other++
	}
}

// latencies of admitted requests.
type latencies []time.Duration

// p is the q quantile (nearest rank); it sorts l.
func (l latencies) p(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	slices.Sort(l)
	return l[min(len(l)-1, int(q*float64(len(l))))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

type kind uint8

const (
	kindOK kind = iota
	kindShed
	kindOther
)

// result is one request's outcome; at is when it was scheduled (open
// loop) or sent (closed loop), from the start of the run.
type result struct {
	at   time.Duration
	lat  time.Duration
	kind kind
}

// client is one keep-alive connection to the upstream listener, dialled
// again after the sidecar closed it or an exchange failed.
type client struct {
	addr string
	c    net.Conn
	br   *bufio.Reader
}

func (cl *client) do() (kind, error) {
	if cl.c == nil {
		c, err := net.DialTimeout("tcp", cl.addr, 10*time.Second)
		if err != nil {
			return kindOther, err
		}
		cl.c, cl.br = c, bufio.NewReaderSize(c, 4096)
	}
	k, keep, err := exchange(cl.c, cl.br)
	if err != nil || !keep {
		cl.c.Close()
		cl.c = nil
	}
	return k, err
}

// exchange sends one GET on c and reads the answer.
func exchange(c net.Conn, br *bufio.Reader) (k kind, keep bool, err error) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: web\r\n\r\n"); err != nil {
		return kindOther, false, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return kindOther, false, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return kindOther, false, err
	}
	switch {
	case resp.StatusCode == 200:
		return kindOK, !resp.Close, nil
	case resp.StatusCode == 503 && resp.Header.Get("X-Outrider-Error") == "overloaded":
		return kindShed, !resp.Close, nil
	}
	return kindOther, !resp.Close, fmt.Errorf("status %d %s", resp.StatusCode, resp.Header.Get("X-Outrider-Error"))
}

// closedLoop runs n clients, each sending its next request as soon as
// the last one is answered, for d.
func closedLoop(addr string, n int, d time.Duration) (counts, latencies) {
	var mu sync.Mutex
	var total counts
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range n {
		wg.Go(func() {
			cl := &client{addr: addr}
			var c counts
			for time.Now().Before(end) {
				start := time.Now()
				k, _ := cl.do()
				c.add(result{lat: time.Since(start), kind: k})
			}
			if cl.c != nil {
				cl.c.Close()
			}
			mu.Lock()
			total.ok += c.ok
			total.other += c.other
			total.shed += c.shed
			total.lat = append(total.lat, c.lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return total, total.lat
}

// step is one stretch of an open-loop run at a fixed arrival rate.
type step struct {
	rate float64 // requests per second
	d    time.Duration
}

// openLoop offers requests at fixed arrival rates, step after step, from
// workers clients. Every millisecond the dispatcher hands the arrivals due
// by then to idle workers; an arrival that finds none is counted as not
// sent, never delayed (a delayed arrival would hide the sidecar's latency
// behind the generator's). The latency of a request is from its
// hand-over to the end of its response. It returns every outcome and the
// not-sent arrivals per window of the given width.
func openLoop(addr string, workers int, steps []step, window time.Duration) (results []result, notSent []int, offered []int, errs errorCounts) {
	jobs := make(chan time.Duration)
	errs = errorCounts{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			cl := &client{addr: addr}
			var mine []result
			for at := range jobs {
				t := time.Now()
				k, err := cl.do()
				mine = append(mine, result{at: at, lat: time.Since(t), kind: k})
				if err != nil {
					mu.Lock()
					errs.add(at, err)
					mu.Unlock()
				}
			}
			if cl.c != nil {
				cl.c.Close()
			}
			mu.Lock()
			results = append(results, mine...)
			mu.Unlock()
		})
	}
	var total time.Duration
	for _, s := range steps {
		total += s.d
	}
	n := int((total + window - 1) / window)
	notSent, offered = make([]int, n), make([]int, n)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var stepStart time.Duration
	for _, s := range steps {
		var due int
		for due < int(s.rate*s.d.Seconds()) {
			<-tick.C
			now := time.Since(start)
			target := min(int(s.rate*(now-stepStart).Seconds()), int(s.rate*s.d.Seconds()))
			for ; due < target; due++ {
				// The arrival's own time, not the tick's: windows are
				// cut by when a request was due.
				at := stepStart + time.Duration(float64(due)/s.rate*float64(time.Second))
				w := min(int(at/window), n-1)
				offered[w]++
				select {
				case jobs <- at:
				default:
					notSent[w]++
				}
			}
		}
		stepStart += s.d
	}
	close(jobs)
	wg.Wait()
	return results, notSent, offered, errs
}

// errorCounts counts the other errors by message, with when (from the
// start of the run) each was first seen.
type errorCounts map[string]*struct {
	n     int
	first time.Duration
}

func (e errorCounts) add(at time.Duration, err error) {
	msg := err.Error()
	// Addresses and ports differ per connection; the kind is what counts.
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.Contains(msg[:i], "127.0.0.1") {
		msg = msg[i+2:]
	}
	c := e[msg]
	if c == nil {
		c = &struct {
			n     int
			first time.Duration
		}{first: at}
		e[msg] = c
	}
	c.n++
}

func (e errorCounts) String() string {
	if len(e) == 0 {
		return "none"
	}
	var parts []string
	for msg, c := range e {
		parts = append(parts, fmt.Sprintf("%d x %q (first at %v)", c.n, msg, c.first.Round(time.Millisecond)))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// windows cuts results into windows of width w.
func windows(results []result, notSent, offered []int, w time.Duration) []counts {
	out := make([]counts, len(offered))
	for i := range out {
		out[i].notSent, out[i].offered = notSent[i], offered[i]
	}
	for _, r := range results {
		out[min(int(r.at/w), len(out)-1)].add(r)
	}
	return out
}

// overload offers the overload factor times the capacity for
// o.overloadFor, between a baseline and a recovery at half capacity, and
// prints the windows, the sidecars' shed counters and the client
// sidecar's peak RSS against its budget.
func overload(o options, p loadPair, capacity float64) error {
	const window = 10 * time.Second
	baseline := step{capacity / 2, window}
	steps := []step{baseline, {capacity * o.overloadFactor, o.overloadFor}, {capacity / 2, o.recoverFor}}
	client := p.Sidecar("client")
	peak := watchRSS(client.Pid())
	cpu := watchCPU(window, client.Pid(), p.Sidecar("web").Pid(), os.Getpid())
	fmt.Printf("overload: open loop, %d client connections: 0.5x for %v, %gx for %v, 0.5x for %v\n",
		o.workers, baseline.d, o.overloadFactor, o.overloadFor, o.recoverFor)
	results, notSent, offered, errs := openLoop(p.up, o.workers, steps, window)
	rssMax := peak()
	cpus := cpu()
	select {
	case <-client.Exited():
		return fmt.Errorf("the client sidecar exited")
	default:
	}
	ws := windows(results, notSent, offered, window)
	fmt.Println("| window | offered req/s | admitted (200) | shed (503 OM) | other errors | not sent (generator saturated) | p50 admitted | p99 admitted | CPU cores: client, web, this tool |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	var at time.Duration
	phase := func(t time.Duration) string {
		switch {
		case t < baseline.d:
			return "0.5x"
		case t < baseline.d+o.overloadFor:
			return fmt.Sprintf("%gx", o.overloadFactor)
		}
		return "0.5x"
	}
	for i, c := range ws {
		sec := min(window, baseline.d+o.overloadFor+o.recoverFor-at).Seconds()
		var used []string
		if i < len(cpus) {
			for _, v := range cpus[i] {
				used = append(used, fmt.Sprintf("%.2f", v))
			}
		}
		fmt.Printf("| %3.0f-%.0fs %s | %.0f | %d | %d | %d | %d | %s | %s | %s |\n", at.Seconds(), at.Seconds()+sec, phase(at),
			float64(c.offered)/sec, c.ok, c.shed, c.other, c.notSent, ms(c.lat.p(0.5)), ms(c.lat.p(0.99)), strings.Join(used, ", "))
		at += window
	}
	var tot counts
	for _, c := range ws {
		tot.offered += c.offered
		tot.notSent += c.notSent
		tot.ok += c.ok
		tot.shed += c.shed
		tot.other += c.other
	}
	fmt.Printf("overload: total offered %d, admitted %d, shed %d, other errors %d, not sent %d\n", tot.offered, tot.ok, tot.shed, tot.other, tot.notSent)
	fmt.Printf("overload: other errors: %v\n", errs)
	for _, name := range []string{"client", "web"} {
		m, err := scrape(p.Sidecar(name).Admin)
		if err != nil {
			return err
		}
		fmt.Printf("overload: %s sidecar counted %.0f shed (max_requests), %.0f (memory), %.0f refused connections\n", name,
			m[`outrider_overload_shed_requests_total{reason="max_requests"}`], m[`outrider_overload_shed_requests_total{reason="memory"}`],
			m.sum("outrider_overload_refused_connections_total"))
	}
	fmt.Printf("overload: client sidecar RSS max %.1f MiB, budget max_memory %s\n", mib(rssMax), o.maxMemory)
	recovery(results, baseline.d+o.overloadFor, ws[0].lat.p(0.99))
	return nil
}

// recovery prints when, after the drop at drop, the shedding stopped and
// the p99 of admitted requests came back near the baseline (at most twice
// it), by 1 s windows.
func recovery(results []result, drop, baseP99 time.Duration) {
	const w = time.Second
	var after []result
	var lastShed time.Duration = -1
	for _, r := range results {
		if r.at >= drop {
			after = append(after, r)
			if r.kind == kindShed && r.at-drop > lastShed {
				lastShed = r.at - drop
			}
		}
	}
	n := 0
	for _, r := range after {
		n = max(n, int((r.at-drop)/w)+1)
	}
	secs := make([]counts, n)
	for _, r := range after {
		secs[int((r.at-drop)/w)].add(r)
	}
	first := -1
	for i, c := range secs {
		if c.shed == 0 && c.lat.p(0.99) <= 2*baseP99 {
			first = i
			break
		}
	}
	var perSec []string
	for i := range min(len(secs), 10) {
		perSec = append(perSec, fmt.Sprint(secs[i].shed))
	}
	fmt.Printf("recovery: shed per second after the drop: %s\n", strings.Join(perSec, " "))
	shed := "none shed after the drop"
	if lastShed >= 0 {
		shed = fmt.Sprintf("last shed request scheduled %v after the drop", lastShed.Round(time.Millisecond))
	}
	if first < 0 {
		fmt.Printf("recovery: NOT recovered: no 1 s window after the drop without shedding and with p99 <= 2x baseline (%s); %s\n", ms(baseP99), shed)
		return
	}
	fmt.Printf("recovery: second %d-%d after the drop is the first with 0 shed and p99 %s <= 2x baseline p99 %s; %s\n",
		first, first+1, ms(secs[first].lat.p(0.99)), ms(baseP99), shed)
}

// watchRSS samples pid's RSS every 100ms until the returned function is
// called, which returns the largest.
func watchRSS(pid int) func() int64 {
	var peak atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if r, err := rss(pid); err == nil && r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 { close(stop); <-done; return peak.Load() }
}

// watchCPU samples the CPU time of pids every window until the returned
// function is called, which returns per window the cores each used.
func watchCPU(window time.Duration, pids ...int) func() [][]float64 {
	stop := make(chan struct{})
	done := make(chan struct{})
	var out [][]float64
	read := func() []float64 {
		v := make([]float64, len(pids))
		for i, pid := range pids {
			v[i], _ = cpuSeconds(pid)
		}
		return v
	}
	go func() {
		defer close(done)
		t := time.NewTicker(window)
		defer t.Stop()
		last, lastAt := read(), time.Now()
		sample := func() {
			now, at := read(), time.Now()
			row := make([]float64, len(pids))
			for i := range now {
				row[i] = (now[i] - last[i]) / at.Sub(lastAt).Seconds()
			}
			out = append(out, row)
			last, lastAt = now, at
		}
		for {
			select {
			case <-stop:
				sample()
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return func() [][]float64 { close(stop); <-done; return out }
}

// cpuSeconds is the user and system CPU time pid used so far.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses: state is
	// field 3, utime and stime are 14 and 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	var ut, st float64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return (ut + st) / clockTicks, nil
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// metrics is one /metrics scrape: the series (name with labels as
// exposed) and their values.
type metrics map[string]float64

func (m metrics) sum(name string) float64 {
	var s float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			s += v
		}
	}
	return s
}

// scrape reads admin's /metrics (the Prometheus text format).
func scrape(admin string) (metrics, error) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s/metrics: status %d", admin, resp.StatusCode)
	}
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[i+1:], &v); err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}
