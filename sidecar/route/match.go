package route

import (
	"regexp"
	"strings"

	"github.com/outrider-mesh/outrider/internal/httpmatch"
)

// matcher is a compiled ServiceRouteHTTPMatch, with Envoy's RouteMatch
// semantics as Consul generates it (agent/xds/routes.go).
type matcher struct {
	path    httpmatch.Path
	methods []string
	headers []httpmatch.Header
	query   []queryMatcher
}

// queryMatcher is a compiled ServiceRouteHTTPMatchQueryParam.
type queryMatcher struct {
	name    string
	present bool
	exact   string
	re      *regexp.Regexp
}

func (m *matcher) matches(r *Request) bool {
	if !m.path.Matches(r.Path) {
		return false
	}
	if len(m.methods) > 0 && !m.methodMatches(r.Method) {
		return false
	}
	for i := range m.headers {
		h := &m.headers[i]
		v, n := "", 0
		if r.Header != nil {
			v, n = r.Header.Header(h.Name())
			if n > 1 {
				v = r.Header.Joined(h.Name())
			}
		}
		if !h.Matches(v, n > 0) {
			return false
		}
	}
	for i := range m.query {
		q := &m.query[i]
		v, ok := queryValue(r.RawQuery, q.name)
		switch {
		case !ok:
			return false
		case q.re != nil:
			if !q.re.MatchString(v) {
				return false
			}
		case !q.present && v != q.exact:
			return false
		}
	}
	return true
}

func (m *matcher) methodMatches(method string) bool {
	for _, want := range m.methods {
		if method == want {
			return true
		}
	}
	return false
}

// queryValue returns the value of the first parameter named name in
// rawQuery and whether there is one, as Envoy's route matching parses the
// query: pairs are split at "&", a pair without "=" has the value "", and
// neither names nor values are percent-decoded (Envoy compares them as
// sent). It does not allocate.
func queryValue(rawQuery, name string) (string, bool) {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(pair, "=")
		if k == name {
			return v, true
		}
	}
	return "", false
}
