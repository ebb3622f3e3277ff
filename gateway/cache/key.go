package cache

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// keyer builds cache keys for one route.
type keyer struct {
	ignore  map[string]bool // names left out of the key and the forwarded query
	include map[string]bool // when non-nil, the only names kept
}

func newKeyer(k KeyConfig) keyer {
	var kr keyer
	if len(k.IgnoreQueryParams) > 0 {
		kr.ignore = make(map[string]bool, len(k.IgnoreQueryParams))
		for _, p := range k.IgnoreQueryParams {
			kr.ignore[p] = true
		}
	}
	if len(k.IncludeQueryParams) > 0 {
		kr.include = make(map[string]bool, len(k.IncludeQueryParams))
		for _, p := range k.IncludeQueryParams {
			kr.include[p] = true
		}
	}
	return kr
}

// key is the primary cache key of r: scheme, lower-cased authority,
// escaped path and normalized query. It also returns the raw query to
// forward to the origin, which differs from r's only when parameters were
// dropped (forward is then changed).
func (k keyer) key(r *http.Request) (key, forward string, changed bool) {
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	q, forward, changed := k.query(r.URL.RawQuery)
	var b strings.Builder
	path := r.URL.EscapedPath()
	b.Grow(len(scheme) + len(r.Host) + len(path) + 1 + len(q))
	b.WriteString(scheme)
	for i := 0; i < len(r.Host); i++ {
		c := r.Host[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	b.WriteString(path)
	if q != "" {
		b.WriteByte('?')
		b.WriteString(q)
	}
	return b.String(), forward, changed
}

// query normalizes a raw query string: "&"-separated pairs, empty ones
// dropped, ignored (or not included) names dropped, the rest stably
// sorted by decoded name. forward is raw with the dropped names removed,
// in their original order; changed reports whether anything was dropped
// that the origin would have seen.
func (k keyer) query(raw string) (key, forward string, changed bool) {
	if raw == "" {
		return "", "", false
	}
	type pair struct{ name, raw string }
	var kept []pair
	sorted := true
	for s := raw; s != ""; {
		var p string
		if i := strings.IndexByte(s, '&'); i >= 0 {
			p, s = s[:i], s[i+1:]
		} else {
			p, s = s, ""
		}
		if p == "" {
			continue
		}
		name, _, _ := strings.Cut(p, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if k.ignore[name] || (k.include != nil && !k.include[name]) {
			changed = true
			continue
		}
		if len(kept) > 0 && kept[len(kept)-1].name > name {
			sorted = false
		}
		kept = append(kept, pair{name, p})
	}
	if !changed && sorted && !strings.Contains(raw, "&&") && raw[0] != '&' && raw[len(raw)-1] != '&' {
		return raw, raw, false
	}
	var fw strings.Builder
	for i, p := range kept {
		if i > 0 {
			fw.WriteByte('&')
		}
		fw.WriteString(p.raw)
	}
	forward = fw.String()
	if !changed {
		forward = raw
	}
	slices.SortStableFunc(kept, func(a, b pair) int { return strings.Compare(a.name, b.name) })
	var kb strings.Builder
	for i, p := range kept {
		if i > 0 {
			kb.WriteByte('&')
		}
		kb.WriteString(p.raw)
	}
	return kb.String(), forward, changed
}
