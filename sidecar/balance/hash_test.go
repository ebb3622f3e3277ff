package balance

import (
	"fmt"
	"math/bits"
	"net/netip"
	"regexp"
	"testing"
	"time"
)

// Reference values from the xxHash test suite and github.com/cespare/xxhash.
func TestXXH64(t *testing.T) {
	long := []byte("Nobody inspects the spammish repetition, nor the pipeline of the sidecar!")
	tests := []struct {
		in   []byte
		seed uint64
		want uint64
	}{
		{nil, 0, 0xef46db3751d8e999},
		{[]byte("a"), 0, 0xd24ec4f1a98c6e5b},
		{[]byte("abc"), 0, 0x44bc2cf5ad770999},
		{[]byte("abc"), 1, 0xbea9ca8199328908},
		{[]byte("Nobody inspects the spammish repetition"), 0, 0xfbcea83c8a378bf1},
	}
	for _, tt := range tests {
		if got := xxh64(tt.in, tt.seed); got != tt.want {
			t.Errorf("xxh64(%q, %d) = %#x, want %#x", tt.in, tt.seed, got, tt.want)
		}
	}
	// Every tail length (0-7 bytes after 8-byte and 32-byte blocks) is
	// distinct; a cheap guard against a wrong loop bound.
	seen := map[uint64]bool{}
	for n := range len(long) {
		seen[xxh64(long[:n], 0)] = true
	}
	if len(seen) != len(long) {
		t.Fatalf("prefixes of one string collide: %d distinct hashes for %d prefixes", len(seen), len(long))
	}
}

type fakeRequest struct {
	headers, cookies, query map[string]string
	ip                      netip.Addr
}

func (r *fakeRequest) get(m map[string]string, name string) ([]byte, bool) {
	v, ok := m[name]
	return []byte(v), ok
}
func (r *fakeRequest) Header(name string) ([]byte, bool) { return r.get(r.headers, name) }
func (r *fakeRequest) Cookie(name string) ([]byte, bool) { return r.get(r.cookies, name) }
func (r *fakeRequest) Query(name string) ([]byte, bool)  { return r.get(r.query, name) }
func (r *fakeRequest) SourceIP() netip.Addr              { return r.ip }

type connRequest struct {
	fakeRequest
	remote, local netip.AddrPort
}

func (r *connRequest) ConnAddrs() (netip.AddrPort, netip.AddrPort) { return r.remote, r.local }

func xs(s string) uint64 { return xxh64([]byte(s), 0) }

func TestHash(t *testing.T) {
	req := &fakeRequest{
		headers: map[string]string{"x-user": "alice", "x-empty": ""},
		cookies: map[string]string{"sid": "s-123", "blank": ""},
		query:   map[string]string{"tenant": "acme"},
		ip:      netip.MustParseAddr("10.1.2.3"),
	}
	header := HashPolicy{Field: FieldHeader, FieldValue: "x-user"}
	cookie := HashPolicy{Field: FieldCookie, FieldValue: "sid"}
	query := HashPolicy{Field: FieldQuery, FieldValue: "tenant"}
	source := HashPolicy{SourceIP: true}
	missing := HashPolicy{Field: FieldHeader, FieldValue: "x-none"}
	terminal := func(p HashPolicy) HashPolicy { p.Terminal = true; return p }
	combine := func(hs ...uint64) uint64 {
		var h uint64
		for _, x := range hs {
			h = bits.RotateLeft64(h, 1) ^ x
		}
		return h
	}
	tests := []struct {
		name     string
		policies []HashPolicy
		want     uint64
		hashed   bool
	}{
		{"none", nil, 0, false},
		{"header", []HashPolicy{header}, xs("alice"), true},
		{"empty header counts", []HashPolicy{{Field: FieldHeader, FieldValue: "x-empty"}}, xs(""), true},
		{"cookie", []HashPolicy{cookie}, xs("s-123"), true},
		{"empty cookie does not count", []HashPolicy{{Field: FieldCookie, FieldValue: "blank"}}, 0, false},
		{"query parameter", []HashPolicy{query}, xs("acme"), true},
		{"source ip", []HashPolicy{source}, xs("10.1.2.3"), true},
		{"missing", []HashPolicy{missing}, 0, false},
		{"combined in order", []HashPolicy{header, cookie, query}, combine(xs("alice"), xs("s-123"), xs("acme")), true},
		{"order matters", []HashPolicy{query, cookie, header}, combine(xs("acme"), xs("s-123"), xs("alice")), true},
		{"duplicates do not cancel", []HashPolicy{header, header}, combine(xs("alice"), xs("alice")), true},
		{"missing skipped", []HashPolicy{missing, header}, xs("alice"), true},
		{"terminal stops", []HashPolicy{terminal(header), cookie}, xs("alice"), true},
		{"terminal without value falls through", []HashPolicy{terminal(missing), cookie}, xs("s-123"), true},
		{"terminal after a hash stops", []HashPolicy{header, terminal(missing), cookie}, xs("alice"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, hashed, set := Hash(tt.policies, req)
			if h != tt.want || hashed != tt.hashed || set != nil {
				t.Fatalf("Hash = %#x, %v, %v; want %#x, %v, nil", h, hashed, set, tt.want, tt.hashed)
			}
		})
	}
}

func TestHashSourceIP(t *testing.T) {
	p := []HashPolicy{{SourceIP: true}}
	v4, _, _ := Hash(p, &fakeRequest{ip: netip.MustParseAddr("192.0.2.7")})
	mapped, _, _ := Hash(p, &fakeRequest{ip: netip.MustParseAddr("::ffff:192.0.2.7")})
	if v4 != mapped || v4 != xs("192.0.2.7") {
		t.Errorf("IPv4 %#x and IPv4-mapped %#x hashes differ", v4, mapped)
	}
	if v6, _, _ := Hash(p, &fakeRequest{ip: netip.MustParseAddr("2001:db8::1")}); v6 != xs("2001:db8::1") {
		t.Errorf("IPv6 hash = %#x", v6)
	}
	if _, hashed, _ := Hash(p, &fakeRequest{}); hashed {
		t.Error("a request without a source address was hashed")
	}
}

func TestHashGeneratesCookie(t *testing.T) {
	hex16 := regexp.MustCompile(`^[0-9a-f]{16}$`)
	policies := []HashPolicy{
		{Field: FieldCookie, FieldValue: "route", Terminal: true, Cookie: &CookieConfig{TTL: 90 * time.Second, Path: "/api"}},
		{SourceIP: true},
	}
	first := &fakeRequest{ip: netip.MustParseAddr("10.0.0.9")}
	h1, hashed, set := Hash(policies, first)
	if set == nil || !hashed {
		t.Fatalf("Hash without the cookie: set = %v, hashed = %v; want a generated cookie", set, hashed)
	}
	if set.Name != "route" || set.Path != "/api" || set.TTL != 90*time.Second || set.Session || !hex16.MatchString(set.Value) {
		t.Fatalf("generated %+v", set)
	}
	if h1 != xs(set.Value) {
		t.Fatalf("hash %#x is not the hash of the generated value %q (terminal)", h1, set.Value)
	}
	if got, want := set.String(), "route="+set.Value+"; Max-Age=90; Path=/api; HttpOnly"; got != want {
		t.Fatalf("Set-Cookie %q, want %q", got, want)
	}
	// The next request carries the cookie: same hash, nothing generated.
	next := &fakeRequest{ip: first.ip, cookies: map[string]string{"route": set.Value}}
	if h2, _, set2 := Hash(policies, next); h2 != h1 || set2 != nil {
		t.Fatalf("with the cookie: hash %#x (want %#x), set %v", h2, h1, set2)
	}
	// Random values differ between requests without ConnAddrs.
	if _, _, other := Hash(policies, first); other.Value == set.Value {
		t.Fatalf("two generated cookies share the value %q", set.Value)
	}
}

// With connection addresses, the value is Envoy's: the hex xxh64 of
// remote and local address, the same for all requests of a connection.
func TestHashGeneratedCookieFromConnection(t *testing.T) {
	policies := []HashPolicy{{Field: FieldCookie, FieldValue: "s", Cookie: &CookieConfig{Session: true}}}
	r := &connRequest{remote: netip.MustParseAddrPort("10.0.0.9:51000"), local: netip.MustParseAddrPort("127.0.0.1:9191")}
	_, _, a := Hash(policies, r)
	_, _, b := Hash(policies, r)
	want := fmt.Sprintf("%016x", xs("10.0.0.9:51000127.0.0.1:9191"))
	if a.Value != want || b.Value != want {
		t.Fatalf("generated %q and %q, want %q", a.Value, b.Value, want)
	}
	if got := a.String(); got != "s="+want+"; HttpOnly" {
		t.Fatalf("session Set-Cookie = %q", got)
	}
}

func TestHashCookieGeneration(t *testing.T) {
	tests := []struct {
		cfg      *CookieConfig
		generate bool
	}{
		{nil, false},
		{&CookieConfig{}, false},
		{&CookieConfig{Path: "/"}, false},
		{&CookieConfig{Session: true}, true},
		{&CookieConfig{TTL: time.Minute}, true},
	}
	for _, tt := range tests {
		_, hashed, set := Hash([]HashPolicy{{Field: FieldCookie, FieldValue: "c", Cookie: tt.cfg}}, &fakeRequest{})
		if (set != nil) != tt.generate || hashed != tt.generate {
			t.Errorf("%+v: set = %v, hashed = %v; want generated %v", tt.cfg, set, hashed, tt.generate)
		}
	}
	// One cookie per request: the second generating policy is skipped.
	two := []HashPolicy{
		{Field: FieldCookie, FieldValue: "a", Cookie: &CookieConfig{Session: true}},
		{Field: FieldCookie, FieldValue: "b", Cookie: &CookieConfig{Session: true}},
	}
	h, _, set := Hash(two, &fakeRequest{})
	if set.Name != "a" || h != xs(set.Value) {
		t.Fatalf("two generating policies: set %+v, hash %#x", set, h)
	}
}

func TestSetCookieString(t *testing.T) {
	tests := []struct {
		c    SetCookie
		want string
	}{
		{SetCookie{Name: "n", Value: "v", TTL: time.Hour}, "n=v; Max-Age=3600; HttpOnly"},
		{SetCookie{Name: "n", Value: "v", TTL: time.Hour, Session: true, Path: "/"}, "n=v; Path=/; HttpOnly"},
		{SetCookie{Name: "n", Value: "v", TTL: 500 * time.Millisecond}, "n=v; HttpOnly"},
		{SetCookie{Name: "n", Value: "v", TTL: 1500 * time.Millisecond, Path: "/x"}, "n=v; Max-Age=1; Path=/x; HttpOnly"},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.c, got, tt.want)
		}
	}
}

func TestHashDoesNotAllocate(t *testing.T) {
	policies := []HashPolicy{{Field: FieldHeader, FieldValue: "x-user"}, {SourceIP: true}, {Field: FieldCookie, FieldValue: "sid"}}
	req := &staticRequest{v: []byte("alice"), ip: netip.MustParseAddr("2001:db8::77")}
	if n := testing.AllocsPerRun(100, func() { Hash(policies, req) }); n != 0 {
		t.Fatalf("Hash allocates %.0f times per call", n)
	}
}

// staticRequest answers every name with the same value, without
// allocating.
type staticRequest struct {
	v  []byte
	ip netip.Addr
}

func (r *staticRequest) Header(string) ([]byte, bool) { return r.v, true }
func (r *staticRequest) Cookie(string) ([]byte, bool) { return r.v, true }
func (r *staticRequest) Query(string) ([]byte, bool)  { return r.v, true }
func (r *staticRequest) SourceIP() netip.Addr         { return r.ip }

func BenchmarkHash(b *testing.B) {
	req := &staticRequest{v: []byte("0f8c1e2d-user-42"), ip: netip.MustParseAddr("10.1.2.3")}
	for _, tc := range []struct {
		name string
		p    []HashPolicy
	}{
		{"header", []HashPolicy{{Field: FieldHeader, FieldValue: "x-user"}}},
		{"source_ip", []HashPolicy{{SourceIP: true}}},
		{"header+cookie+ip", []HashPolicy{{Field: FieldHeader, FieldValue: "x-user"}, {Field: FieldCookie, FieldValue: "sid"}, {SourceIP: true}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Hash(tc.p, req)
			}
		})
	}
}
