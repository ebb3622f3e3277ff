package cache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxDelta is what RFC 9111 §1.2.2 says a too-large delta-seconds counts
// as (2^31 seconds).
const maxDelta = 1 << 31

// directives are the Cache-Control directives the cache acts on, from a
// request or a response. Delta-seconds fields are -1 when the directive
// is absent. A qualified no-cache or private ("private=Set-Cookie") is
// taken as the unqualified one: the cache does not store responses with
// some fields removed.
type directives struct {
	maxAge, sMaxAge, minFresh    int
	staleWhileRevalidate         int
	staleIfError                 int
	noStore, noCache, private    bool
	public, mustRevalidate       bool
	proxyRevalidate, onlyIfCache bool
}

// parseCacheControl reads every Cache-Control field line in vals
// (RFC 9111 §5.2: comma-separated directives, each a token with an
// optional token or quoted-string argument). Directive names are
// case-insensitive; unknown directives are ignored; when a directive
// appears twice the first occurrence wins (§4.2.1). A delta-seconds that
// is not a non-negative integer counts as 0, so a malformed max-age makes
// the response stale rather than fresh.
func parseCacheControl(vals []string) directives {
	d := directives{maxAge: -1, sMaxAge: -1, minFresh: -1, staleWhileRevalidate: -1, staleIfError: -1}
	for _, v := range vals {
		for v != "" {
			var name, arg string
			name, arg, v = nextDirective(v)
			switch {
			case strings.EqualFold(name, "max-age"):
				setDelta(&d.maxAge, arg)
			case strings.EqualFold(name, "s-maxage"):
				setDelta(&d.sMaxAge, arg)
			case strings.EqualFold(name, "min-fresh"):
				setDelta(&d.minFresh, arg)
			case strings.EqualFold(name, "stale-while-revalidate"):
				setDelta(&d.staleWhileRevalidate, arg)
			case strings.EqualFold(name, "stale-if-error"):
				setDelta(&d.staleIfError, arg)
			case strings.EqualFold(name, "no-store"):
				d.noStore = true
			case strings.EqualFold(name, "no-cache"):
				d.noCache = true
			case strings.EqualFold(name, "private"):
				d.private = true
			case strings.EqualFold(name, "public"):
				d.public = true
			case strings.EqualFold(name, "must-revalidate"):
				d.mustRevalidate = true
			case strings.EqualFold(name, "proxy-revalidate"):
				d.proxyRevalidate = true
			case strings.EqualFold(name, "only-if-cached"):
				d.onlyIfCache = true
			}
		}
	}
	return d
}

// nextDirective splits the first directive off s: its name, its argument
// (unquoted), and the rest after the separating comma. Commas inside a
// quoted string do not separate.
func nextDirective(s string) (name, arg, rest string) {
	i := 0
	for i < len(s) && s[i] != ',' && s[i] != '=' {
		i++
	}
	name = strings.TrimSpace(s[:i])
	if i == len(s) {
		return name, "", ""
	}
	if s[i] == ',' {
		return name, "", s[i+1:]
	}
	s = strings.TrimLeft(s[i+1:], " \t")
	if s != "" && s[0] == '"' {
		var b strings.Builder
		j := 1
		for ; j < len(s) && s[j] != '"'; j++ {
			if s[j] == '\\' && j+1 < len(s) {
				j++
			}
			b.WriteByte(s[j])
		}
		arg = b.String()
		s = s[min(j+1, len(s)):]
		if k := strings.IndexByte(s, ','); k >= 0 {
			return name, arg, s[k+1:]
		}
		return name, arg, ""
	}
	if k := strings.IndexByte(s, ','); k >= 0 {
		return name, strings.TrimSpace(s[:k]), s[k+1:]
	}
	return name, strings.TrimSpace(s), ""
}

func setDelta(dst *int, arg string) {
	if *dst >= 0 {
		return
	}
	*dst = parseDelta(arg)
}

// parseDelta reads delta-seconds; anything else is 0, and values past
// 2^31 are 2^31.
func parseDelta(s string) int {
	if s == "" {
		return 0
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
		if n >= maxDelta {
			return maxDelta
		}
	}
	return n
}

func seconds(n int) time.Duration { return time.Duration(n) * time.Second }

// requestDirectives reads a request's Cache-Control, and Pragma: no-cache
// when there is no Cache-Control (RFC 9111 §5.4).
func requestDirectives(h http.Header) directives {
	cc := h["Cache-Control"]
	d := parseCacheControl(cc)
	if len(cc) == 0 {
		for _, p := range h["Pragma"] {
			if strings.Contains(strings.ToLower(p), "no-cache") {
				d.noCache = true
			}
		}
	}
	return d
}

// parseAge reads the Age header (delta-seconds); absent or malformed is 0.
func parseAge(h http.Header) time.Duration {
	v := h.Get("Age")
	if v == "" {
		return 0
	}
	return seconds(parseDelta(strings.TrimSpace(v)))
}

// headerTime reads an HTTP-date header; ok is false when absent or
// malformed.
func headerTime(h http.Header, name string) (time.Time, bool) {
	v := h.Get(name)
	if v == "" {
		return time.Time{}, false
	}
	t, err := http.ParseTime(v)
	return t, err == nil
}

// varyNames lists the field names of a response's Vary header,
// canonicalized and in order; star is true for "Vary: *".
func varyNames(h http.Header) (names []string, star bool) {
	for _, v := range h["Vary"] {
		for _, f := range strings.Split(v, ",") {
			f = strings.TrimSpace(f)
			switch f {
			case "":
			case "*":
				return nil, true
			default:
				names = append(names, http.CanonicalHeaderKey(f))
			}
		}
	}
	return names, false
}

// varyValue is the normalized value of a selecting header in a request:
// all its field lines, each list element trimmed, joined by commas
// (RFC 9111 §4.1 allows normalizing whitespace). An absent header is ""
// and differs from a present empty one by the leading marker.
func varyValue(h http.Header, name string) string {
	vals, ok := h[name]
	if !ok {
		return ""
	}
	var b strings.Builder
	b.WriteByte('=')
	for i, v := range vals {
		for j, f := range strings.Split(v, ",") {
			if i > 0 || j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strings.TrimSpace(f))
		}
	}
	return b.String()
}

// etagMatch is the weak comparison of RFC 9110 §8.8.3.2 of an
// If-None-Match value against a stored ETag.
func etagMatch(ifNoneMatch []string, etag string) bool {
	if etag == "" {
		return false
	}
	e := strings.TrimPrefix(etag, "W/")
	for _, v := range ifNoneMatch {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == e {
				return true
			}
		}
	}
	return false
}

// validToken reports whether s is an RFC 9110 token (a header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func itoa(n int) string { return strconv.Itoa(n) }
