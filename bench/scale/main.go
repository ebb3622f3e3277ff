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
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const trustDomain = "scale.test"

func main() {
	bin := flag.String("outrider", "bin/outrider", "the outrider binary")
	idle := flag.Int("idle", 10000, "idle client connections to hold through the HTTP pair (0: skip)")
	burst := flag.Int("burst", 1000, "connections opened at once through the L4 pair (0: skip)")
	flag.Parse()
	if err := run(*bin, *idle, *burst); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

type pair struct {
	dir           string
	procs         map[string]*exec.Cmd
	httpUp, tcpUp string // the client sidecar's listeners
}

func run(bin string, idle, burst int) error {
	app, err := startApp()
	if err != nil {
		return err
	}
	p, err := startPair(bin, app)
	if p != nil {
		defer p.stop()
	}
	if err != nil {
		return err
	}
	if idle > 0 {
		if err := idleConnections(p, idle); err != nil {
			return fmt.Errorf("idle: %w", err)
		}
	}
	if burst > 0 {
		if err := burstL4(p, burst); err != nil {
			return fmt.Errorf("burst: %w", err)
		}
	}
	return nil
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

func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func startPair(bin, app string) (*pair, error) {
	dir, err := os.MkdirTemp("", "outrider-scale-")
	if err != nil {
		return nil, err
	}
	p := &pair{dir: dir, procs: map[string]*exec.Cmd{}}
	ports, err := freePorts(7)
	if err != nil {
		return p, err
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	p.httpUp, p.tcpUp = addr(0), addr(1)
	if err := command(bin, "cert", "ca", "-trust-domain", trustDomain, "-out", filepath.Join(dir, "ca")); err != nil {
		return p, err
	}
	for _, name := range []string{"client", "web", "webtcp"} {
		if err := command(bin, "cert", "svid", "-ca", filepath.Join(dir, "ca"), "-spiffe-id", id(name), "-out", filepath.Join(dir, name)); err != nil {
			return p, err
		}
	}
	identity := func(name string) string {
		d := filepath.Join(dir, name)
		return fmt.Sprintf("identity:\n  files: {cert: %s/svid.pem, key: %s/svid-key.pem, bundles: {%s: %s/bundle.pem}}\n", d, d, trustDomain, d)
	}
	server := func(name, bind, protocol, admin string) string {
		return "service: " + name + "\n" + identity(name) + fmt.Sprintf(`public: {bind: %q, local_service: %q, protocol: %s}
authorization:
  rules:
    - allow: {spiffe_id: %q}
admin: {bind: %q}
`, bind, app, protocol, id("client"), admin)
	}
	files := map[string]string{
		"client": "service: client\n" + identity("client") + fmt.Sprintf(`upstreams:
  - {name: web, bind: %q, protocol: http, endpoints: [{address: %q, spiffe_id: %q}]}
  - {name: webtcp, bind: %q, protocol: tcp, endpoints: [{address: %q, spiffe_id: %q}]}
admin: {bind: %q}
`, p.httpUp, addr(2), id("web"), p.tcpUp, addr(3), id("webtcp"), addr(4)),
		"web":    server("web", addr(2), "http", addr(5)),
		"webtcp": server("webtcp", addr(3), "tcp", addr(6)),
	}
	admins := map[string]string{"client": addr(4), "web": addr(5), "webtcp": addr(6)}
	for name, text := range files {
		file := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			return p, err
		}
		cmd := exec.Command(bin, "run", "-config", file, "-log-level", "warn")
		cmd.Env = append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT=")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return p, err
		}
		p.procs[name] = cmd
	}
	for name, admin := range admins {
		if err := waitReady(admin); err != nil {
			return p, fmt.Errorf("%s: %w", name, err)
		}
	}
	return p, nil
}

func id(name string) string { return "spiffe://" + trustDomain + "/" + name }

func (p *pair) stop() {
	for _, cmd := range p.procs {
		cmd.Process.Kill()
		cmd.Wait()
	}
	os.RemoveAll(p.dir)
}

func command(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func waitReady(admin string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + admin + "/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("not ready in 20s")
}

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
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: web\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

// idleConnections opens n client connections to the HTTP pair, each makes
// one request and then stays open and idle; it reports the outbound
// sidecar's resident memory per idle connection.
func idleConnections(p *pair, n int) error {
	pid := p.procs["client"].Process.Pid
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
func burstL4(p *pair, n int) error {
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
