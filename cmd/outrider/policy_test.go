package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/internal/testutil/jwttest"
	"github.com/outrider-mesh/outrider/sidecar"
)

// The tests of this file check what only the CLI does with authorization:
// turning outrider.yaml's authorization section and -policy files into the
// running policy, re-reading them on SIGHUP, and the flags. The policy
// engine itself is tested in policy, policy/jwtauth and sidecar.

// recorder is an HTTP application that answers every request with what it
// received (as JSON, a received) and counts the requests.
type recorder struct {
	addr string
	n    atomic.Int64
}

// received is what the recorder saw of a request.
type received struct {
	Method string      `json:"method"`
	Target string      `json:"target"` // the request target, as sent
	Header http.Header `json:"header"`
}

func startRecorder(t *testing.T) *recorder {
	t.Helper()
	rec := &recorder{}
	rec.addr = serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(received{Method: r.Method, Target: r.RequestURI, Header: r.Header})
	}))
	return rec
}

// reply is a response to a request sent with send.
type reply struct {
	status int
	header http.Header
	body   string
}

// seen decodes the recorder's answer.
func (r reply) seen(t *testing.T) received {
	t.Helper()
	var s received
	if r.status != 200 || json.Unmarshal([]byte(r.body), &s) != nil {
		t.Fatalf("not an answer of the application: %d %q", r.status, r.body)
	}
	return s
}

// send writes one HTTP/1.1 request to addr with method and target exactly
// as given (an HTTP client library would clean them) and reads the answer.
func send(addr, method, target string, h http.Header) (reply, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return reply{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: web\r\nConnection: close\r\nContent-Length: 0\r\n", method, target)
	h.Write(&b)
	b.WriteString("\r\n")
	if _, err := c.Write(b.Bytes()); err != nil {
		return reply{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(body)}, err
}

// mustSend is send that fails the test on a transport error.
func mustSend(t *testing.T, addr, method, target string, h http.Header) reply {
	t.Helper()
	r, err := send(addr, method, target, h)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	return r
}

// eventually calls f until it returns nil, failing the test with its last
// error after timeout (a bound on waiting, not a performance assertion).
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for err := f(); err != nil; err = f() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wantStatus waits until method target through addr is answered status.
func wantStatus(t *testing.T, addr, method, target string, status int) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		r, err := send(addr, method, target, nil)
		if err == nil && r.status != status {
			err = fmt.Errorf("%s %s: %d %q, want %d", method, target, r.status, r.body, status)
		}
		return err
	})
}

const issuerURL = "https://issuer.test"

// Static mode: outrider.yaml's L7 rules and JWT provider decide each
// request through a client sidecar: the file's HTTP matchers, deny-wins,
// the JWT provider with its inline JWKS, the claim checks, forwarded
// claims and the stripped token are what the sidecar enforces.
func TestStaticL7Rules(t *testing.T) {
	t.Parallel()
	is := jwttest.New(t, issuerURL)
	p := newStaticPair(t, fmt.Sprintf(`authorization:
  default: deny
  rules:
    - allow: {name: client-reads, spiffe_id: spiffe://example.org/client, http: {methods: [GET]}}
    - deny: {name: no-admin, http: {path_prefix: /admin}}
    - deny: {name: no-delete, http: {methods: [DELETE]}}
    - allow: {name: open, http: {path_prefix: /open}}
    - allow:
        name: writers
        http: {methods: [POST]}
        jwt: {providers: [{name: test, verify_claims: [{path: [scope], value: write}]}]}
  jwt_providers:
    - name: test
      issuer: %s
      audiences: [web]
      jwks: {inline: '%s'}
      forward: {claims: [{path: [sub], header: x-user}], strip_token: true}
`, issuerURL, is.JWKS(t)))
	runOutrider(t, p.webFile, p.webAdmin)
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	write, read := bearer(is.Token(t, time.Hour, map[string]any{"scope": "read write"})), bearer(is.Token(t, time.Hour, map[string]any{"scope": "read"}))

	for _, tt := range []struct {
		name           string
		method, target string
		h              http.Header
		status         int
		code           string // x-outrider-error
	}{
		{"a read by the client", "GET", "/x", nil, 200, ""},
		{"a read under /admin", "GET", "/admin", nil, 403, "denied"},
		{"/admin spelled with an escape", "GET", "/%61dmin", nil, 403, "denied"},
		{"a write without a token", "POST", "/x", nil, 401, "unauthenticated"},
		{"a write without the write scope", "POST", "/x", read, 403, "denied"},
		{"a write under /admin with a good token", "POST", "/admin", write, 403, "denied"},
		{"any method under /open", "PUT", "/open", nil, 200, ""},
		{"DELETE under /open", "DELETE", "/open", nil, 403, "denied"},
		{"lower-case delete under /open", "delete", "/open", nil, 403, "denied"},
		{"lower-case delete with a good token", "delete", "/x", write, 403, "denied"},
		{"lower-case get", "get", "/x", nil, 403, "denied"},
	} {
		before := p.app.n.Load()
		r := mustSend(t, p.upstream, tt.method, tt.target, tt.h)
		if r.status != tt.status || r.header.Get("X-Outrider-Error") != tt.code {
			t.Errorf("%s (%s %s): %d %q %q, want %d %q", tt.name, tt.method, tt.target, r.status,
				r.header.Get("X-Outrider-Error"), r.body, tt.status, tt.code)
		}
		if got := p.app.n.Load() - before; tt.status != 200 && got != 0 {
			t.Errorf("%s (%s %s): the application received %d requests, want none", tt.name, tt.method, tt.target, got)
		}
		if tt.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), `Bearer realm="test"`) {
			t.Errorf("%s: WWW-Authenticate %q, want a Bearer challenge for realm test", tt.name, r.header.Get("WWW-Authenticate"))
		}
	}

	s := mustSend(t, p.upstream, "POST", "/x", write).seen(t)
	if s.Method != "POST" || s.Target != "/x" {
		t.Errorf("application saw %s %s, want POST /x", s.Method, s.Target)
	}
	if got := s.Header.Values("X-User"); len(got) != 1 || got[0] != "alice" {
		t.Errorf("application saw X-User %q, want [alice] (forward.claims)", got)
	}
	if v := s.Header.Get("Authorization"); v != "" {
		t.Errorf("application saw Authorization %q; strip_token is true", v)
	}
}

// A rewritten outrider.yaml takes effect on SIGHUP to the process; a file
// that no longer loads keeps the rules in force and says why, with the
// file, the line and the key.
func TestStaticPolicyReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	const allowClient = "authorization:\n  rules:\n    - allow: {name: client, spiffe_id: spiffe://example.org/client}\n"
	p := newStaticPair(t, allowClient+"    - deny: {name: no-z, http: {path_exact: /z}}\n")
	proc := startBinary(t, nil, "run", "-config", p.webFile, "-shutdown-grace-period", "0")
	waitReady(t, p.webAdmin)
	hup := func() {
		t.Helper()
		if err := proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	wantStatus(t, p.upstream, "GET", "/x", 200)
	wantStatus(t, p.upstream, "GET", "/z", 403)

	p.writeWeb(t, allowClient+"    - deny: {name: no-x, http: {path_exact: /x}}\n")
	hup()
	wantStatus(t, p.upstream, "GET", "/x", 403)
	// The new rules replace the old ones (rather than adding a layer,
	// which could only deny more).
	for _, target := range []string{"/y", "/z"} {
		if r := mustSend(t, p.upstream, "GET", target, nil); r.status != 200 {
			t.Errorf("GET %s after the reload: %d %q, want 200", target, r.status, r.body)
		}
	}

	// Were the broken file applied with its unknown key left out, /x would
	// be allowed again.
	text := p.writeWeb(t, allowClient+"  dry_runn: true\n")
	line := strings.Count(text[:strings.Index(text, "dry_runn")], "\n") + 1
	hup()
	eventually(t, 10*time.Second, func() error {
		if !strings.Contains(proc.out.String(), "authorization rules not reloaded") {
			return fmt.Errorf("no reload error logged after SIGHUP with a broken file")
		}
		return nil
	})
	if want := fmt.Sprintf("web.yaml:%d: authorization.dry_runn", line); !strings.Contains(proc.out.String(), want) {
		t.Errorf("the reload error does not name %q:\n%s", want, proc.out.String())
	}
	if r := mustSend(t, p.upstream, "GET", "/x", nil); r.status != 403 {
		t.Errorf("GET /x after a failed reload: %d, want 403 (the rules in force)", r.status)
	}
	if r := mustSend(t, p.upstream, "GET", "/y", nil); r.status != 200 {
		t.Errorf("GET /y after a failed reload: %d %q, want 200", r.status, r.body)
	}

}

// dry_run: true in outrider.yaml reports a rule's denials without
// enforcing them: in the metrics, by rule, and in the log.
func TestStaticDryRun(t *testing.T) {
	t.Parallel()
	p := newStaticPair(t, `authorization:
  dry_run: true
  rules:
    - allow: {name: client, spiffe_id: spiffe://example.org/client}
    - deny: {name: no-admin, http: {path_prefix: /admin}}
`)
	logs := runOutrider(t, p.webFile, p.webAdmin)
	if s := mustSend(t, p.upstream, "GET", "/admin", nil).seen(t); s.Target != "/admin" {
		t.Errorf("application saw %s, want /admin", s.Target)
	}
	_, metrics := httpGet(t, "http://"+p.webAdmin+"/metrics")
	const series = `outrider_authz_decisions_total{decision="would_deny",rule="no-admin"}`
	if n := metricValue(metrics, series); n < 1 {
		t.Errorf("%s = %v, want at least 1; metrics:\n%s", series, n, grepLines(metrics, "outrider_authz_decisions_total"))
	}
	if out := logs.String(); !strings.Contains(out, "dry run: request would be denied") || !strings.Contains(out, "rule=no-admin") {
		t.Errorf("no dry-run log line naming no-admin:\n%s", out)
	}
}

// metricValue is the value of series (name{labels}) in a Prometheus text
// exposition, or -1 when it is absent.
func metricValue(text, series string) float64 {
	for line := range strings.Lines(text) {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				return f
			}
		}
	}
	return -1
}

func grepLines(text, substr string) string {
	var b strings.Builder
	for line := range strings.Lines(text) {
		if strings.Contains(line, substr) {
			b.WriteString(line)
		}
	}
	return b.String()
}

// registerWithSidecar registers a service instance and its sidecar, whose
// public port is checked every second (Consul routes to an instance once
// its check passes).
func registerWithSidecar(t *testing.T, a *consultest.Agent, name, id string, appPort, publicPort int, upstreams ...api.Upstream) {
	t.Helper()
	err := a.Client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		Name: name, ID: id, Port: appPort, Address: "127.0.0.1",
		Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{
			Port: publicPort, Address: "127.0.0.1",
			Checks: api.AgentServiceChecks{{Name: "sidecar listening", TCP: addr(publicPort), Interval: "1s", Timeout: "1s"}},
			Proxy:  &api.AgentServiceConnectProxyConfig{Upstreams: upstreams},
		}},
	})
	if err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
}

// The Consul mode with -policy: the file's rules are a layer over web's
// intentions, which allow client; both must allow, and /authz/explain
// shows the two layers.
func TestConsulModePolicyFile(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	for _, e := range []api.ConfigEntry{
		&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "web", Protocol: "http"},
		&api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "web",
			Sources: []*api.SourceIntention{{Name: "client", Action: api.IntentionActionAllow}}},
	} {
		if _, _, err := a.Client.ConfigEntries().Set(e, nil); err != nil {
			t.Fatalf("%s %s: %v", e.GetKind(), e.GetName(), err)
		}
	}
	app := startRecorder(t)
	appAddr, err := net.ResolveTCPAddr("tcp", app.addr)
	if err != nil {
		t.Fatal(err)
	}
	port := consultest.FreePorts(t, 5)
	webAdmin, clientAdmin, upstream := addr(port[2]), addr(port[3]), addr(port[4])
	registerWithSidecar(t, a, "web", "web-1", appAddr.Port, port[0])
	registerWithSidecar(t, a, "client", "client-1", testutil.DeadPort(t), port[1],
		api.Upstream{DestinationName: "web", LocalBindAddress: "127.0.0.1", LocalBindPort: port[4]})
	policyFile := writeFile(t, filepath.Join(t.TempDir(), "policy.yaml"), "rules:\n  - deny: {name: no-admin, http: {path_prefix: /admin/}}\n")
	run := func(id, admin string, extra ...string) {
		startOutrider(t, admin, append([]string{"run", "-sidecar-for", id, "-http-addr", a.HTTPAddr,
			"-admin-bind", admin, "-shutdown-grace-period", "0"}, extra...)...)
	}
	run("web-1", webAdmin, "-policy", policyFile)
	run("client-1", clientAdmin)

	// Until Consul routes to web (its check passed) the client answers 503.
	wantStatus(t, upstream, "GET", "/ok", 200)
	before := app.n.Load()
	if r := mustSend(t, upstream, "GET", "/admin/x", nil); r.status != 403 || r.header.Get("X-Outrider-Error") != "denied" {
		t.Errorf("GET /admin/x: %d %q %q, want 403 denied", r.status, r.header.Get("X-Outrider-Error"), r.body)
	}
	if n := app.n.Load() - before; n != 0 {
		t.Errorf("GET /admin/x reached the application %d times", n)
	}

	_, body := httpGet(t, "http://"+webAdmin+"/authz/explain?"+url.Values{"source": {"client"}, "path": {"/admin/x"}}.Encode())
	var ex sidecar.Explanation
	if err := json.Unmarshal([]byte(body), &ex); err != nil {
		t.Fatalf("explain: %v: %s", err, body)
	}
	if ex.Status != 403 || ex.Decision.Allow || ex.Decision.Rule != "no-admin" || len(ex.Layers) != 2 ||
		ex.Layers[0].Layer != "intentions" || !ex.Layers[0].Decision.Allow ||
		ex.Layers[1].Layer != "local rules" || ex.Layers[1].Decision.Allow || ex.Layers[1].Decision.Rule != "no-admin" {
		t.Errorf("explain GET /admin/x: want 403 by no-admin, intentions allowing and the local rules denying; got %s", body)
	}
}

// -policy's usage errors: nothing starts, and the exit code is 2.
func TestPolicyFlagErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	broken := writeFile(t, filepath.Join(dir, "policy.yaml"), "rules:\n  - deny:\n      name: no-admin\n      htp: {path_prefix: /admin/}\n")
	good := writeFile(t, filepath.Join(dir, "good.yaml"), "rules:\n  - deny: {http: {path_prefix: /admin/}}\n")
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"a file with an unknown key", []string{"-sidecar-for", "web-1", "-policy", broken}, "policy.yaml:4: rules[0].deny.htp: unknown key"},
		{"a file that does not exist", []string{"-sidecar-for", "web-1", "-policy", filepath.Join(dir, "absent.yaml")}, "absent.yaml"},
		{"with -config", []string{"-config", filepath.Join(dir, "outrider.yaml"), "-policy", good}, "-policy: with -config"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			args := append([]string{"run", "-admin-bind", "127.0.0.1:0", "-http-addr", addr(testutil.DeadPort(t))}, tt.args...)
			if code := Main(context.Background(), args, io.Discard, &stderr); code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("stderr does not contain %q:\n%s", tt.want, stderr.String())
			}
		})
	}
}

// path_normalization in outrider.yaml: an encoded slash is refused by
// default and, with allow_encoded_slash, reaches the application encoded.
func TestPathNormalizationOptions(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		norm   string
		status int
		code   string
	}{
		{"default", "", 400, "bad_path"},
		{"allow_encoded_slash", "  path_normalization: {allow_encoded_slash: true}\n", 200, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newStaticPair(t, "authorization:\n"+tt.norm+"  rules:\n    - allow: {spiffe_id: spiffe://example.org/client}\n")
			runOutrider(t, p.webFile, p.webAdmin)
			r := mustSend(t, p.upstream, "GET", "/a%2Fb", nil)
			if r.status != tt.status || r.header.Get("X-Outrider-Error") != tt.code {
				t.Fatalf("GET /a%%2Fb: %d %q %q, want %d %q", r.status, r.header.Get("X-Outrider-Error"), r.body, tt.status, tt.code)
			}
			if tt.status == 200 {
				if s := r.seen(t); s.Target != "/a%2Fb" {
					t.Errorf("application saw %q, want /a%%2Fb", s.Target)
				}
			} else if n := p.app.n.Load(); n != 0 {
				t.Errorf("the application received %d requests", n)
			}
		})
	}
}
