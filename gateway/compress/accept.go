package compress

import (
	"net/http"
	"strings"
)

// algorithm is a content coding this package implements.
type algorithm uint8

const (
	none algorithm = iota
	zstdAlg
	brAlg
	gzipAlg
	numAlgorithms
)

var algorithmNames = [numAlgorithms]string{none: "none", zstdAlg: "zstd", brAlg: "br", gzipAlg: "gzip"}

func (a algorithm) String() string { return algorithmNames[a] }

// parseAlgorithm reads a content-coding name, case-insensitively; "x-gzip"
// is gzip (RFC 9110 §8.4.1.3). Anything else is none.
func parseAlgorithm(s string) algorithm {
	switch {
	case strings.EqualFold(s, "gzip"), strings.EqualFold(s, "x-gzip"):
		return gzipAlg
	case strings.EqualFold(s, "br"):
		return brAlg
	case strings.EqualFold(s, "zstd"):
		return zstdAlg
	}
	return none
}

// acceptance is a parsed Accept-Encoding field: the q-value (in
// thousandths, 0 to 1000) given to each coding this package knows, to
// identity and to "*"; -1 where the field does not mention it.
type acceptance struct {
	q        [numAlgorithms]int16 // index none is unused
	identity int16
	star     int16
	present  bool // the request had an Accept-Encoding field
}

// parseAcceptEncoding reads every Accept-Encoding line of a request (RFC
// 9110 §12.5.3). It never fails: an element whose coding is not a token
// or whose weight is malformed (q outside 0 to 1, more than three
// decimals) is ignored, as are parameters other than q. When a coding is
// listed twice the first occurrence counts. It does not allocate.
func parseAcceptEncoding(lines []string) acceptance {
	a := acceptance{identity: -1, star: -1}
	for i := range a.q {
		a.q[i] = -1
	}
	a.present = len(lines) > 0
	for _, line := range lines {
		for line != "" {
			var elem string
			elem, line, _ = strings.Cut(line, ",")
			name, params, _ := strings.Cut(elem, ";")
			name = trimOWS(name)
			if name == "" || !isToken(name) {
				continue
			}
			q, ok := parseWeight(params)
			if !ok {
				continue
			}
			var slot *int16
			switch {
			case name == "*":
				slot = &a.star
			case strings.EqualFold(name, "identity"):
				slot = &a.identity
			default:
				alg := parseAlgorithm(name)
				if alg == none {
					continue
				}
				slot = &a.q[alg]
			}
			if *slot < 0 {
				*slot = q
			}
		}
	}
	return a
}

// parseWeight reads the parameters after a coding: OWS ";" OWS "q=" qvalue,
// any other parameter skipped. No q means 1.
func parseWeight(params string) (int16, bool) {
	q := int16(1000)
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		p = trimOWS(p)
		if p == "" {
			continue
		}
		k, v, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(trimOWS(k), "q") {
			continue
		}
		n, ok := parseQValue(trimOWS(v))
		if !ok {
			return 0, false
		}
		q = n
	}
	return q, true
}

// parseQValue reads qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
// in thousandths.
func parseQValue(s string) (int16, bool) {
	if s == "" || s[0] != '0' && s[0] != '1' {
		return 0, false
	}
	n := int16(s[0]-'0') * 1000
	rest := s[1:]
	if rest == "" {
		return n, true
	}
	if rest[0] != '.' || len(rest) > 4 {
		return 0, false
	}
	scale := int16(100)
	for i := 1; i < len(rest); i++ {
		c := rest[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n += int16(c-'0') * scale
		scale /= 10
	}
	if n > 1000 {
		return 0, false
	}
	return n, true
}

// weight is the q-value the client gives alg: its own entry, else "*",
// else 0 (not acceptable).
func (a *acceptance) weight(alg algorithm) int16 {
	if q := a.q[alg]; q >= 0 {
		return q
	}
	if a.star >= 0 {
		return a.star
	}
	return 0
}

// choose picks the coding to send from prefs (server preference order):
// the highest q-value above 0, ties going to the earlier preference. It
// returns none when no preference is acceptable, when the request had no
// Accept-Encoding at all (most servers, nginx and Envoy among them, do not
// compress then, though RFC 9110 would allow any coding), or when the
// client explicitly gives identity a strictly higher q-value than the best
// coding. A client that excludes identity ("identity;q=0") and accepts
// nothing we offer still gets identity: RFC 9110 allows 406 there, but an
// unencoded answer is more useful and what nginx, Envoy and Caddy send.
func (a *acceptance) choose(prefs []algorithm) (algorithm, int16) {
	if !a.present {
		return none, 0
	}
	best, bestQ := none, int16(0)
	for _, p := range prefs {
		if q := a.weight(p); q > bestQ {
			best, bestQ = p, q
		}
	}
	if best == none {
		return none, 0
	}
	idq := a.identity
	if idq < 0 {
		idq = a.star // "*" covers identity too when identity is not listed
	}
	if idq > bestQ {
		return none, 0
	}
	return best, bestQ
}

// mediaType returns the lower-case type and subtype of a Content-Type
// value, parameters dropped; ok is false when it is not type/subtype.
func mediaType(v string) (typ, sub string, ok bool) {
	v, _, _ = strings.Cut(v, ";")
	typ, sub, ok = strings.Cut(trimOWS(v), "/")
	if !ok || !isToken(typ) || !isToken(sub) {
		return "", "", false
	}
	return lower(typ), lower(sub), true
}

// lower returns s in lower case, without allocating when it already is.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// hasToken reports whether a comma-separated list header (all its lines)
// holds token, case-insensitively, ignoring any "=value" after it.
func hasToken(lines []string, token string) bool {
	for _, line := range lines {
		for line != "" {
			var elem string
			elem, line, _ = strings.Cut(line, ",")
			name, _, _ := strings.Cut(elem, "=")
			if strings.EqualFold(trimOWS(name), token) {
				return true
			}
		}
	}
	return false
}

// addVary adds "Accept-Encoding" to Vary unless it (or "*") is there.
func addVary(h http.Header) {
	v := h["Vary"]
	if hasToken(v, "Accept-Encoding") || hasToken(v, "*") {
		return
	}
	h["Vary"] = append(v, "Accept-Encoding")
}

func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
