package webhook

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/outrider-mesh/outrider/inject"
	"github.com/outrider-mesh/outrider/inject/kube"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testOptions = inject.Options{Image: "ghcr.io/outrider-mesh/outrider:test", MemoryRequest: "64Mi"}

// pod is a Pod as the API server sends it for a Deployment's ReplicaSet:
// no name yet, defaults applied.
const pod = `apiVersion: v1
kind: Pod
metadata:
  generateName: web-7d4b9c-
  namespace: shop
  labels: {app: web}
  annotations:
    outrider.io/inject: "true"
    outrider.io/upstreams: api:9191
spec:
  terminationGracePeriodSeconds: 30
  containers:
    - name: web
      image: web:1
      ports: [{containerPort: 8080, protocol: TCP}]
`

func review(t *testing.T, podYAML, operation string) []byte {
	t.Helper()
	var obj any
	if err := yaml.Unmarshal([]byte(podYAML), &obj); err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(AdmissionReview{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview", Request: &Request{
		UID: "705ab4f5-6393-11e8-b7cc-42010a800002", Kind: GroupVersionKind{Version: "v1", Kind: "Pod"},
		Namespace: "shop", Operation: operation, Object: raw,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t *testing.T, client *http.Client, url string, body []byte) (*http.Response, []byte) {
	t.Helper()
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func decodeResponse(t *testing.T, b []byte) *Response {
	t.Helper()
	var out AdmissionReview
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil {
		t.Fatalf("not an AdmissionReview response: %s", b)
	}
	if out.Response.UID != "705ab4f5-6393-11e8-b7cc-42010a800002" {
		t.Errorf("uid %q not echoed", out.Response.UID)
	}
	return out.Response
}

func TestWebhookInjectsAnnotatedPod(t *testing.T) {
	srv := httptest.NewTLSServer(&Handler{Options: testOptions, Log: slog.New(slog.DiscardHandler)})
	defer srv.Close()
	resp, body := post(t, srv.Client(), srv.URL, review(t, pod, "CREATE"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	r := decodeResponse(t, body)
	if !r.Allowed || r.PatchType == nil || *r.PatchType != "JSONPatch" || len(r.Patch) == 0 {
		t.Fatalf("want an allowed JSONPatch response, got %s", body)
	}
	var ops []map[string]any
	if err := json.Unmarshal(r.Patch, &ops); err != nil {
		t.Fatal(err)
	}
	var podObj any
	yaml.Unmarshal([]byte(pod), &podObj)
	patched := applyPatch(t, jsonRoundTrip(t, podObj), ops)

	containers := patched.(map[string]any)["spec"].(map[string]any)["containers"].([]any)
	if len(containers) != 2 || containers[1].(map[string]any)["name"] != "outrider" {
		t.Fatalf("outrider container not added: %v", containers)
	}
	if got := patched.(map[string]any)["metadata"].(map[string]any)["annotations"].(map[string]any)["outrider.io/status"]; got != "injected" {
		t.Errorf("status annotation %v", got)
	}
	// The same container as `outrider inject` writes into a manifest.
	manifest, err := kube.Inject([]byte(pod), testOptions)
	if err != nil {
		t.Fatal(err)
	}
	var injected any
	yaml.Unmarshal(manifest, &injected)
	want := jsonRoundTrip(t, injected).(map[string]any)["spec"].(map[string]any)["containers"].([]any)[1]
	if !reflect.DeepEqual(containers[1], want) {
		t.Errorf("webhook container differs from the manifest injector's:\n got %v\nwant %v", containers[1], want)
	}
}

func TestWebhookAllowsWithoutPatch(t *testing.T) {
	srv := httptest.NewTLSServer(&Handler{Options: testOptions, Log: slog.New(slog.DiscardHandler)})
	defer srv.Close()
	plain := strings.Replace(pod, `outrider.io/inject: "true"`, `other: "x"`, 1)
	for name, body := range map[string][]byte{
		"not annotated": review(t, plain, "CREATE"),
		"update":        review(t, pod, "UPDATE"),
		"opted out":     review(t, strings.Replace(pod, `"true"`, `"false"`, 1), "CREATE"),
	} {
		resp, b := post(t, srv.Client(), srv.URL, body)
		r := decodeResponse(t, b)
		if resp.StatusCode != 200 || !r.Allowed || r.Patch != nil || r.PatchType != nil {
			t.Errorf("%s: want allowed without a patch, got %d %s", name, resp.StatusCode, b)
		}
	}
}

func TestWebhookDeniesBadAnnotations(t *testing.T) {
	srv := httptest.NewTLSServer(&Handler{Options: testOptions, Log: slog.New(slog.DiscardHandler)})
	defer srv.Close()
	_, b := post(t, srv.Client(), srv.URL, review(t, strings.Replace(pod, "api:9191", "api", 1), "CREATE"))
	r := decodeResponse(t, b)
	if r.Allowed || r.Patch != nil || r.Result == nil || !strings.Contains(r.Result.Message, `outrider.io/upstreams`) {
		t.Errorf("want a denial naming the annotation, got %s", b)
	}
}

func TestWebhookRejectsGarbage(t *testing.T) {
	srv := httptest.NewTLSServer(&Handler{Options: testOptions, Log: slog.New(slog.DiscardHandler)})
	defer srv.Close()
	for name, body := range map[string]string{
		"not json":     "\x00garbage{",
		"no request":   `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`,
		"wrong kind":   `{"apiVersion":"v1","kind":"Pod","request":{}}`,
		"wrong fields": `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}`,
	} {
		resp, b := post(t, srv.Client(), srv.URL, []byte(body))
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "webhook:") {
			t.Errorf("%s: want 400 with a reason, got %d %s", name, resp.StatusCode, b)
		}
	}
}

// The real server: /healthz, TLS 1.2 minimum, a certificate rotation picked
// up without a restart, and a clean stop when its context ends.
func TestServerRotatesCertificateAndStops(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeCert(t, certFile, keyFile, 1)
	kp, err := LoadKeyPair(certFile, keyFile, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	s := &Server{Handler: &Handler{Options: testOptions, Log: slog.New(slog.DiscardHandler)}, Certs: kp, Log: slog.New(slog.DiscardHandler)}
	go func() { done <- s.Serve(ctx, ln) }()

	serial := func() int64 {
		t.Helper()
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if got := serial(); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}
	if _, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("TLS 1.1 accepted")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + ln.Addr().String() + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, b := post(t, client, "https://"+ln.Addr().String()+"/mutate", review(t, pod, "CREATE"))
	if resp.StatusCode != 200 || !decodeResponse(t, b).Allowed {
		t.Fatalf("mutate: %d %s", resp.StatusCode, b)
	}

	writeCert(t, certFile, keyFile, 2) // as cert-manager renews
	deadline := time.Now().Add(5 * time.Second)
	for serial() != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the rotated certificate was not picked up")
		}
		time.Sleep(20 * time.Millisecond)
	}

	os.WriteFile(certFile, []byte("half-written"), 0o600) // a broken update keeps the last good pair
	time.Sleep(100 * time.Millisecond)
	if got := serial(); got != 2 {
		t.Errorf("after a bad update: serial %d, want 2 kept", got)
	}

	client.CloseIdleConnections()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

// writeCert writes a self-signed certificate with the serial number to the
// files, each replaced in one rename.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "outrider-webhook.outrider.svc"},
		DNSNames: []string{"outrider-webhook.outrider.svc"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// The key first: a certificate never meets a key it does not match
	// for longer than one event.
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{keyFile, "PRIVATE KEY", keyDER}, {certFile, "CERTIFICATE", der}} {
		tmp := f.path + ".tmp" + strconv.FormatInt(serial, 10)
		if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			t.Fatal(err)
		}
	}
}

func jsonRoundTrip(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// applyPatch applies RFC 6902 "add" operations (the only ones the webhook
// sends) to doc.
func applyPatch(t *testing.T, doc any, ops []map[string]any) any {
	t.Helper()
	for _, op := range ops {
		if op["op"] != "add" {
			t.Fatalf("unexpected operation %v", op)
		}
		tokens := strings.Split(strings.TrimPrefix(op["path"].(string), "/"), "/")
		for i := range tokens {
			tokens[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(tokens[i])
		}
		doc = add(t, doc, tokens, op["value"])
	}
	return doc
}

func add(t *testing.T, node any, path []string, value any) any {
	t.Helper()
	if len(path) == 0 {
		return value
	}
	switch n := node.(type) {
	case map[string]any:
		if len(path) == 1 {
			n[path[0]] = value
		} else {
			child, ok := n[path[0]]
			if !ok {
				t.Fatalf("patch path through missing member %q", path[0])
			}
			n[path[0]] = add(t, child, path[1:], value)
		}
		return n
	case []any:
		i := len(n)
		if path[0] != "-" {
			var err error
			if i, err = strconv.Atoi(path[0]); err != nil || i > len(n) {
				t.Fatalf("bad array index %q", path[0])
			}
		}
		if len(path) > 1 {
			n[i] = add(t, n[i], path[1:], value)
			return n
		}
		return append(n[:i], append([]any{value}, n[i:]...)...)
	}
	t.Fatalf("patch path %v through a scalar", path)
	return nil
}
