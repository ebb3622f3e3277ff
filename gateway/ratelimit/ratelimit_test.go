package ratelimit

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/outrider-mesh/outrider/gateway/clientip"
	"github.com/outrider-mesh/outrider/gateway/reqinfo"
	"github.com/outrider-mesh/outrider/policy/jwtauth"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestZeroConfigIsOff(t *testing.T) {
	b := &backend{}
	if h := mustNew(t, Config{}).Wrap(b); h != http.Handler(b) {
		t.Fatal("zero Config wrapped the handler")
	}
}

// A burst far above the limit from many goroutines at once: exactly
// burst requests reach the backend, the rest get 429 with Retry-After.
func TestConcurrentBurst(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	lim := mustNew(t, Config{Limits: []Limit{{Requests: 1, Period: time.Hour, Burst: 25}}}, WithMetrics(m, "api"))
	srv, b := serve(t, lim)
	counts := blast(t, []string{srv.URL}, 400)
	if counts[200] != 25 || counts[429] != 375 || b.hits.Load() != 25 {
		t.Fatalf("statuses %v, backend hits %d; want 25 admitted, 375 limited", counts, b.hits.Load())
	}
	if got := testutil.ToFloat64(m.decisions.WithLabelValues("api", "admitted")); got != 25 {
		t.Errorf("admitted metric %v", got)
	}
	if got := testutil.ToFloat64(m.decisions.WithLabelValues("api", "limited")); got != 375 {
		t.Errorf("limited metric %v", got)
	}
}

func TestLimitedResponse(t *testing.T) {
	clk := newClock()
	lim := mustNew(t, Config{Limits: []Limit{{Name: "per-key", Requests: 2, Period: 3 * time.Second, Key: Key{Header: "x-api-key"}}}}, withFake(clk))
	srv, b := serve(t, lim)
	c := srv.Client()
	for range 2 {
		if r := get(t, c, srv.URL, "X-Api-Key", "k1"); r.StatusCode != 200 || r.Header.Get("RateLimit") != "" {
			t.Fatalf("status %d, RateLimit %q (headers are off for admitted requests)", r.StatusCode, r.Header.Get("RateLimit"))
		}
	}
	clk.advance(100 * time.Millisecond)
	r := get(t, c, srv.URL, "X-Api-Key", "k1")
	// Next token at 1.5s; 1.4s from now rounds up to 2.
	want := map[string]string{
		"Retry-After":      "2",
		"Ratelimit-Policy": `"per-key";q=2;w=3`,
		"Ratelimit":        `"per-key";r=0;t=2`,
		"Content-Type":     "text/plain; charset=utf-8",
	}
	if r.StatusCode != 429 {
		t.Fatalf("status %d", r.StatusCode)
	}
	for k, v := range want {
		if got := r.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if b.hits.Load() != 2 {
		t.Errorf("backend saw %d requests, want 2", b.hits.Load())
	}
	// Another key has its own bucket.
	if r := get(t, c, srv.URL, "X-Api-Key", "k2"); r.StatusCode != 200 {
		t.Errorf("other key: %d", r.StatusCode)
	}
	clk.advance(1400 * time.Millisecond)
	if r := get(t, c, srv.URL, "X-Api-Key", "k1"); r.StatusCode != 200 {
		t.Errorf("after Retry-After: %d", r.StatusCode)
	}
}

func TestHeadersOnAdmitted(t *testing.T) {
	clk := newClock()
	lim := mustNew(t, Config{Headers: true, Limits: []Limit{
		{Name: "route", Requests: 100, Period: time.Second},
		{Name: "peer", Requests: 3, Period: time.Minute, Key: Key{Peer: true}},
	}}, withFake(clk))
	srv, _ := serve(t, lim)
	for i, want := range []string{`"peer";r=2;t=20`, `"peer";r=1;t=40`, `"peer";r=0;t=60`} {
		r := get(t, srv.Client(), srv.URL, "X-Test-Peer", "spiffe://td/a")
		if r.StatusCode != 200 || r.Header.Get("RateLimit") != want ||
			r.Header.Get("RateLimit-Policy") != `"route";q=100;w=1, "peer";q=3;w=60` {
			t.Errorf("request %d: %d RateLimit %q Policy %q, want %q", i, r.StatusCode,
				r.Header.Get("RateLimit"), r.Header.Get("RateLimit-Policy"), want)
		}
	}
	if r := get(t, srv.Client(), srv.URL, "X-Test-Peer", "spiffe://td/a"); r.StatusCode != 429 {
		t.Errorf("4th request from one peer: %d", r.StatusCode)
	}
}

// Leaving the key out never escapes the limit: by default such requests
// share one bucket; with missing_key: reject they are refused.
func TestMissingKey(t *testing.T) {
	shared := mustNew(t, Config{Limits: []Limit{{Requests: 2, Period: time.Hour, Key: Key{Header: "X-Api-Key"}}}}, withFake(newClock()))
	srv, b := serve(t, shared)
	var codes []int
	for range 4 {
		codes = append(codes, get(t, srv.Client(), srv.URL).StatusCode)
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 || codes[3] != 429 || b.hits.Load() != 2 {
		t.Errorf("shared missing-key bucket: %v", codes)
	}
	// An empty header value is missing, too.
	if r := get(t, srv.Client(), srv.URL, "X-Api-Key", ""); r.StatusCode != 429 {
		t.Errorf("empty key: %d", r.StatusCode)
	}

	reject := mustNew(t, Config{Limits: []Limit{{Requests: 2, Period: time.Hour, Key: Key{Peer: true}, MissingKey: "reject"}}}, withFake(newClock()))
	srv, b = serve(t, reject)
	r := get(t, srv.Client(), srv.URL)
	if r.StatusCode != 429 || r.Header.Get("Retry-After") != "" || b.hits.Load() != 0 {
		t.Errorf("rejected missing key: %d Retry-After %q hits %d", r.StatusCode, r.Header.Get("Retry-After"), b.hits.Load())
	}
	if r := get(t, srv.Client(), srv.URL, "X-Test-Peer", "spiffe://td/x"); r.StatusCode != 200 {
		t.Errorf("with the key: %d", r.StatusCode)
	}
}

// A client cannot dodge a per-IP limit by sending X-Forwarded-For: with
// no trusted proxies the header is ignored; behind a trusted proxy only
// the hop the proxy appended counts, not what the client prepended.
func TestSpoofedForwardedFor(t *testing.T) {
	cfg := Config{Limits: []Limit{{Requests: 3, Period: time.Hour, Key: Key{ClientIP: true}}}}

	direct, b := serve(t, mustNew(t, cfg, withFake(newClock())))
	admitted := 0
	for i := range 20 {
		if get(t, direct.Client(), direct.URL, "X-Forwarded-For", "203.0.113."+strconv.Itoa(i)).StatusCode == 200 {
			admitted++
		}
	}
	if admitted != 3 || b.hits.Load() != 3 {
		t.Errorf("untrusted XFF: %d admitted, want 3", admitted)
	}

	res, err := clientip.New([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	proxied, _ := serve(t, mustNew(t, cfg, withFake(newClock()), WithClientIP(res)))
	admitted = 0
	for i := range 20 {
		// The client spoofs the left part; the trusted proxy appended 198.51.100.7.
		if get(t, proxied.Client(), proxied.URL, "X-Forwarded-For", "203.0.113."+strconv.Itoa(i)+", 198.51.100.7").StatusCode == 200 {
			admitted++
		}
	}
	if admitted != 3 {
		t.Errorf("spoofed prefix behind a trusted proxy: %d admitted, want 3", admitted)
	}
	// A different real client behind the proxy has its own bucket.
	if r := get(t, proxied.Client(), proxied.URL, "X-Forwarded-For", "198.51.100.8"); r.StatusCode != 200 {
		t.Errorf("other client: %d", r.StatusCode)
	}
}

func TestJWTClaimKey(t *testing.T) {
	claims := func(t *testing.T, org string) *jwtauth.Claims {
		return signedClaims(t, map[string]any{"org": map[string]any{"id": org}})
	}
	lim := mustNew(t, Config{Limits: []Limit{{Requests: 1, Period: time.Hour, Key: Key{JWTClaim: "org.id"}}}}, withFake(newClock()))
	b := &backend{}
	h := lim.Wrap(b)
	a1, a2, other := claims(t, "acme"), claims(t, "acme"), claims(t, "globex")
	do := func(c *jwtauth.Claims) int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req = req.WithContext(reqinfo.With(req.Context(), &reqinfo.Info{Claims: c}))
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if got := []int{do(a1), do(a2), do(other)}; got[0] != 200 || got[1] != 429 || got[2] != 200 {
		t.Errorf("statuses %v: two tokens of org acme share a bucket, globex has its own", got)
	}
}

// signedClaims verifies a freshly signed token, the way the policy layer
// produces the Claims the sidecar attaches.
func signedClaims(t *testing.T, extra map[string]any) *jwtauth.Claims {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "k", Algorithm: "EdDSA", Use: "sig"}}})
	v, err := jwtauth.New([]jwtauth.Provider{{Name: "p", Issuer: "iss", KeySet: jwtauth.KeySet{JWKS: jwks}}})
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: priv}, (&jose.SignerOptions{}).WithHeader("kid", "k"))
	tok, err := jwt.Signed(sig).Claims(jwt.Claims{Issuer: "iss", Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}).Claims(extra).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify("p", tok)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Several limits: all must admit; a local refusal stops before the next.
func TestAllLimitsMustAdmit(t *testing.T) {
	lim := mustNew(t, Config{Limits: []Limit{
		{Requests: 10, Period: time.Hour},
		{Requests: 2, Period: time.Hour, Key: Key{Peer: true}},
	}}, withFake(newClock()))
	srv, b := serve(t, lim)
	var got []int
	for _, peer := range []string{"a", "a", "a", "b", "b", "b"} {
		got = append(got, get(t, srv.Client(), srv.URL, "X-Test-Peer", peer).StatusCode)
	}
	if fmt.Sprint(got) != "[200 200 429 200 200 429]" || b.hits.Load() != 4 {
		t.Errorf("statuses %v, want 200 200 429 200 200 429", got)
	}
	// Route-wide: 10 in total; 4 admitted plus the 2 refused by the peer
	// limit took route tokens too (tokens taken by an earlier limit are
	// not returned), so 4 remain.
	admitted := 0
	for i := range 10 {
		if get(t, srv.Client(), srv.URL, "X-Test-Peer", "c"+strconv.Itoa(i)).StatusCode == 200 {
			admitted++
		}
	}
	if admitted != 4 {
		t.Errorf("route-wide limit admitted %d more, want 4", admitted)
	}
}

// The middleware works for HTTP/2 requests as net/http presents them.
func TestHTTP2(t *testing.T) {
	lim := mustNew(t, Config{Limits: []Limit{{Requests: 1, Period: time.Hour}}}, withFake(newClock()))
	b := &backend{}
	srv := httptest.NewUnstartedServer(sidecar(lim.Wrap(b)))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	r1, r2 := get(t, srv.Client(), srv.URL), get(t, srv.Client(), srv.URL)
	if r1.ProtoMajor != 2 || r1.StatusCode != 200 || r2.StatusCode != 429 || r2.Header.Get("Retry-After") == "" {
		t.Fatalf("HTTP/%d: %d then %d", r1.ProtoMajor, r1.StatusCode, r2.StatusCode)
	}
}

func TestGlobalNeedsRedis(t *testing.T) {
	_, err := New(Config{Limits: []Limit{{Name: "g", Requests: 1, Period: time.Second, Scope: "global"}}})
	if err == nil || !strings.Contains(err.Error(), "no redis") {
		t.Fatalf("New without Redis: %v", err)
	}
}
