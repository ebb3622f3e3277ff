// Package binmesh runs sidecars of the real outrider binary, the way a
// user does: built with `go build`, identities issued by `outrider cert`
// (one CA, one SVID per sidecar), each started with `outrider run -config`
// on a static file, and ready once its admin /ready answers 200.
//
// It serves the hostile-input suite (hostile/) and the scale figures
// (bench/scale), which are not tests: nothing here needs a testing.T.
// A Mesh is not safe for concurrent Stop calls; its accessors are.
package binmesh

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/outrider-mesh/outrider/internal/testutil"
)

// Build compiles cmd/outrider into dir and returns the binary's path. It
// runs `go build` from the working directory, which must be inside the
// module (a test's package directory is).
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "outrider")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/outrider-mesh/outrider/cmd/outrider").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("binmesh: go build ./cmd/outrider: %v\n%s", err, out)
	}
	return bin, nil
}

// FreeAddrs returns n loopback addresses whose ports were free a moment
// ago (the kernel's ephemeral range). Tests sharing the machine with
// Consul agents use consultest.FreePorts instead.
func FreeAddrs(n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	addrs := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("binmesh: %w", err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

// Sidecar is one process to start.
type Sidecar struct {
	// Name is the service name; the SPIFFE ID is spiffe://TD/Name.
	Name string
	// Admin is the admin listener's address (host:port).
	Admin string
	// Config is the static file's body after the service, identity and
	// admin keys, which Start writes: listeners, rules, overload.
	Config string
}

// Options says what to start.
type Options struct {
	// Bin is the outrider binary (Build's result, or bin/outrider).
	Bin string
	// TrustDomain of the CA every identity is issued from.
	TrustDomain string
	// Sidecars, started in this order (then waited for together).
	Sidecars []Sidecar
	// Flags are added to every `outrider run` (e.g. -log-level warn).
	Flags []string
	// ReadyTimeout bounds the wait for each /ready; default 30s.
	ReadyTimeout time.Duration
}

// Mesh is the started sidecars and the directory holding their
// identities and configuration files.
type Mesh struct {
	Dir         string
	TrustDomain string
	procs       []*Proc
}

// Proc is one running sidecar.
type Proc struct {
	Name   string
	Admin  string // host:port
	cmd    *exec.Cmd
	out    testutil.Buffer
	exited chan struct{}
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Logs is everything the process wrote to stdout and stderr so far.
func (p *Proc) Logs() string { return p.out.String() }

// Exited is closed when the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Start issues the identities, writes the files and starts every
// sidecar, then waits until each is ready. On error the returned Mesh (if
// not nil) holds what was started, for its logs; the caller stops it.
func Start(ctx context.Context, o Options) (*Mesh, error) {
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	dir, err := os.MkdirTemp("", "outrider-binmesh-")
	if err != nil {
		return nil, fmt.Errorf("binmesh: %w", err)
	}
	m := &Mesh{Dir: dir, TrustDomain: o.TrustDomain}
	if err := command(ctx, o.Bin, "cert", "ca", "-trust-domain", o.TrustDomain, "-out", filepath.Join(dir, "ca")); err != nil {
		return m, err
	}
	for _, s := range o.Sidecars {
		if err := command(ctx, o.Bin, "cert", "svid", "-ca", filepath.Join(dir, "ca"), "-spiffe-id", m.ID(s.Name), "-out", filepath.Join(dir, s.Name)); err != nil {
			return m, err
		}
	}
	for _, s := range o.Sidecars {
		cert, key, bundle := m.Files(s.Name)
		text := fmt.Sprintf("service: %s\nidentity:\n  files: {cert: %s, key: %s, bundles: {%s: %s}}\nadmin: {bind: %q}\n%s",
			s.Name, cert, key, o.TrustDomain, bundle, s.Admin, s.Config)
		file := filepath.Join(dir, s.Name+".yaml")
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			return m, fmt.Errorf("binmesh: %w", err)
		}
		args := append([]string{"run", "-config", file}, o.Flags...)
		p := &Proc{Name: s.Name, Admin: s.Admin, cmd: exec.Command(o.Bin, args...), exited: make(chan struct{})}
		p.cmd.Env = append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_TRACES_EXPORTER=none")
		p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
		if err := p.cmd.Start(); err != nil {
			return m, fmt.Errorf("binmesh: start %s: %w", s.Name, err)
		}
		go func() { p.cmd.Wait(); close(p.exited) }()
		m.procs = append(m.procs, p)
	}
	for _, p := range m.procs {
		if err := waitReady(ctx, p, o.ReadyTimeout); err != nil {
			return m, fmt.Errorf("%w\n%s", err, m.Logs())
		}
	}
	return m, nil
}

// ID is the SPIFFE ID of the sidecar called name.
func (m *Mesh) ID(name string) string { return "spiffe://" + m.TrustDomain + "/" + name }

// Files are the PEM files of name's identity: its SVID, key and bundle.
func (m *Mesh) Files(name string) (cert, key, bundle string) {
	d := filepath.Join(m.Dir, name)
	return filepath.Join(d, "svid.pem"), filepath.Join(d, "svid-key.pem"), filepath.Join(d, "bundle.pem")
}

// Sidecar returns the process called name, or nil.
func (m *Mesh) Sidecar(name string) *Proc {
	for _, p := range m.procs {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Logs is every sidecar's output, for failure messages.
func (m *Mesh) Logs() string {
	var b strings.Builder
	for _, p := range m.procs {
		fmt.Fprintf(&b, "--- sidecar %s:\n%s", p.Name, p.out.String())
	}
	return b.String()
}

// Stop kills every sidecar, waits for it, and removes Dir.
func (m *Mesh) Stop() {
	for _, p := range m.procs {
		p.cmd.Process.Kill()
		<-p.exited
	}
	os.RemoveAll(m.Dir)
}

// command runs the binary to completion.
func command(ctx context.Context, name string, args ...string) error {
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("binmesh: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// waitReady polls p's /ready until it answers 200, p exits, ctx ends or
// timeout passes.
func waitReady(ctx context.Context, p *Proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get("http://" + p.Admin + "/ready")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		select {
		case <-p.exited:
			return fmt.Errorf("binmesh: sidecar %s exited before it was ready", p.Name)
		case <-ctx.Done():
			return fmt.Errorf("binmesh: sidecar %s: %w", p.Name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("binmesh: sidecar %s not ready on %s after %v (last: %v)", p.Name, p.Admin, timeout, err)
		}
	}
}
