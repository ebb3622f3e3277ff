package clientip

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestClient(t *testing.T) {
	r, err := New([]string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"no header", "10.1.1.1", nil, "10.1.1.1"},
		{"untrusted peer ignores header", "203.0.113.9", []string{"198.51.100.1"}, "203.0.113.9"},
		{"one hop", "10.1.1.1", []string{"198.51.100.1"}, "198.51.100.1"},
		{"spoofed left part ignored", "10.1.1.1", []string{"1.1.1.1, 198.51.100.1"}, "198.51.100.1"},
		{"trusted hops skipped", "10.1.1.1", []string{"198.51.100.1, 10.2.2.2, 192.0.2.7"}, "198.51.100.1"},
		{"several header lines", "10.1.1.1", []string{"6.6.6.6", "198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"all trusted: leftmost", "10.1.1.1", []string{"10.3.3.3, 10.2.2.2"}, "10.3.3.3"},
		{"garbage stops at the hop that wrote it", "10.1.1.1", []string{"1.1.1.1, nonsense, 10.2.2.2"}, "10.2.2.2"},
		{"garbage from the peer itself", "10.1.1.1", []string{"nonsense"}, "10.1.1.1"},
		{"ports", "10.1.1.1", []string{"198.51.100.1:443"}, "198.51.100.1"},
		{"ipv6", "2001:db8::1", []string{"[2001:db9::5]:80"}, "2001:db9::5"},
		{"mapped peer", "::ffff:10.1.1.1", []string{"198.51.100.1"}, "198.51.100.1"},
		{"empty elements", "10.1.1.1", []string{"198.51.100.1,"}, "10.1.1.1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range c.xff {
				h.Add("X-Forwarded-For", v)
			}
			got := r.Client(netip.MustParseAddr(c.remote), h)
			if got != netip.MustParseAddr(c.want) {
				t.Fatalf("Client = %s, want %s", got, c.want)
			}
		})
	}
}

func TestZeroResolverTrustsNothing(t *testing.T) {
	h := http.Header{"X-Forwarded-For": {"1.2.3.4"}}
	if got := (Resolver{}).Client(netip.MustParseAddr("10.0.0.1"), h); got != netip.MustParseAddr("10.0.0.1") {
		t.Fatalf("Client = %s", got)
	}
}

func TestNewErrors(t *testing.T) {
	for _, s := range []string{"10.0.0.0/33", "example.com", ""} {
		if _, err := New([]string{"10.0.0.0/8", s}); err == nil {
			t.Errorf("%q accepted", s)
		} else if err.Error()[:3] != "[1]" {
			t.Errorf("error %q does not name the entry", err)
		}
	}
}

func FuzzClient(f *testing.F) {
	f.Add("10.0.0.1", "1.2.3.4, 10.0.0.2")
	f.Add("10.0.0.1", "[::1]:4,,x")
	r, _ := New([]string{"10.0.0.0/8"})
	f.Fuzz(func(t *testing.T, remote, xff string) {
		a, err := netip.ParseAddr(remote)
		if err != nil {
			return
		}
		got := r.Client(a, http.Header{"X-Forwarded-For": {xff}})
		if !r.Trusted(a.Unmap()) && got != a.Unmap() {
			t.Fatalf("untrusted peer %s resolved to %s", a, got)
		}
	})
}
