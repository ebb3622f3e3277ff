// Package spiretest starts a real SPIRE v1.13.3 server and agent (the pinned
// binaries `make tools-spire` builds into .tools/bin) for one test, and
// registers workloads with them.
//
// The server listens on a free loopback port with an in-memory key manager
// and a sqlite datastore; the agent attests with a join token
// (insecure_bootstrap) and attests workloads by unix selectors, so an entry
// with the default selector unix:uid:<this process's uid> gives the test
// itself, and every process it starts, that SVID. Both sync quickly (server
// entry cache and agent sync every second): a new entry is served by the
// agent within about a second or two (WaitForSVID).
//
// Everything lives in a temporary folder of the test; t.Cleanup stops both
// processes and prints their logs if the test failed.
package spiretest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
)

// startTimeout bounds each wait of the harness: the server's or the agent's
// start, a CLI command, an SVID to be served.
const startTimeout = 30 * time.Second

// SPIRE is a running server and agent for one trust domain. Its methods
// fail the test with t.Fatalf, so call them from the test's goroutine.
type SPIRE struct {
	td         spiffeid.TrustDomain
	nodeID     spiffeid.ID
	serverBin  string
	agentBin   string
	dir        string
	adminSock  string
	agentSock  string
	agentConf  string
	serverProc *process

	mu     sync.Mutex
	agent  *process   // the running agent, nil when stopped
	agents []*process // every agent run, for the logs
}

// Option configures Start.
type Option func(*config)

type config struct {
	svidTTL time.Duration
	caTTL   time.Duration
}

// WithSVIDTTL sets the server's default_x509_svid_ttl (SPIRE's default:
// 1h). It applies to workload SVIDs and to the agent's own SVID. The agent
// renews an SVID once less than half of its lifetime (with ±10% jitter) is
// left, checking every second here; the lifetime is TTL + 10 s, as the
// server backdates NotBefore by 10 s. So a new SVID is served (TTL - 10 s)/2
// after the last one was issued: measured 8-12 s with 30 s, about 25 s
// with 1m. 30 s is the shortest TTL tried.
func WithSVIDTTL(d time.Duration) Option { return func(c *config) { c.svidTTL = d } }

// WithCATTL sets the server's ca_ttl (SPIRE's default: 24h). The server
// prepares the next CA at half of its lifetime and switches to it at five
// sixths (checked every 10 s); SVIDs never outlive the CA that signed them.
func WithCATTL(d time.Duration) Option { return func(c *config) { c.caTTL = d } }

// Start runs a SPIRE server and agent for trust domain td ("example.org"
// or "spiffe://example.org") until the test ends. It returns once the
// agent's Workload API answers; no entry exists yet apart from the agent's
// node alias.
func Start(t testing.TB, td string, opts ...Option) *SPIRE {
	t.Helper()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	trustDomain, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		t.Fatalf("spiretest: trust domain %q: %v", td, err)
	}
	dir := socketDir(t)
	s := &SPIRE{
		td:        trustDomain,
		nodeID:    spiffeid.RequireFromPath(trustDomain, "/spiretest/node"),
		serverBin: consultest.Binary(t, "spire-server"),
		agentBin:  consultest.Binary(t, "spire-agent"),
		dir:       dir,
		adminSock: filepath.Join(dir, "server.sock"),
		agentSock: filepath.Join(dir, "agent.sock"),
		agentConf: filepath.Join(dir, "agent.conf"),
	}
	t.Cleanup(func() {
		s.StopAgent(t)
		if s.serverProc != nil {
			s.serverProc.stop()
		}
		if t.Failed() {
			if s.serverProc != nil {
				t.Logf("spire-server log:\n%s", s.serverProc.log.String())
			}
			for i, a := range s.agents {
				t.Logf("spire-agent log (run %d):\n%s", i+1, a.log.String())
			}
		}
	})
	// As in consultest: the free port may be taken before the server binds
	// it; such a start is retried on a fresh port.
	var port int
	for attempt := 1; ; attempt++ {
		var ready bool
		port, ready = s.startServer(t, cfg)
		if ready {
			break
		}
		log := s.serverProc.log.String()
		if !strings.Contains(log, "address already in use") || attempt == 3 {
			t.Fatalf("spiretest: spire-server exited during start-up:\n%s", log)
		}
		t.Logf("spiretest: a port was taken before spire-server bound it; retrying on a new port")
	}
	agentConf := fmt.Sprintf(`agent {
  data_dir = %q
  log_level = "INFO"
  server_address = "127.0.0.1"
  server_port = %d
  socket_path = %q
  trust_domain = %q
  insecure_bootstrap = true
  experimental {
    sync_interval = "1s"
  }
}
plugins {
  KeyManager "disk" {
    plugin_data { directory = %q }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`, filepath.Join(dir, "agent"), port, s.agentSock, trustDomain.Name(), filepath.Join(dir, "agent"))
	if err := os.WriteFile(s.agentConf, []byte(agentConf), 0o600); err != nil {
		t.Fatalf("spiretest: %v", err)
	}
	s.StartAgent(t)
	return s
}

// startServer starts the server on a free port and reports whether it
// became healthy; false means it exited during start-up.
func (s *SPIRE) startServer(t testing.TB, cfg config) (port int, ready bool) {
	t.Helper()
	port = consultest.FreePorts(t, 1)[0]
	data := filepath.Join(s.dir, "server")
	// A retry starts over with an empty datastore.
	if err := os.RemoveAll(data); err != nil {
		t.Fatalf("spiretest: %v", err)
	}
	var ttls string
	if cfg.svidTTL > 0 {
		ttls += fmt.Sprintf("  default_x509_svid_ttl = %q\n", cfg.svidTTL.String())
	}
	if cfg.caTTL > 0 {
		ttls += fmt.Sprintf("  ca_ttl = %q\n", cfg.caTTL.String())
	}
	conf := fmt.Sprintf(`server {
  bind_address = "127.0.0.1"
  bind_port = %d
  socket_path = %q
  trust_domain = %q
  data_dir = %q
  log_level = "INFO"
%s  experimental {
    cache_reload_interval = "1s"
  }
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = %q
    }
  }
  KeyManager "memory" {
    plugin_data {}
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
}
`, port, s.adminSock, s.td.Name(), data, ttls, filepath.Join(data, "datastore.sqlite3"))
	path := filepath.Join(s.dir, "server.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatalf("spiretest: %v", err)
	}
	s.serverProc = startProcess(t, s.serverBin, "run", "-config", path)
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := exec.CommandContext(ctx, s.serverBin, "healthcheck", "-socketPath", s.adminSock).Run()
		cancel()
		if err == nil {
			return port, true
		}
		if s.serverProc.exited() {
			return port, false
		}
		if time.Now().After(deadline) {
			t.Fatalf("spiretest: spire-server not healthy after %v:\n%s", startTimeout, s.serverProc.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TrustDomain returns the trust domain the server signs for.
func (s *SPIRE) TrustDomain() spiffeid.TrustDomain { return s.td }

// NodeID returns the agent's node alias (spiffe://<td>/spiretest/node),
// the parent of the entries CreateEntry makes. It stays the same across
// agent restarts.
func (s *SPIRE) NodeID() spiffeid.ID { return s.nodeID }

// SocketPath returns the path of the agent's Workload API unix socket.
func (s *SPIRE) SocketPath() string { return s.agentSock }

// Address returns the agent's Workload API address ("unix://" + path), as
// SPIFFE_ENDPOINT_SOCKET and workloadapi.WithAddr take it.
func (s *SPIRE) Address() string { return "unix://" + s.agentSock }

// StartAgent starts the agent and waits until its Workload API answers.
// The agent is given a new join token: on the first start it attests with
// it; on a restart it resumes with the SVID and key it kept in its data
// folder, and uses the token only if that SVID has expired meanwhile
// (join tokens are single use). Start calls it; tests call it after
// StopAgent.
func (s *SPIRE) StartAgent(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agent != nil {
		t.Fatalf("spiretest: StartAgent: the agent is already running")
	}
	token := s.joinToken(t)
	p := startProcess(t, s.agentBin, "run", "-config", s.agentConf, "-joinToken", token)
	s.agent = p
	s.agents = append(s.agents, p)
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr(s.Address()))
		cancel()
		// An agent that has no SVID for this process yet answers
		// PermissionDenied ("no identity issued"): it is up all the same.
		if err == nil || status.Code(err) == codes.PermissionDenied {
			return
		}
		if p.exited() {
			t.Fatalf("spiretest: spire-agent exited during start-up:\n%s", p.log.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("spiretest: agent Workload API not answering after %v: %v\n%s", startTimeout, err, p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StopAgent stops the agent (SIGINT, then SIGKILL after 5 s) and waits
// for it. Workloads keep the SVIDs they were given; the Workload API is
// gone until StartAgent. It does nothing if the agent is not running.
func (s *SPIRE) StopAgent(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agent != nil {
		s.agent.stop()
		s.agent = nil
	}
}

// RestartAgent stops the agent and starts it again (see StartAgent).
func (s *SPIRE) RestartAgent(t testing.TB) {
	t.Helper()
	s.StopAgent(t)
	s.StartAgent(t)
}

// joinToken generates a join token whose agent gets the node alias.
func (s *SPIRE) joinToken(t testing.TB) string {
	t.Helper()
	out := s.CLI(t, "token", "generate", "-spiffeID", s.nodeID.String(), "-output", "json")
	var tok struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(out, &tok); err != nil || tok.Value == "" {
		t.Fatalf("spiretest: token generate: %q: %v", out, err)
	}
	return tok.Value
}

// EntryOption configures CreateEntry.
type EntryOption func(*entry)

type entry struct {
	selectors     []string
	federatesWith []string
	hint          string
}

// Hint sets the entry's hint, which the Workload API passes along with its
// SVID: a workload that matches several entries picks its SVID by hint.
func Hint(hint string) EntryOption {
	return func(e *entry) { e.hint = hint }
}

// Selectors replaces the entry's default selector (unix:uid:<uid of this
// process>) with the given ones, e.g. "unix:uid:1000", "unix:path:/bin/x".
func Selectors(selectors ...string) EntryOption {
	return func(e *entry) { e.selectors = selectors }
}

// FederatesWith adds the bundles of these trust domains ("other.org" or
// "spiffe://other.org") to what the Workload API serves with the entry's
// SVID. SPIRE refuses the entry unless each bundle was set first
// (SetFederatedBundle).
func FederatesWith(trustDomains ...string) EntryOption {
	return func(e *entry) { e.federatesWith = append(e.federatesWith, trustDomains...) }
}

// CreateEntry registers a workload entry for spiffeID under the agent's
// node alias and returns its entry ID. The agent serves the SVID about a
// second or two later: wait for it with WaitForSVID.
func (s *SPIRE) CreateEntry(t testing.TB, spiffeID string, opts ...EntryOption) string {
	t.Helper()
	e := entry{selectors: []string{"unix:uid:" + strconv.Itoa(os.Getuid())}}
	for _, o := range opts {
		o(&e)
	}
	args := []string{"entry", "create", "-output", "json",
		"-parentID", s.nodeID.String(), "-spiffeID", spiffeID}
	for _, sel := range e.selectors {
		args = append(args, "-selector", sel)
	}
	for _, td := range e.federatesWith {
		args = append(args, "-federatesWith", s.parseTD(t, td).IDString())
	}
	if e.hint != "" {
		args = append(args, "-hint", e.hint)
	}
	out := s.CLI(t, args...)
	// The CLI exits 0 even when the server refused the entry: the status
	// is in the output.
	var resp struct {
		Results []struct {
			Status struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"status"`
			Entry struct {
				ID string `json:"id"`
			} `json:"entry"`
		} `json:"results"`
	}
	if err := json.Unmarshal(out, &resp); err != nil || len(resp.Results) != 1 {
		t.Fatalf("spiretest: entry create %s: unexpected output %q (%v)", spiffeID, out, err)
	}
	r := resp.Results[0]
	if r.Status.Code != 0 || r.Entry.ID == "" {
		t.Fatalf("spiretest: entry create %s: %s (code %d)", spiffeID, r.Status.Message, r.Status.Code)
	}
	return r.Entry.ID
}

// SetFederatedBundle sets (creates or replaces) the X.509 bundle of
// trust domain td, given as PEM certificates.
func (s *SPIRE) SetFederatedBundle(t testing.TB, td string, pemBundle []byte) {
	t.Helper()
	s.run(t, pemBundle, "bundle", "set", "-format", "pem", "-id", s.parseTD(t, td).IDString())
}

// Bundle returns the server's own X.509 bundle (its CA certificates) as
// PEM.
func (s *SPIRE) Bundle(t testing.TB) []byte {
	t.Helper()
	return s.CLI(t, "bundle", "show", "-format", "pem")
}

// WaitForSVID waits until the agent serves this process an SVID for
// spiffeID, and returns the X.509 context it came in (all SVIDs and
// bundles served to this process).
func (s *SPIRE) WaitForSVID(t testing.TB, spiffeID string) *workloadapi.X509Context {
	t.Helper()
	id, err := spiffeid.FromString(spiffeID)
	if err != nil {
		t.Fatalf("spiretest: WaitForSVID: %v", err)
	}
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		x, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr(s.Address()))
		cancel()
		if err == nil && slices.ContainsFunc(x.SVIDs, func(svid *x509svid.SVID) bool { return svid.ID == id }) {
			return x
		}
		if time.Now().After(deadline) {
			var have []string
			if x != nil {
				for _, svid := range x.SVIDs {
					have = append(have, svid.ID.String())
				}
			}
			t.Fatalf("spiretest: no SVID for %s after %v (served: %v, error: %v)", id, startTimeout, have, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// CLI runs `spire-server args... -socketPath <server's admin socket>`
// and returns its standard output; it fails the test if the command
// fails. args is a subcommand and its flags, e.g. "entry", "show",
// "-spiffeID", id. (Some commands, entry create among them, exit 0 when
// the server refused the request: see their output.)
func (s *SPIRE) CLI(t testing.TB, args ...string) []byte {
	t.Helper()
	return s.run(t, nil, args...)
}

func (s *SPIRE) run(t testing.TB, stdin []byte, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.serverBin, append(args, "-socketPath", s.adminSock)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("spiretest: spire-server %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes()
}

func (s *SPIRE) parseTD(t testing.TB, td string) spiffeid.TrustDomain {
	t.Helper()
	d, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		t.Fatalf("spiretest: trust domain %q: %v", td, err)
	}
	return d
}

// socketDir returns the test's temporary folder, or a shorter one if the
// sockets' paths in it would not fit a unix socket address (108 bytes).
func socketDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if len(filepath.Join(dir, "server.sock")) < 100 {
		return dir
	}
	dir, err := os.MkdirTemp("", "spiretest")
	if err != nil {
		t.Fatalf("spiretest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// process is one run of a SPIRE binary.
type process struct {
	cmd  *exec.Cmd
	log  *testutil.Buffer
	done chan struct{}
}

func startProcess(t testing.TB, bin string, args ...string) *process {
	t.Helper()
	p := &process{log: &testutil.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("spiretest: start %s: %v", filepath.Base(bin), err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	return p
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop stops the process (SIGINT, then SIGKILL after 5 s) and waits for
// it; it is idempotent.
func (p *process) stop() {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}
