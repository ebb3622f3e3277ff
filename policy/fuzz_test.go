package policy

import (
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// FuzzRules compiles rules from arbitrary matcher strings and evaluates
// arbitrary requests: compiling either fails or yields rules that decide
// without panicking, a deny rule matching everything always denies, and
// decisions never allow with a denial code.
func FuzzRules(f *testing.F) {
	f.Add("/admin", "spiffe://example.org/ns/*/sa/web", "x-debug", "GET", "/admin/x", "spiffe://example.org/ns/a/sa/web", "1")
	f.Add("/a", "spiffe://example.org/**", "X", "get", "/", "spiffe://example.org/a/b", "")
	f.Add("", "", "", "", "", "spiffe://x/y", "")
	f.Fuzz(func(t *testing.T, prefix, pattern, header, method, path, peer, value string) {
		src, err := spiffeid.FromString(peer)
		if err != nil {
			return
		}
		rules := []Rule{
			{Name: "p", Allow: true, Pattern: pattern, HTTP: &HTTPMatch{PathPrefix: prefix, Methods: []string{"GET"}}},
			{Name: "h", HTTP: &HTTPMatch{Headers: []HeaderMatch{{Name: header, Exact: value}}}},
			{Name: "r", Allow: true, HTTP: &HTTPMatch{PathRegex: strings.ReplaceAll(prefix, "*", ".*")}},
		}
		for _, r := range rules {
			if _, err := CompileRules([]Rule{r}, RulesOptions{}); err != nil {
				return
			}
		}
		rules = append(rules, Rule{Name: "all", HTTP: &HTTPMatch{PathPrefix: "/"}})
		c, err := CompileRules(rules, RulesOptions{DefaultAllow: true})
		if err != nil {
			t.Fatalf("rules that compile one by one fail together: %v", err)
		}
		req := &Request{Method: method, Path: "/" + strings.TrimPrefix(path, "/"), Header: hdrs{"X": {value}}}
		d := c.Authorize(src, req)
		if d.Allow {
			t.Fatalf("a deny rule for every path was passed: %v", d)
		}
		for _, d := range []Decision{d, c.Admit(src), c.AuthorizeL4(src)} {
			if d.Allow && d.Code != CodeNone {
				t.Fatalf("allow with code %v: %v", d.Code, d)
			}
		}
	})
}
