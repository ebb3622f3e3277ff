// Package clientip finds the address of the client a request came from
// when proxies stand in front of the listener: the rightmost address of
// X-Forwarded-For that is not one of the configured trusted proxies, so a
// client cannot choose its own address by sending the header (anything
// left of the first untrusted hop is the client's own claim).
//
// Rate limiting per client IP and CIDR filtering both ask a Resolver; a
// Resolver is immutable and safe for concurrent use.
package clientip

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver applies a trusted-proxy list. The zero value trusts nothing:
// the client is the TCP peer, and X-Forwarded-For is ignored.
type Resolver struct {
	trusted []netip.Prefix
}

// New parses the trusted proxies (CIDR prefixes or single addresses). An
// error names the entry by its index.
func New(trusted []string) (Resolver, error) {
	r := Resolver{trusted: make([]netip.Prefix, 0, len(trusted))}
	for i, s := range trusted {
		p, err := ParsePrefix(s)
		if err != nil {
			return Resolver{}, fmt.Errorf("[%d]: %w", i, err)
		}
		r.trusted = append(r.trusted, p)
	}
	return r, nil
}

// ParsePrefix reads a CIDR prefix ("10.0.0.0/8", "2001:db8::/32") or a
// single address, which stands for itself. IPv4-mapped IPv6 forms are
// unmapped, so that "::ffff:10.0.0.1" and "10.0.0.1" are the same host.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix", s)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Trusted reports whether a is one of the trusted proxies.
func (r Resolver) Trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Client returns the client's address for a request whose TCP peer is
// remote. When remote is a trusted proxy, X-Forwarded-For (every
// occurrence, in order) is read from the right: each trusted hop is
// skipped, and the first address that is not trusted is the client. A
// malformed entry stops the walk at the hop that wrote it: that hop is
// then the client, since nothing it forwarded can be believed. When every
// entry is trusted, the leftmost one is the client.
func (r Resolver) Client(remote netip.Addr, h http.Header) netip.Addr {
	remote = remote.Unmap()
	if len(r.trusted) == 0 || !r.Trusted(remote) {
		return remote
	}
	values := h["X-Forwarded-For"]
	client := remote
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for v != "" {
			var hop string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				hop, v = v[j+1:], v[:j]
			} else {
				hop, v = v, ""
			}
			a, ok := parseHop(hop)
			if !ok {
				return client
			}
			client = a
			if !r.Trusted(a) {
				return a
			}
		}
	}
	return client
}

// parseHop reads one X-Forwarded-For element: an address, optionally with
// a port ("1.2.3.4:5", "[2001:db8::1]:5"), as some proxies write.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}
