package aggregate

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/outrider-mesh/outrider/internal/confval"
)

func TestValidate(t *testing.T) {
	good := func() Endpoint {
		return Endpoint{Path: "/c", Parts: []Part{one("a", "up", "/a"), {Name: "b", Upstream: "up", Path: "/b/{parts.a.body.id}", After: []string{"a"}}}}
	}
	cases := []struct {
		name string
		edit func(*Endpoint)
		want []string // "path: message fragment"
	}{
		{"good", func(*Endpoint) {}, nil},
		{"no path", func(e *Endpoint) { e.Path = "" }, []string{"endpoints[0].path: required"}},
		{"relative path", func(e *Endpoint) { e.Path = "c" }, []string{"endpoints[0].path: \"c\" must start with /"}},
		{"query in path", func(e *Endpoint) { e.Path = "/c?x" }, []string{"endpoints[0].path: \"/c?x\" must be a bare path"}},
		{"bad method", func(e *Endpoint) { e.Methods = []string{"get", "PO ST"} },
			[]string{"endpoints[0].methods[0]: \"get\" is not a method", "endpoints[0].methods[1]: \"PO ST\" is not a method"}},
		{"failure", func(e *Endpoint) { e.Failure = "some" }, []string{"endpoints[0].failure: \"some\" is not a failure policy: want whole or partial"}},
		{"negative timeout", func(e *Endpoint) { e.Timeout = -1 }, []string{"endpoints[0].timeout: -1ns is negative"}},
		{"max part bytes", func(e *Endpoint) { e.MaxPartBytes = 1 << 30 }, []string{"endpoints[0].max_part_bytes: 1GiB is more than 64MiB"}},
		{"no parts", func(e *Endpoint) { e.Parts = nil }, []string{"endpoints[0].parts: required"}},
		{"part fields", func(e *Endpoint) { e.Parts[0] = Part{} }, []string{
			"endpoints[0].parts[0].name: required", "endpoints[0].parts[0].upstream: required", "endpoints[0].parts[0].path: required",
			"endpoints[0].parts[1].after[0]: \"a\" is not the name of a part",
			"endpoints[0].parts[1].path: placeholder refers to part \"a\", which this endpoint does not have"}},
		{"reserved name", func(e *Endpoint) { e.Parts[1].Name = "_parts" }, []string{"endpoints[0].parts[1].name: \"_parts\": want letters"}},
		{"dotted name", func(e *Endpoint) { e.Parts[1].Name = "a.b" }, []string{"endpoints[0].parts[1].name: \"a.b\""}},
		{"duplicate name", func(e *Endpoint) { e.Parts[1].Name = "a"; e.Parts[1].After = nil; e.Parts[1].Path = "/" },
			[]string{"endpoints[0].parts[1].name: \"a\" is already the name of parts[0]"}},
		{"method", func(e *Endpoint) { e.Parts[0].Method = "HEAD" }, []string{"endpoints[0].parts[0].method: \"HEAD\": want one of GET"}},
		{"part timeout over endpoint", func(e *Endpoint) { e.Timeout = time.Second; e.Parts[0].Timeout = 2 * time.Second },
			[]string{"endpoints[0].parts[0].timeout: 2s is more than the endpoint's timeout 1s"}},
		{"self after", func(e *Endpoint) { e.Parts[0].After = []string{"a"} }, []string{"endpoints[0].parts[0].after[0]: a part cannot wait for itself"}},
		{"twice after", func(e *Endpoint) { e.Parts[1].After = []string{"a", "a"} }, []string{"endpoints[0].parts[1].after[1]: \"a\" is listed twice"}},
		{"cycle", func(e *Endpoint) {
			e.Parts[0].After = []string{"c"}
			e.Parts = append(e.Parts, Part{Name: "c", Upstream: "up", Path: "/", After: []string{"b"}})
		}, []string{"endpoints[0].parts: after makes a cycle: a -> c -> b -> a"}},
		{"reference without after", func(e *Endpoint) { e.Parts[1].After = nil },
			[]string{"endpoints[0].parts[1].path: placeholder refers to part \"a\", which this part does not wait for: list it in after"}},
		{"transitive reference", func(e *Endpoint) {
			e.Parts = append(e.Parts, Part{Name: "c", Upstream: "up", Path: "/{parts.a.body.x}", After: []string{"b"}})
		}, nil},
		{"forward headers", func(e *Endpoint) {
			e.Parts[0].ForwardHeaders = []string{"X-Ok", "Host", "traceparent", "bad header", "Accept-Encoding"}
		},
			[]string{"endpoints[0].parts[0].forward_headers[1]: Host cannot be forwarded", "endpoints[0].parts[0].forward_headers[2]: traceparent cannot be forwarded",
				"endpoints[0].parts[0].forward_headers[3]: \"bad header\" is not a header name", "endpoints[0].parts[0].forward_headers[4]: Accept-Encoding cannot be forwarded"}},
		{"bad template", func(e *Endpoint) { e.Parts[0].Path = "/a/{nope.x}" }, []string{"endpoints[0].parts[0].path: {nope.x}: unknown placeholder"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ep := good()
			c.edit(&ep)
			err := Config{Endpoints: []Endpoint{ep}}.Validate()
			got := confval.Fields(err)
			if len(got) != len(c.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(got), len(c.want), err)
			}
			for i, w := range c.want {
				if !strings.HasPrefix(got[i].Error(), w) {
					t.Errorf("error %d = %q, want prefix %q", i, got[i].Error(), w)
				}
			}
		})
	}
	dup := Config{Endpoints: []Endpoint{good(), good()}}
	if err := dup.Validate(); err == nil || !strings.Contains(err.Error(), "endpoints[1].path: \"/c\" is already the path of endpoints[0]") {
		t.Fatalf("duplicate endpoint: %v", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
}

func TestParseTemplate(t *testing.T) {
	cases := []struct {
		in  string
		err string // "" when it parses
	}{
		{"/users/{query.id}", ""},
		{"/u/{header.X-User}/x?a={query.a}&b=lit%20x", ""},
		{"/u/{parts.user.body.items.0.id}", ""},
		{"/u/a{query.x}b{query.y}", ""},
		{"users", "must start with /"},
		{"/u/{query.id", "unclosed {"},
		{"/u/}", "unmatched }"},
		{"/u/{query.}", "want {query.NAME}"},
		{"/u/{header.bad name}", "want {header.NAME}"},
		{"/u/{parts.user.id}", "want {parts.PART.body.FIELD}"},
		{"/u/{parts.user.body}", "want {parts.PART.body.FIELD}"},
		{"/u/{parts.user.body..x}", "empty or bad field name"},
		{"/u/{path}", "unknown placeholder"},
		{"/u v", "byte 0x20 is not allowed"},
		{"/u\r\nX: y", "byte 0xd is not allowed"},
		{"/u#f", "no fragment"},
		{"/u%zz", "must start an escape"},
		{"/a/../b", "has a . or .. segment"},
		{"/a/%2E%2e/{query.x}", "has a . or .. segment"},
		{"/a/./b", "has a . or .. segment"},
	}
	for _, c := range cases {
		_, err := parseTemplate(c.in)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.in, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want %q", c.in, err, c.err)
		}
	}
}

func TestRender(t *testing.T) {
	tm, err := parseTemplate("/u/{query.a}/x{query.b}?q={query.a}&r={query.b}")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		a, b   string
		want   string
		status int
	}{
		{"1", "2", "/u/1/x2?q=1&r=2", 0},
		{"a/b", "?#", "/u/a%2Fb/x%3F%23?q=a%2Fb&r=%3F%23", 0},
		{"\r\n", "é", "/u/%0D%0A/x%C3%A9?q=%0D%0A&r=%C3%A9", 0},
		{"..", "1", "", 400},
		{"%2E.", "1", "/u/%252E./x1?q=%252E.&r=1", 0},
		{"", "1", "", 400},
		{"1", "", "", 400},
	}
	for _, c := range cases {
		got, f := tm.render(func(g *tseg) (string, *failure) {
			if g.text == "a" {
				return c.a, nil
			}
			return c.b, nil
		})
		switch {
		case c.status != 0 && (f == nil || f.status != c.status):
			t.Errorf("%q %q: got %q %v, want status %d", c.a, c.b, got, f, c.status)
		case c.status == 0 && (f != nil || got != c.want):
			t.Errorf("%q %q: got %q %v, want %q", c.a, c.b, got, f, c.want)
		}
	}
	// Two values making ".." together in one segment fail too.
	tm, _ = parseTemplate("/u/{query.a}{query.b}")
	if _, f := tm.render(func(*tseg) (string, *failure) { return ".", nil }); f == nil || f.status != 400 {
		t.Fatalf("{a}{b} = \".\" \".\": %v", f)
	}
}

func TestFieldValue(t *testing.T) {
	doc := map[string]any{"a": map[string]any{"b": []any{"x", true}}, "n": nil}
	cases := []struct {
		field string
		want  string
		ok    bool
	}{
		{"a.b.0", "x", true},
		{"a.b.1", "true", true},
		{"a.b.2", "", false},
		{"a.b.-1", "", false},
		{"a.b", "", false},
		{"a.c", "", false},
		{"n", "", false},
		{"a.b.0.z", "", false},
	}
	for _, c := range cases {
		got, f := fieldValue(doc, &tseg{src: fromPart, text: "p", field: strings.Split(c.field, ".")})
		if (f == nil) != c.ok || got != c.want {
			t.Errorf("%s: got %q %v", c.field, got, f)
		}
		if f != nil && f.status != 502 {
			t.Errorf("%s: status %d, want 502", c.field, f.status)
		}
	}
}

// TestYAML decodes the README's example: the field tags are the names
// users write, and the example is valid.
func TestYAML(t *testing.T) {
	src := `
endpoints:
  - path: /composite/home
    failure: partial
    timeout: 3s
    max_part_bytes: 256KiB
    parts:
      - name: user
        upstream: users
        path: /users/{header.X-User-Id}
        timeout: 1s
        required: true
      - name: orders
        upstream: orders
        path: /orders?user={parts.user.body.id}&limit={query.limit}
        after: [user]
        forward_headers: [Accept-Language]
      - name: promos
        upstream: promos
        path: /promos/current
        timeout: 500ms
`
	var cfg Config
	if err := yaml.Unmarshal([]byte(src), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ep := cfg.Endpoints[0]
	if ep.MaxPartBytes != 256<<10 || ep.Timeout != 3*time.Second || ep.Failure != "partial" || len(ep.Parts) != 3 ||
		ep.Parts[1].After[0] != "user" || !ep.Parts[0].Required || ep.Parts[2].Timeout != 500*time.Millisecond ||
		ep.Parts[1].ForwardHeaders[0] != "Accept-Language" {
		t.Fatalf("decoded %+v", ep)
	}
}
