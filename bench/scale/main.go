// Command scale measures what a sidecar pair holds: idle client
// connections (memory per connection on the outbound sidecar) and a burst
// of new connections through an L4 pair. It runs the real binary in static
// mode with identities from `outrider cert`, on loopback, and prints one
// line per figure. See bench/README.md.
//
//	go run ./bench/scale -outrider bin/outrider -idle 10000 -burst 1000
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrider-mesh/outrider/internal/testutil/binmesh"
)

const trustDomain = "scale.test"

func main() {
	var o options
	flag.StringVar(&o.bin, "outrider", "bin/outrider", "the outrider binary")
	flag.IntVar(&o.idle, "idle", 10000, "idle client connections to hold through the HTTP pair (0: skip)")
	flag.DurationVar(&o.idleSettle, "idle-settle", 150*time.Second, "how long the idle connections are then held for the settled figure (past the Go runtime's forced collection every 2 minutes; 0: skip)")
	flag.IntVar(&o.burst, "burst", 1000, "connections opened at once through the L4 pair (0: skip)")
	flag.DurationVar(&o.capacityFor, "capacity", 10*time.Second, "closed-loop run that finds the HTTP pair's capacity (needed by -overload and -soak)")
	flag.IntVar(&o.capacityConns, "capacity-conns", 32, "keep-alive clients of the closed-loop run")
	flag.Float64Var(&o.capacityRate, "capacity-rate", 0, "take this as the capacity (req/s) instead of measuring it: the same offered load for runs to compare")
	flag.DurationVar(&o.overloadFor, "overload", 60*time.Second, "open-loop run at -overload-factor times the capacity (0: skip the overload phase)")
	flag.Float64Var(&o.overloadFactor, "overload-factor", 2, "offered load of the overload run, in capacities")
	flag.DurationVar(&o.recoverFor, "recover", 20*time.Second, "open-loop run at half capacity after the overload run")
	flag.DurationVar(&o.soakFor, "soak", 10*time.Minute, "open-loop soak at half capacity, sampling both sidecars every 10s (0: skip)")
	flag.IntVar(&o.workers, "workers", 1024, "client connections of the open-loop runs")
	flag.IntVar(&o.maxRequests, "max-requests", 0, "overload.max_requests of the overload and soak pairs (default: the capacity times -admit-latency)")
	flag.DurationVar(&o.admitLatency, "admit-latency", 50*time.Millisecond, "the queueing the default max_requests admits at capacity (Little's law)")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "closed-loop warm-up of each load pair, not recorded")
	flag.StringVar(&o.maxMemory, "max-memory", "128MiB", "overload.max_memory of the load pair")
	flag.StringVar(&o.profileDir, "profile-dir", "", "run the load pairs with -enable-pprof and save the soak's heap and goroutine profiles after the first minute and at the end here")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

type options struct {
	bin                                           string
	idle, burst                                   int
	capacityFor, overloadFor, recoverFor, soakFor time.Duration
	admitLatency, warmup, idleSettle              time.Duration
	capacityConns, workers, maxRequests           int
	overloadFactor, capacityRate                  float64
	maxMemory, profileDir                         string
}

func run(o options) error {
	app, err := startApp()
	if err != nil {
		return err
	}
	if o.idle > 0 || o.burst > 0 {
		if err := connections(o, app); err != nil {
			return err
		}
	}
	if o.overloadFor > 0 || o.soakFor > 0 {
		if err := load(o, app); err != nil {
			return err
		}
	}
	return nil
}

// connPair is the mesh of the connection figures: a client sidecar with
// an HTTP and a TCP upstream, each to its own server sidecar in front of
// app, every budget at its default.
type connPair struct {
	*binmesh.Mesh
	httpUp, tcpUp string // the client sidecar's listeners
}

func connections(o options, app string) error {
	addrs, err := binmesh.FreeAddrs(7)
	if err != nil {
		return err
	}
	p := connPair{httpUp: addrs[0], tcpUp: addrs[1]}
	m, err := binmesh.Start(context.Background(), binmesh.Options{
		Bin: o.bin, TrustDomain: trustDomain, Flags: []string{"-log-level", "warn"},
		Sidecars: []binmesh.Sidecar{
			{Name: "client", Admin: addrs[4], Config: fmt.Sprintf(`upstreams:
  - {name: web, bind: %q, protocol: http, endpoints: [{address: %q, spiffe_id: %q}]}
  - {name: webtcp, bind: %q, protocol: tcp, endpoints: [{address: %q, spiffe_id: %q}]}
`, p.httpUp, addrs[2], id("web"), p.tcpUp, addrs[3], id("webtcp"))},
			{Name: "web", Admin: addrs[5], Config: server(addrs[2], app, "http", "")},
			{Name: "webtcp", Admin: addrs[6], Config: server(addrs[3], app, "tcp", "")},
		},
	})
	if m != nil {
		defer m.Stop()
	}
	if err != nil {
		return err
	}
	p.Mesh = m
	if o.idle > 0 {
		if err := idleConnections(p, o.idle, o.idleSettle); err != nil {
			return fmt.Errorf("idle: %w\n%s", err, m.Logs())
		}
	}
	if o.burst > 0 {
		if err := burstL4(p, o.burst); err != nil {
			return fmt.Errorf("burst: %w\n%s", err, m.Logs())
		}
	}
	return nil
}

// server is a server sidecar's configuration: a public listener in front
// of app that admits the client, and extra (an overload section).
func server(bind, app, protocol, extra string) string {
	return fmt.Sprintf(`public: {bind: %q, local_service: %q, protocol: %s}
authorization:
  rules:
    - allow: {spiffe_id: %q}
`, bind, app, protocol, id("client")) + extra
}

// startApp is the application behind the server side: a plain HTTP server
// answering "ok", and for the L4 pair the same server (a request over the
// TCP tunnel reaches it as HTTP).
func startApp() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(ln)
	return ln.Addr().String(), nil
}

func id(name string) string { return "spiffe://" + trustDomain + "/" + name }

// rss reads a process's resident memory from /proc, in bytes.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// request sends one keep-alive GET on c and reads the answer.
func request(c net.Conn, br *bufio.Reader) error {
	k, _, err := exchange(c, br)
	if err == nil && k != kindOK {
		err = errors.New("shed: 503 overloaded")
	}
	return err
}

// idleConnections opens n client connections to the HTTP pair, each makes
// one request and then stays open and idle; it reports the outbound
// sidecar's resident memory per idle connection.
func idleConnections(p connPair, n int, settle time.Duration) error {
	pid := p.Sidecar("client").Pid()
	// Warm the sidecar (pools, first handshake) so the baseline holds
	// what every connection shares.
	if err := oneRequest(p.httpUp); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	before, err := rss(pid)
	if err != nil {
		return err
	}
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var failed atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 200)
	start := time.Now()
	for range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := net.Dial("tcp", p.httpUp)
			if err != nil {
				failed.Add(1)
				return
			}
			if err := request(c, bufio.NewReaderSize(c, 512)); err != nil {
				failed.Add(1)
				c.Close()
				return
			}
			c.SetDeadline(time.Time{})
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		})
	}
	wg.Wait()
	took := time.Since(start)
	// Let the sidecar's goroutines settle and the collector run.
	time.Sleep(2 * time.Second)
	after, err := rss(pid)
	if err != nil {
		return err
	}
	held := len(conns)
	fmt.Printf("idle: %d connections opened in %v, %d served and held, %d failed; outbound sidecar RSS %.1f MiB -> %.1f MiB: %.1f KiB per idle connection\n",
		n, took.Round(time.Millisecond), held, failed.Load(), mib(before), mib(after), float64(after-before)/float64(max(held, 1))/1024)
	if err := oneRequest(p.httpUp); err != nil {
		return fmt.Errorf("a new request while %d are held: %w", held, err)
	}
	if settle <= 0 {
		return nil
	}
	// Freed buffers stay resident until a collection, which an idle
	// process only gets from the runtime's forced one every 2 minutes, and
	// the scavenger returns the pages after it: the settled figure is what
	// the same connections cost once that has happened.
	time.Sleep(settle)
	settled, err := rss(pid)
	if err != nil {
		return err
	}
	fmt.Printf("idle: after %v more: outbound sidecar RSS %.1f MiB: %.1f KiB per idle connection (settled)\n",
		settle, mib(settled), float64(settled-before)/float64(max(held, 1))/1024)
	if err := oneRequest(p.httpUp); err != nil {
		return fmt.Errorf("a new request after %d were held for %v: %w", held, settle, err)
	}
	return nil
}

func oneRequest(addr string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return request(c, bufio.NewReader(c))
}

// burstL4 opens n connections at once through the L4 pair, each sending
// one request, and counts those answered.
func burstL4(p connPair, n int) error {
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range n {
		wg.Go(func() {
			<-startGate
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", p.tcpUp)
			if err == nil {
				defer c.Close()
				err = request(c, bufio.NewReader(c))
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			ok.Add(1)
		})
	}
	start := time.Now()
	close(startGate)
	wg.Wait()
	first, _ := firstErr.Load().(string)
	fmt.Printf("burst: %d connections at once through the L4 pair: %d served, %d failed in %v %s\n",
		n, ok.Load(), failed.Load(), time.Since(start).Round(time.Millisecond), first)
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
