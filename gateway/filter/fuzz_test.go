package filter

import (
	"strings"
	"testing"
)

// FuzzOrigin checks the allow_origins parser and matcher against a
// plain restatement of the rules: an exact entry matches only itself
// (ASCII case aside); a wildcard entry matches its scheme, one DNS label
// and its exact suffix.
func FuzzOrigin(f *testing.F) {
	for _, s := range [][2]string{
		{"https://app.example.com", "https://app.example.com"},
		{"https://*.example.com", "https://a.example.com"},
		{"https://*.example.com", "https://a.b.example.com"},
		{"https://*.example.com", "https://example.com"},
		{"http://*.example.com:8080", "http://x.example.com:8080"},
		{"http://[::1]:3000", "http://[::1]:3000"},
		{"HTTPS://App.Example.com", "https://APP.example.COM"},
		{"https://*.example.com", "https://evil.com/.example.com"},
		{"https://*.k.com", "https://\u212a.k.com"},
		{"*", "null"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, o string) {
		p, err := parseOrigin(pattern)
		if err != nil {
			return
		}
		lp := lowerASCII(pattern)
		if strings.Count(lp, "*") > 1 || strings.Contains(lp, "*") != (p.exact == "") {
			t.Fatalf("%q accepted: %+v", pattern, p)
		}
		echo, ok := p.match(o)
		if want := reference(lp, o); ok != want {
			t.Fatalf("pattern %q origin %q: match %v, want %v", pattern, o, ok, want)
		}
		if ok && (len(echo) != 1 || lowerASCII(echo[0]) != lowerASCII(o)) {
			t.Fatalf("pattern %q origin %q: echo %q", pattern, o, echo)
		}
		for i := 0; ok && i < len(o); i++ {
			if c := o[i]; c < '!' || c > '~' {
				t.Fatalf("pattern %q matched %q, which has byte %#x", pattern, o, c)
			}
		}
	})
}

// FuzzConfig: whatever Validate accepts, New compiles and the filter
// answers a request without panicking.
func FuzzConfig(f *testing.F) {
	f.Add("10.0.0.0/8", "https://*.example.com", "X-Frame-Options", "DENY", "https://a.example.com", "GET")
	f.Add("::ffff:1.2.3.4", "*", "Bad Name", "a\r\nb", "null", "OPTIONS")
	f.Fuzz(func(t *testing.T, cidr, origin, name, value, reqOrigin, method string) {
		cfg := Config{DenyCIDRs: []string{cidr}, CORS: CORS{AllowOrigins: []string{origin}, AllowMethods: []string{method}},
			ResponseHeaders: ResponseHeaders{Set: map[string]string{name: value}}, SecurityHeaders: true}
		if cfg.Validate() != nil {
			return
		}
		flt, err := New(cfg)
		if err != nil {
			t.Fatalf("Validate accepted what New refused: %v", err)
		}
		if !validToken(method) {
			return
		}
		r := request("OPTIONS", "/", "10.0.0.1", nil, "Access-Control-Request-Method: "+method)
		r.Header["Origin"] = []string{reqOrigin}
		w := serve(flt.Wrap(&recorder{}), r)
		if got := w.Header().Get("Access-Control-Allow-Origin"); got != "" && got != "*" && got != reqOrigin && got != lowerASCII(reqOrigin) {
			t.Fatalf("echoed %q for Origin %q", got, reqOrigin)
		}
	})
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// reference restates the matching rules for an accepted, lowered
// pattern.
func reference(lp, o string) bool {
	lo := lowerASCII(o)
	scheme, rest, wild := strings.Cut(lp, "://*.")
	if !wild {
		return lo == lp
	}
	oScheme, oRest, ok := strings.Cut(lo, "://")
	if !ok || oScheme != scheme {
		return false
	}
	label, after, ok := strings.Cut(oRest, ".")
	return ok && after == rest && validLabel(label)
}
