package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/internal/testutil/spiretest"
)

// serveHTTP serves h on a loopback port until the test ends and returns
// its address.
func serveHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// startHTTPApp serves GET / with the app's name until the test ends.
func startHTTPApp(t *testing.T, name string) string {
	t.Helper()
	return serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
}

// startOutrider runs `outrider args...` in this process until the test
// ends, waits until the sidecar whose admin address is admin says ready,
// and returns what it logs.
func startOutrider(t *testing.T, admin string, args ...string) *testutil.Buffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &testutil.Buffer{}
	done := make(chan int, 1)
	go func() { done <- Main(ctx, args, io.Discard, stderr) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("outrider %s exited %d", strings.Join(args, " "), code)
		}
		if t.Failed() {
			t.Logf("outrider %s output:\n%s", strings.Join(args, " "), stderr.String())
		}
	})
	waitReady(t, admin)
	return stderr
}

// runOutrider runs `outrider run -config file` (see startOutrider).
func runOutrider(t *testing.T, file, admin string) *testutil.Buffer {
	t.Helper()
	return startOutrider(t, admin, "run", "-config", file, "-shutdown-grace-period", "0", "-log-level", "debug")
}

// waitReady runs `outrider wait` for the sidecar whose admin address is
// admin.
func waitReady(t *testing.T, admin string) {
	t.Helper()
	var out bytes.Buffer
	if code := Main(context.Background(), []string{"wait", "-admin-addr", admin, "-timeout", "30s"}, io.Discard, &out); code != exitOK {
		t.Fatalf("outrider wait -admin-addr %s = %d: %s", admin, code, out.String())
	}
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// issueSVIDs makes a development CA for example.org in dir/ca with
// `outrider cert`, and an SVID spiffe://example.org/<name> in dir/<name>
// for each name. identity returns the identity section of a name's file.
func issueSVIDs(t *testing.T, dir string, names ...string) (identity func(name string) string) {
	t.Helper()
	if code := certCommand([]string{"ca", "-trust-domain", "example.org", "-out", filepath.Join(dir, "ca")}, io.Discard, io.Discard); code != 0 {
		t.Fatalf("outrider cert ca = %d", code)
	}
	for _, name := range names {
		issueSVID(t, dir, name)
	}
	return func(name string) string {
		return fmt.Sprintf(`identity:
  files:
    cert: %[1]s/svid.pem
    key: %[1]s/svid-key.pem
    bundles:
      example.org: %[1]s/bundle.pem
`, filepath.Join(dir, name))
	}
}

// issueSVID (re)issues dir/<name>'s SVID from the CA in dir/ca.
func issueSVID(t *testing.T, dir, name string) {
	t.Helper()
	args := []string{"svid", "-ca", filepath.Join(dir, "ca"), "-spiffe-id", "spiffe://example.org/" + name, "-out", filepath.Join(dir, name)}
	if code := certCommand(args, io.Discard, io.Discard); code != 0 {
		t.Fatalf("outrider cert %v = %d", args, code)
	}
}

// staticPair is the static mode's usual topology, from files whose
// identities `outrider cert` issued: web's sidecar (http) in front of a
// recorder, and a client sidecar, egress only, with web as an http
// upstream at a static endpoint. newStaticPair starts the client's
// sidecar; the test starts web's (runOutrider, or the binary).
type staticPair struct {
	dir      string // the CA, the SVIDs and the files
	app      *recorder
	upstream string // the client's listener for web
	webFile  string
	webAdmin string
	webHead  string // web.yaml without its authorization section
}

// newStaticPair writes web.yaml with the authorization section authz
// and starts the client's sidecar.
func newStaticPair(t *testing.T, authz string) *staticPair {
	t.Helper()
	dir := t.TempDir()
	identity := issueSVIDs(t, dir, "web", "client")
	port := consultest.FreePorts(t, 4)
	p := &staticPair{dir: dir, app: startRecorder(t), upstream: addr(port[1]), webFile: filepath.Join(dir, "web.yaml"), webAdmin: addr(port[2])}
	p.webHead = "service: web\n" + identity("web") + fmt.Sprintf("public: {bind: %q, local_service: %q, protocol: http}\nadmin: {bind: %q}\n",
		addr(port[0]), p.app.addr, p.webAdmin)
	p.writeWeb(t, authz)
	client := writeFile(t, filepath.Join(dir, "client.yaml"), "service: client\n"+identity("client")+fmt.Sprintf(`upstreams:
  - name: web
    bind: %q
    protocol: http
    endpoints: [{address: %q, spiffe_id: spiffe://example.org/web}]
admin: {bind: %q}
`, p.upstream, addr(port[0]), addr(port[3])))
	runOutrider(t, client, addr(port[3]))
	return p
}

// writeWeb (re)writes web.yaml with the authorization section authz and
// returns the file's text.
func (p *staticPair) writeWeb(t *testing.T, authz string) string {
	t.Helper()
	text := p.webHead + authz
	writeFile(t, p.webFile, text)
	return text
}

func writeFile(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func certsSerial(t *testing.T, admin string) string {
	t.Helper()
	_, body := httpGet(t, "http://"+admin+"/certs")
	var st struct {
		Serial string `json:"serial"`
		Valid  bool   `json:"valid"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil || !st.Valid {
		t.Fatalf("/certs: %s (%v)", body, err)
	}
	return st.Serial
}

// Static mode with file identities made by `outrider cert`: a web sidecar
// that authorizes by SPIFFE ID and a client with a static endpoint; a
// rewritten SVID is picked up without a restart.
func TestStaticModeWithFiles(t *testing.T) {
	p := newStaticPair(t, "authorization:\n  rules:\n    - allow: {spiffe_id: spiffe://example.org/client}\n")
	runOutrider(t, p.webFile, p.webAdmin)

	upstream := "http://" + p.upstream + "/hello"
	if code, body := httpGet(t, upstream); code != 200 || !strings.Contains(body, `"target":"/hello"`) {
		t.Fatalf("through the static pair: %d %q", code, body)
	}

	before := certsSerial(t, p.webAdmin)
	issueSVID(t, p.dir, "web")
	deadline := time.Now().Add(10 * time.Second)
	for certsSerial(t, p.webAdmin) == before {
		if time.Now().After(deadline) {
			t.Fatal("web did not pick up its rewritten SVID")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := httpGet(t, upstream); code != 200 {
		t.Fatalf("after rotation: %d %q", code, body)
	}
}

// Mixed mode through the CLI, against real SPIRE and Consul: identities
// from the SPIRE agent (each sidecar picks its SVID by hint, as both run
// in this process), web discovered in Consul, and the SPIFFE ID web must
// present rendered from the file's template.
func TestMixedModeSPIREAndConsul(t *testing.T) {
	spire := spiretest.Start(t, "example.org")
	spire.CreateEntry(t, "spiffe://example.org/ns/default/sa/web", spiretest.Hint("web"))
	spire.CreateEntry(t, "spiffe://example.org/ns/default/sa/client", spiretest.Hint("client"))
	spire.WaitForSVID(t, "spiffe://example.org/ns/default/sa/web")
	spire.WaitForSVID(t, "spiffe://example.org/ns/default/sa/client")
	a := consultest.Start(t)
	app := startHTTPApp(t, "web")
	p := consultest.FreePorts(t, 4)
	webAdmin, clientAdmin := "127.0.0.1:"+strconv.Itoa(p[2]), "127.0.0.1:"+strconv.Itoa(p[3])
	if err := a.Client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		Kind: api.ServiceKindConnectProxy, ID: "web-1-sidecar-proxy", Name: "web-sidecar-proxy", Address: "127.0.0.1", Port: p[0],
		Proxy: &api.AgentServiceConnectProxyConfig{DestinationServiceName: "web", DestinationServiceID: "web-1"},
	}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	web := writeFile(t, filepath.Join(dir, "web.yaml"), fmt.Sprintf(`service: web
identity:
  spiffe: {socket: %q, hint: web}
public: {bind: "127.0.0.1:%d", local_service: %q, protocol: http}
authorization:
  rules:
    - deny: {trust_domain: example.org, path_prefix: /ns/test}
    - allow: {trust_domain: example.org, path_prefix: /ns/default}
admin: {bind: %q}
`, spire.Address(), p[0], app, webAdmin))
	client := writeFile(t, filepath.Join(dir, "client.yaml"), fmt.Sprintf(`service: client
identity:
  spiffe: {socket: %q, hint: client}
consul: {address: %q}
upstreams:
  - name: web
    bind: "127.0.0.1:%d"
    protocol: http
    consul:
      spiffe_id: "spiffe://example.org/ns/{{.Namespace}}/sa/{{.Service}}"
admin: {bind: %q}
`, spire.Address(), a.HTTPAddr, p[1], clientAdmin))
	runOutrider(t, web, webAdmin)
	runOutrider(t, client, clientAdmin)
	url := fmt.Sprintf("http://127.0.0.1:%d/mixed", p[1])
	deadline := time.Now().Add(10 * time.Second)
	// Ready does not wait for the first discovery answer: until it comes
	// requests get 503 (no_healthy_upstream).
	for {
		resp, err := http.Get(url)
		var body []byte
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && string(body) == "web /mixed" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("through SPIRE identities and Consul discovery: %v %q", err, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, body := httpGet(t, "http://"+webAdmin+"/certs")
	var st struct {
		Source   string `json:"source"`
		SPIFFEID string `json:"spiffe_id"`
	}
	if json.Unmarshal([]byte(body), &st) != nil || st.Source != "spiffe-workload-api" || st.SPIFFEID != "spiffe://example.org/ns/default/sa/web" {
		t.Fatalf("web /certs: %s", body)
	}
}

// A Workload API socket that is absent at start is retried; the sidecar
// stays not ready and says why.
func TestWorkloadAPIAbsentAtStart(t *testing.T) {
	dir := t.TempDir()
	p := consultest.FreePorts(t, 2)
	admin := "127.0.0.1:" + strconv.Itoa(p[1])
	file := writeFile(t, filepath.Join(dir, "web.yaml"), fmt.Sprintf(`service: web
identity:
  spiffe: {socket: "unix://%s/absent.sock"}
public: {bind: "127.0.0.1:%d", local_service: "127.0.0.1:1"}
authorization: {default: allow}
admin: {bind: %q}
`, dir, p[0], admin))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stderr testutil.Buffer
	go func() { done <- Main(ctx, []string{"run", "-config", file}, io.Discard, &stderr) }()
	defer func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("exit %d", code)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/ready")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 503 && strings.Contains(string(body), "spiffe-workload-api") &&
				strings.Contains(string(body), "absent.sock") {
				break
			}
			if resp.StatusCode == 200 {
				t.Fatal("ready without an SVID")
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/ready never said why it is not ready (%v); output:\n%s", err, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(stderr.String(), "cannot reach the SPIFFE Workload API") && !strings.Contains(stderr.String(), "Workload API") {
		t.Errorf("no retry log:\n%s", stderr.String())
	}
}

// A malformed configuration file is a usage error that names the file,
// the line and the key; nothing starts.
func TestBadConfigFileExits2(t *testing.T) {
	file := writeFile(t, filepath.Join(t.TempDir(), "outrider.yaml"), `service: web
identity:
  files: {cert: a.pem, key: b.pem, bundles: {example.org: c.pem}}
upstreams:
  - name: api
    bind: 127.0.0.1:9191
    endpoint:
      - address: 10.0.0.5:20000
`)
	var stderr bytes.Buffer
	if code := Main(context.Background(), []string{"run", "-config", file}, io.Discard, &stderr); code != exitUsage {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitUsage, stderr.String())
	}
	if !strings.Contains(stderr.String(), "outrider.yaml:7: upstreams[0].endpoint") {
		t.Fatalf("stderr does not name the file, line and key:\n%s", stderr.String())
	}
}

// TestStaticEdgeLimits: the public section's edge limits reach the
// public listener and the upstream listeners (/config_dump shows what is
// in force).
func TestStaticEdgeLimits(t *testing.T) {
	dir := t.TempDir()
	identity := issueSVIDs(t, dir, "web")
	port := consultest.FreePorts(t, 3)
	admin := addr(port[2])
	file := writeFile(t, filepath.Join(dir, "web.yaml"), "service: web\n"+identity("web")+fmt.Sprintf(`public:
  bind: %q
  local_service: 127.0.0.1:1
  protocol: http
  idle_timeout: 2m
  body_idle_timeout: 5m
  max_interim_responses: 3
  max_concurrent_streams: 250
  initial_stream_window_size: 100000
  initial_connection_window_size: 3145728
upstreams:
  - name: api
    bind: %q
    protocol: http
    endpoints: [{address: "127.0.0.1:2", spiffe_id: spiffe://example.org/api}]
admin: {bind: %q}
`, addr(port[0]), addr(port[1]), admin))
	runOutrider(t, file, admin)
	_, body := httpGet(t, "http://"+admin+"/config_dump")
	var d struct {
		Config struct {
			Public map[string]any `json:"public_listener"`
		} `json:"config"`
		Upstreams []map[string]any `json:"upstreams"`
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil || len(d.Upstreams) != 1 {
		t.Fatalf("/config_dump: %v\n%s", err, body)
	}
	want := map[string]any{"idle_timeout": float64(2 * time.Minute), "body_idle_timeout": float64(5 * time.Minute),
		"max_interim_responses": float64(3), "max_concurrent_streams": float64(250),
		"initial_stream_window_size": float64(100000), "initial_connection_window_size": float64(3 << 20)}
	for k, v := range want {
		if got := d.Config.Public[k]; got != v {
			t.Errorf("public_listener.%s = %v, want %v", k, got, v)
		}
		if got := d.Upstreams[0][k]; got != v {
			t.Errorf("upstreams[0].%s = %v, want %v", k, got, v)
		}
	}
}
