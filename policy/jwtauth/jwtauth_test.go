package jwtauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const iss = "https://issuer.test"

// issuer is a test token issuer: an RSA and a P-256 key, and a JWKS
// server whose answer can be switched.
type issuer struct {
	rsa  *rsa.PrivateKey
	ec   *ecdsa.PrivateKey
	srv  *httptest.Server
	mode atomic.Value // "ok", "500", "garbage", "empty", "hang", "rotated"
	hits atomic.Int64
	// rotated is served in mode "rotated": a new EC key "k3".
	rotated *ecdsa.PrivateKey
}

var (
	keysOnce           sync.Once
	rsaKey             *rsa.PrivateKey
	ecKey, ecKey2, ecX *ecdsa.PrivateKey
)

func testKeys(t testing.TB) {
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
		for _, k := range []**ecdsa.PrivateKey{&ecKey, &ecKey2, &ecX} {
			if *k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func newIssuer(t testing.TB) *issuer {
	t.Helper()
	testKeys(t)
	is := &issuer{rsa: rsaKey, ec: ecKey, rotated: ecKey2}
	is.mode.Store("ok")
	is.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.hits.Add(1)
		switch is.mode.Load().(string) {
		case "500":
			http.Error(w, "boom", 500)
		case "garbage":
			w.Write([]byte("<html>not json"))
		case "empty":
			w.Write([]byte(`{"keys":[]}`))
		case "hang":
			<-r.Context().Done()
		case "rotated":
			json.NewEncoder(w).Encode(is.jwks(true))
		default:
			json.NewEncoder(w).Encode(is.jwks(false))
		}
	}))
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) jwks(rotated bool) jose.JSONWebKeySet {
	ks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &is.rsa.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"},
		{Key: &is.ec.PublicKey, KeyID: "k2", Algorithm: "ES256", Use: "sig"},
		{Key: &ecX.PublicKey, KeyID: "enc", Use: "enc"},
	}}
	if rotated {
		ks.Keys = append(ks.Keys, jose.JSONWebKey{Key: &is.rotated.PublicKey, KeyID: "k3", Algorithm: "ES256", Use: "sig"})
	}
	return ks
}

func (is *issuer) jwksBytes(t testing.TB) []byte {
	b, err := json.Marshal(is.jwks(false))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sign makes a token: alg and key by kid ("k1" RSA, "k2" EC, "k3" the
// rotated EC key, "enc" the encryption key), std claims adjusted by edit.
func sign(t testing.TB, is *issuer, kid string, now time.Time, edit func(*jwt.Claims, map[string]any)) string {
	t.Helper()
	var key any
	alg := jose.ES256
	switch kid {
	case "k1", "":
		key, alg = is.rsa, jose.RS256
	case "k2":
		key = is.ec
	case "k3":
		key = is.rotated
	case "enc":
		key = ecX
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	std := jwt.Claims{Issuer: iss, Subject: "alice", Audience: jwt.Audience{"web"},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour))}
	extra := map[string]any{"scope": "read write", "roles": []string{"dev", "ops"}, "level": 3,
		"realm": map[string]any{"team": "payments"}}
	if edit != nil {
		edit(&std, extra)
	}
	tok, err := jwt.Signed(sig).Claims(std).Claims(extra).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

type clock struct{ now atomic.Int64 }

func (c *clock) Now() time.Time              { return time.Unix(0, c.now.Load()) }
func (c *clock) set(t time.Time)             { c.now.Store(t.UnixNano()) }
func newClock(t time.Time) *clock            { c := &clock{}; c.set(t); return c }
func (c *clock) add(d time.Duration)         { c.now.Add(int64(d)) }
func inline(is *issuer, t testing.TB) KeySet { return KeySet{JWKS: is.jwksBytes(t)} }

func kindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

func TestVerify(t *testing.T) {
	is := newIssuer(t)
	now := time.Now().Truncate(time.Second)
	clk := newClock(now)
	v, err := New([]Provider{{Name: "p", Issuer: iss, Audiences: []string{"web", "api"}, KeySet: inline(is, t), CacheSize: -1}},
		WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	good := sign(t, is, "k1", now, nil)
	parts := strings.Split(good, ".")
	hmacToken := func() string {
		// The classic confusion: HS256 keyed with the RSA public key.
		der, _ := x509.MarshalPKIXPublicKey(&is.rsa.PublicKey)
		h := b64(map[string]string{"alg": "HS256", "typ": "JWT", "kid": "k1"})
		m := hmac.New(sha256.New, der)
		m.Write([]byte(h + "." + parts[1]))
		return h + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	wrongSig := parts[0] + "." + b64(map[string]any{"iss": iss, "aud": "web", "exp": now.Add(time.Hour).Unix(), "sub": "mallory"}) + "." + parts[2]
	jwkHeader := func() string {
		// A token carrying its own key in the header: never trusted.
		sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: ecX},
			(&jose.SignerOptions{EmbedJWK: true}).WithType("JWT"))
		tok, _ := jwt.Signed(sig).Claims(jwt.Claims{Issuer: iss, Audience: jwt.Audience{"web"}, Expiry: jwt.NewNumericDate(now.Add(time.Hour))}).Serialize()
		return tok
	}
	tests := []struct {
		name  string
		token string
		kind  Kind
	}{
		{"RS256", good, 0},
		{"ES256", sign(t, is, "k2", now, nil), 0},
		{"alg none", b64(map[string]string{"alg": "none", "typ": "JWT"}) + "." + parts[1] + ".", Algorithm},
		{"HS256 keyed with the public key", hmacToken(), Algorithm},
		{"unknown kid", sign(t, is, "k3", now, nil), UnknownKey},
		{"known kid, wrong signature", wrongSig, BadSignature},
		{"no kid, unknown key", jwkHeader(), BadSignature},
		{"key marked for encryption", sign(t, is, "enc", now, nil), UnknownKey},
		{"expired", sign(t, is, "k1", now.Add(-2*time.Hour), nil), Expired},
		{"expired within skew", sign(t, is, "k1", now, func(c *jwt.Claims, _ map[string]any) { c.Expiry = jwt.NewNumericDate(now.Add(-20 * time.Second)) }), 0},
		{"nbf in the future", sign(t, is, "k1", now, func(c *jwt.Claims, _ map[string]any) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Minute)) }), NotYetValid},
		{"nbf within skew", sign(t, is, "k1", now, func(c *jwt.Claims, _ map[string]any) { c.NotBefore = jwt.NewNumericDate(now.Add(20 * time.Second)) }), 0},
		{"iat in the future", sign(t, is, "k1", now, func(c *jwt.Claims, _ map[string]any) {
			c.IssuedAt, c.NotBefore = jwt.NewNumericDate(now.Add(time.Minute)), nil
		}), IssuedInFuture},
		{"wrong issuer", sign(t, is, "k1", now, func(c *jwt.Claims, _ map[string]any) { c.Issuer = "https://evil.test" }), Issuer},
		{"wrong audience", sign(t, is, "k1", now, func(c *jwt.Claims, _ map[string]any) { c.Audience = jwt.Audience{"billing"} }), Audience},
		{"second audience", sign(t, is, "k1", now, func(c *jwt.Claims, _ map[string]any) { c.Audience = jwt.Audience{"x", "api"} }), 0},
		{"no exp", sign(t, is, "k1", now, func(c *jwt.Claims, _ map[string]any) { c.Expiry = nil }), Malformed},
		{"garbage", "not.a.jwt", Malformed},
		{"empty", "", NoToken},
		{"oversize", good + strings.Repeat("A", MaxTokenBytes), Malformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify("p", tt.token)
			if kindOf(err) != tt.kind || (tt.kind == 0) != (err == nil) {
				t.Fatalf("Verify: %v (kind %v), want kind %v", err, kindOf(err), tt.kind)
			}
			if err == nil && c.Subject != "alice" {
				t.Errorf("subject %q", c.Subject)
			}
			if err != nil && strings.Contains(err.Error(), tt.token) && tt.token != "" {
				t.Errorf("error leaks the token: %v", err)
			}
		})
	}
	if _, err := v.Verify("nope", good); kindOf(err) != UnknownProvider {
		t.Errorf("unknown provider: %v", err)
	}
	// Only the allowed algorithms: a provider that takes only ES256
	// refuses a valid RS256 token.
	es, err := New([]Provider{{Name: "es", Issuer: iss, Algorithms: []string{"ES256"}, KeySet: inline(is, t)}}, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := es.Verify("es", good); kindOf(err) != Algorithm {
		t.Errorf("RS256 to an ES256-only provider: %v", err)
	}
}

func TestCache(t *testing.T) {
	is := newIssuer(t)
	now := time.Now().Truncate(time.Second)
	clk := newClock(now)
	v, err := New([]Provider{{Name: "p", Issuer: iss, KeySet: inline(is, t), CacheSize: 2}}, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, is, "k2", now, nil)
	c1, err := v.Verify("p", tok)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := v.Verify("p", tok)
	if c1 != c2 {
		t.Error("second verification did not come from the cache")
	}
	if n := testing.AllocsPerRun(50, func() { v.Verify("p", tok) }); n > 2 {
		t.Errorf("cache hit allocates %v times", n)
	}
	// The cache re-checks time: an hour and a minute later the token is
	// expired although it is cached.
	clk.add(time.Hour + time.Minute)
	if _, err := v.Verify("p", tok); kindOf(err) != Expired {
		t.Errorf("cached token after exp: %v", err)
	}
	// Bounded: many tokens keep at most 2 entries.
	for i := range 10 {
		v.Verify("p", sign(t, is, "k2", clk.Now(), func(c *jwt.Claims, _ map[string]any) { c.ID = string(rune('a' + i)) }))
	}
	p := v.byName["p"]
	p.mu.Lock()
	n := len(p.cache)
	p.mu.Unlock()
	if n > 2 {
		t.Errorf("cache holds %d entries, want at most 2", n)
	}
}

func TestRemoteKeySet(t *testing.T) {
	is := newIssuer(t)
	is.mode.Store("500")
	v, err := New([]Provider{{Name: "r", Issuer: iss, KeySet: KeySet{Remote: &Remote{URI: is.srv.URL, CacheDuration: 2 * time.Second, RequestTimeout: 500 * time.Millisecond}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { v.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	tok := sign(t, is, "k1", time.Now(), nil)
	// The issuer counts the hit before the fetcher has read the answer and
	// recorded the failure: wait for the failure itself, not the hit.
	waitFor(t, func() bool {
		_, err := v.Verify("r", tok)
		return err != nil && strings.Contains(err.Error(), "500")
	})
	if _, err := v.Verify("r", tok); kindOf(err) != NoKeys || !strings.Contains(err.Error(), "500") {
		t.Fatalf("before the first fetch: %v, want no_keys naming the failure", err)
	}
	if v.Ready() {
		t.Error("Ready before any key set")
	}
	is.mode.Store("ok")
	waitFor(t, func() bool { _, err := v.Verify("r", tok); return err == nil })
	if !v.Ready() {
		t.Error("not Ready after the fetch")
	}
	// Garbage, an empty set and a hang after good keys: the keys stay,
	// and the status says stale.
	for _, mode := range []string{"garbage", "empty", "hang"} {
		is.mode.Store(mode)
		before := is.hits.Load()
		waitFor(t, func() bool { return is.hits.Load() > before+1 })
		if _, err := v.Verify("r", tok); err != nil {
			t.Errorf("%s: the last good keys were dropped: %v", mode, err)
		}
		st := v.Status()[0]
		if !st.Stale || st.LastError == "" || st.Keys != 2 {
			t.Errorf("%s: status %+v", mode, st)
		}
	}
	// Rotation at the issuer: a token with a new kid asks for an early
	// refresh and is accepted once it is fetched.
	is.mode.Store("rotated")
	rotated := sign(t, is, "k3", time.Now(), nil)
	waitFor(t, func() bool { _, err := v.Verify("r", rotated); return err == nil })
	if st := v.Status()[0]; st.Stale || st.Keys != 3 || !strings.HasPrefix(st.Source, "remote ") {
		t.Errorf("after rotation: %+v", st)
	}
}

func waitFor(t *testing.T, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFileKeySetReload(t *testing.T) {
	is := newIssuer(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, is.jwksBytes(t), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := New([]Provider{{Name: "f", Issuer: iss, KeySet: KeySet{File: path}}})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, is, "k2", time.Now(), nil)
	if _, err := v.Verify("f", tok); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, []byte("{bad"), 0o600)
	v.Reload()
	if _, err := v.Verify("f", tok); err != nil {
		t.Errorf("a bad reload dropped the keys: %v", err)
	}
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &is.rotated.PublicKey, KeyID: "k3", Use: "sig"}}})
	os.WriteFile(path, b, 0o600)
	v.Reload()
	if _, err := v.Verify("f", tok); kindOf(err) != UnknownKey {
		t.Errorf("after reloading a set without k2: %v", err)
	}
	if _, err := v.Verify("f", sign(t, is, "k3", time.Now(), nil)); err != nil {
		t.Errorf("k3 after reload: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	is := newIssuer(t)
	ks := inline(is, t)
	for _, tt := range []struct {
		p    Provider
		want string
	}{
		{Provider{Issuer: iss, KeySet: ks}, "name: required"},
		{Provider{Name: "a", KeySet: ks}, "provider a: issuer: required"},
		{Provider{Name: "a", Issuer: iss, KeySet: ks, Algorithms: []string{"none"}}, `algorithms: "none"`},
		{Provider{Name: "a", Issuer: iss, KeySet: ks, Algorithms: []string{"HS256"}}, `algorithms: "HS256"`},
		{Provider{Name: "a", Issuer: iss, KeySet: ks, ClockSkew: -time.Second}, "clock_skew"},
		{Provider{Name: "a", Issuer: iss}, "exactly one of inline JWKS, file and remote"},
		{Provider{Name: "a", Issuer: iss, KeySet: KeySet{JWKS: ks.JWKS, File: "x"}}, "exactly one"},
		{Provider{Name: "a", Issuer: iss, KeySet: KeySet{Remote: &Remote{URI: "ftp://x"}}}, "not an http(s) URL"},
		{Provider{Name: "a", Issuer: iss, KeySet: KeySet{JWKS: []byte("{")}}, "key set: not a JSON Web Key Set"},
		{Provider{Name: "a", Issuer: iss, KeySet: KeySet{JWKS: []byte(`{"keys":[]}`)}}, "no usable signature key"},
		{Provider{Name: "a", Issuer: iss, KeySet: KeySet{File: "/nonexistent/jwks.json"}}, "no such file"},
		{Provider{Name: "a", Issuer: iss, KeySet: ks, Locations: []Location{{Header: "a", Query: "b"}}}, "locations[0]"},
		{Provider{Name: "a", Issuer: iss, KeySet: ks, ForwardClaims: []ClaimHeader{{Header: "x"}}}, "forward claims[0]"},
	} {
		_, err := New([]Provider{tt.p})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want an error containing %q", tt.p.Name, err, tt.want)
		}
	}
	if _, err := New([]Provider{{Name: "a", Issuer: iss, KeySet: ks}, {Name: "a", Issuer: iss, KeySet: ks}}); err == nil {
		t.Error("two providers named a")
	}
}

type req struct {
	h    map[string][]string
	q, c map[string]string
}

func (r req) Header(name string) (string, int) {
	v := r.h[name]
	if len(v) == 0 {
		return "", 0
	}
	return v[0], len(v)
}
func (r req) Query(n string) (string, bool)  { v, ok := r.q[n]; return v, ok }
func (r req) Cookie(n string) (string, bool) { v, ok := r.c[n]; return v, ok }

func TestAuthenticate(t *testing.T) {
	is := newIssuer(t)
	v, err := New([]Provider{
		{Name: "bearer", Issuer: iss, KeySet: inline(is, t)},
		{Name: "multi", Issuer: iss, KeySet: inline(is, t), Locations: []Location{
			{Header: "X-Token"}, {Query: "access_token"}, {Cookie: "session"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, is, "k2", time.Now(), nil)
	for _, tt := range []struct {
		name, provider string
		r              req
		kind           Kind
		at             string
	}{
		{"bearer", "bearer", req{h: map[string][]string{"Authorization": {"Bearer " + tok}}}, 0, "header Authorization"},
		{"bearer scheme case", "bearer", req{h: map[string][]string{"Authorization": {"bearer " + tok}}}, 0, "header Authorization"},
		{"basic scheme is no bearer token", "bearer", req{h: map[string][]string{"Authorization": {"Basic abc"}}}, NoToken, ""},
		{"header twice", "bearer", req{h: map[string][]string{"Authorization": {"Bearer " + tok, "Bearer x"}}}, Ambiguous, ""},
		{"missing", "bearer", req{}, NoToken, ""},
		{"query", "multi", req{q: map[string]string{"access_token": tok}}, 0, "query parameter access_token"},
		{"cookie", "multi", req{c: map[string]string{"session": tok}}, 0, "cookie session"},
		{"header first", "multi", req{h: map[string][]string{"X-Token": {tok}}, q: map[string]string{"access_token": "x"}}, 0, "header X-Token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, found, err := v.Authenticate(tt.provider, tt.r)
			if kindOf(err) != tt.kind || (err == nil) != (tt.kind == 0) {
				t.Fatalf("%v, want kind %v", err, tt.kind)
			}
			if err == nil && (c.Subject != "alice" || !found.OK || found.Location.String() != tt.at) {
				t.Errorf("claims %+v found %+v", c, found)
			}
		})
	}
}

func TestClaims(t *testing.T) {
	is := newIssuer(t)
	v, _ := New([]Provider{{Name: "p", Issuer: iss, KeySet: inline(is, t)}})
	c, err := v.Verify("p", sign(t, is, "k1", time.Now(), func(_ *jwt.Claims, m map[string]any) {
		m["admin"] = true
		m["groups"] = []any{"a", 7, true, map[string]any{"x": 1}}
	}))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path  []string
		value string
		want  bool
	}{
		{[]string{"sub"}, "alice", true},
		{[]string{"sub"}, "Alice", false},
		{[]string{"scope"}, "write", true}, // space-separated scope tokens
		{[]string{"scope"}, "read write", true},
		{[]string{"scope"}, "wri", false},
		{[]string{"roles"}, "ops", true},
		{[]string{"roles"}, "admin", false},
		{[]string{"level"}, "3", true},
		{[]string{"admin"}, "true", true},
		{[]string{"groups"}, "7", true},
		{[]string{"groups"}, "true", true},
		{[]string{"realm", "team"}, "payments", true},
		{[]string{"realm"}, "payments", false}, // objects never match
		{[]string{"realm", "team", "x"}, "payments", false},
		{[]string{"missing"}, "", false},
	} {
		if got := c.Match(tt.path, tt.value); got != tt.want {
			t.Errorf("Match(%v, %q) = %v, want %v", tt.path, tt.value, got, tt.want)
		}
	}
	for path, want := range map[string]string{"sub": "alice", "roles": "dev,ops", "level": "3", "realm": `{"team":"payments"}`} {
		if got, ok := c.Text([]string{path}); !ok || got != want {
			t.Errorf("Text(%s) = %q %v, want %q", path, got, ok, want)
		}
	}
	if c.Payload() == "" || strings.Contains(c.Payload(), ".") {
		t.Errorf("payload %q", c.Payload())
	}
}

func TestWWWAuthenticate(t *testing.T) {
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{Provider: "okta", Kind: NoToken, Reason: "no token"}, `Bearer realm="okta"`},
		{Error{Provider: "okta", Kind: Expired, Reason: "token expired"}, `Bearer realm="okta", error="invalid_token", error_description="token expired"`},
		{Error{Provider: `a"b`, Kind: Malformed, Reason: "bad \"x\"\n"}, `Bearer realm="a_b", error="invalid_token", error_description="bad _x__"`},
	} {
		if got := tt.e.WWWAuthenticate(); got != tt.want {
			t.Errorf("%v: %s, want %s", tt.e, got, tt.want)
		}
	}
}

func FuzzVerify(f *testing.F) {
	is := newIssuer(f)
	v, err := New([]Provider{{Name: "p", Issuer: iss, KeySet: inline(is, f), CacheSize: -1}})
	if err != nil {
		f.Fatal(err)
	}
	good := sign(f, is, "k2", time.Now(), nil)
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		// Only the issuer's signed payload can verify.
		if _, err := v.Verify("p", tok); err == nil && payloadOf(tok) != payloadOf(good) {
			t.Fatalf("accepted a token that is not the signed one: %q", tok)
		}
	})
}

func FuzzJWKS(f *testing.F) {
	is := newIssuer(f)
	f.Add(is.jwksBytes(f))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		keys, err := parseKeySet(doc)
		for _, k := range keys {
			if _, ok := k.Key.([]byte); ok {
				t.Fatal("a symmetric key was accepted as a signature key")
			}
		}
		_ = err
	})
}

func BenchmarkVerify(b *testing.B) {
	is := newIssuer(b)
	now := time.Now()
	for _, alg := range []struct{ name, kid string }{{"RS256", "k1"}, {"ES256", "k2"}} {
		for _, cache := range []struct {
			name string
			size int
		}{{"uncached", -1}, {"cached", 0}} {
			b.Run(alg.name+"-"+cache.name, func(b *testing.B) {
				v, err := New([]Provider{{Name: "p", Issuer: iss, KeySet: inline(is, b), CacheSize: cache.size}})
				if err != nil {
					b.Fatal(err)
				}
				tok := sign(b, is, alg.kid, now, nil)
				if _, err := v.Verify("p", tok); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := v.Verify("p", tok); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSignatureOnly is the bare signature check of the same token
// with the standard library, the floor under BenchmarkVerify's uncached
// figures (compare them within one run: the machine is shared).
func BenchmarkSignatureOnly(b *testing.B) {
	is := newIssuer(b)
	for _, kid := range []string{"k1", "k2"} {
		tok := sign(b, is, kid, time.Now(), nil)
		parts := strings.Split(tok, ".")
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		name := map[string]string{"k1": "RS256", "k2": "ES256"}[kid]
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				d := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
				var ok bool
				if kid == "k1" {
					ok = rsa.VerifyPKCS1v15(&is.rsa.PublicKey, crypto.SHA256, d[:], sig) == nil
				} else {
					r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
					ok = ecdsa.Verify(&is.ec.PublicKey, d[:], r, s)
				}
				if !ok || d != digest {
					b.Fatal("signature does not verify")
				}
			}
		})
	}
}
