package balance

import (
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"time"
)

// Request is what hash policies read from a request: an adapter over the
// proxy's own request head, or over *http.Request. Methods return the first
// value of the named header, cookie or query parameter, and whether the
// request has it. Returned slices are only read, and not retained after
// Hash returns.
type Request interface {
	Header(name string) ([]byte, bool)
	Cookie(name string) ([]byte, bool)
	Query(name string) ([]byte, bool)
	// SourceIP is the downstream client's address; the zero Addr when
	// unknown.
	SourceIP() netip.Addr
}

// ConnRequest is a Request that also knows its connection's addresses.
// Hash then derives a generated cookie's value from them exactly as Envoy
// does, so that concurrent requests on one connection receive the same
// cookie; other Requests get a random value.
type ConnRequest interface {
	Request
	ConnAddrs() (remote, local netip.AddrPort)
}

// SetCookie is a cookie that Hash generated for a request without one: the
// proxy adds it to the response as a Set-Cookie header.
type SetCookie struct {
	Name, Value, Path string
	// TTL is the Max-Age; ignored when Session, and under a second it
	// gives a session cookie too.
	TTL     time.Duration
	Session bool
}

// String renders the Set-Cookie header value as Envoy does:
// `name=value; Max-Age=seconds; Path=path; HttpOnly`, without Max-Age for
// a session cookie and without Path when empty. The value is not quoted
// (Envoy quotes it), so that a cookie parser that keeps quotes still
// hashes the value the generating request hashed.
func (c *SetCookie) String() string {
	b := make([]byte, 0, len(c.Name)+len(c.Value)+len(c.Path)+40)
	b = append(b, c.Name...)
	b = append(b, '=')
	b = append(b, c.Value...)
	if s := int64(c.TTL / time.Second); !c.Session && s > 0 {
		b = append(b, "; Max-Age="...)
		b = strconv.AppendInt(b, s, 10)
	}
	if c.Path != "" {
		b = append(b, "; Path="...)
		b = append(b, c.Path...)
	}
	b = append(b, "; HttpOnly"...)
	return string(b)
}

// Hash computes the request hash from policies as Envoy's router does:
// policies are evaluated in order; each one that finds its value
// contributes xxh64(value), combined as hash = rotl(hash, 1) ^ h (the
// rotation keeps two identical policies from cancelling out). Once any
// hash has been computed, a Terminal policy ends the evaluation. hashed is
// false when no policy found a value; hash-based policies then pick at
// random.
//
// Values: a header or query parameter counts when present, even empty; a
// cookie only when non-empty; the source IP is hashed in its text form
// (IPv4-mapped IPv6 addresses unmapped, so that dual-stack listeners agree).
//
// When a cookie policy that generates cookies (Cookie.Session, or a
// positive Cookie.TTL) finds no cookie, Hash generates one, returns it in
// set, and hashes its value: the response carries the cookie, and the
// client's next requests, carrying it, hash to the same endpoint. The value
// is, as in Envoy, the 16 hex digits of xxh64 of the connection's remote
// and local addresses when r is a ConnRequest, and random otherwise. At
// most one cookie is generated per request: a second generating policy
// without its cookie contributes nothing.
//
// Hash allocates only when it generates a cookie.
func Hash(policies []HashPolicy, r Request) (hash uint64, hashed bool, set *SetCookie) {
	var buf [64]byte
	for i := range policies {
		p := &policies[i]
		var (
			v  []byte
			ok bool
		)
		switch {
		case p.SourceIP:
			if a := r.SourceIP(); a.IsValid() {
				v, ok = a.Unmap().AppendTo(buf[:0]), true
			}
		case p.Field == FieldHeader:
			v, ok = r.Header(p.FieldValue)
		case p.Field == FieldQuery:
			v, ok = r.Query(p.FieldValue)
		case p.Field == FieldCookie:
			v, ok = r.Cookie(p.FieldValue)
			ok = ok && len(v) > 0
			if !ok && set == nil && p.Cookie.generates() {
				set = generateCookie(p, r)
				v, ok = append(buf[:0], set.Value...), true
			}
		}
		if ok {
			hash = bits.RotateLeft64(hash, 1) ^ xxh64(v, 0)
			hashed = true
		}
		if p.Terminal && hashed {
			break
		}
	}
	return hash, hashed, set
}

func generateCookie(p *HashPolicy, r Request) *SetCookie {
	var h uint64
	if cr, ok := r.(ConnRequest); ok {
		remote, local := cr.ConnAddrs()
		var buf [128]byte
		b := remote.AppendTo(buf[:0])
		b = local.AppendTo(b)
		h = xxh64(b, 0)
	} else {
		h = rand.Uint64()
	}
	var hex [16]byte
	const digits = "0123456789abcdef"
	for i := range hex {
		hex[15-i] = digits[h>>(4*i)&0xf]
	}
	return &SetCookie{
		Name:    p.FieldValue,
		Value:   string(hex[:]),
		Path:    p.Cookie.Path,
		TTL:     p.Cookie.TTL,
		Session: p.Cookie.Session || p.Cookie.TTL < time.Second,
	}
}
