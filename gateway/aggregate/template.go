package aggregate

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// A template is a part's path with its placeholders, parsed once by New.
type template struct {
	segs []tseg
}

type source uint8

const (
	literal source = iota
	fromQuery
	fromHeader
	fromPart
)

// tseg is a literal run of the target or one placeholder.
type tseg struct {
	src     source
	text    string   // the literal, or the query/header name, or the part name
	field   []string // for fromPart: keys (or array indexes) into the body
	inQuery bool     // after the target's "?": query-escaped, may be empty
}

// parseTemplate reads a part path: "/" then literal text and {…}
// placeholders (see Part.Path). Literal text is sent as written, so it
// must already be a valid request target.
func parseTemplate(s string) (*template, error) {
	if s == "" || s[0] != '/' {
		return nil, fmt.Errorf("%q must start with /", s)
	}
	t := &template{}
	inQuery := false
	for s != "" {
		i := strings.IndexAny(s, "{}")
		if i != 0 {
			lit := s
			if i > 0 {
				lit = s[:i]
			}
			if err := checkLiteral(lit); err != nil {
				return nil, err
			}
			t.segs = append(t.segs, tseg{src: literal, text: lit, inQuery: inQuery})
			inQuery = inQuery || strings.Contains(lit, "?")
			if i < 0 {
				break
			}
			s = s[i:]
		}
		if s[0] == '}' {
			return nil, errors.New("unmatched } (placeholders are written {query.NAME}, {header.NAME} or {parts.PART.body.FIELD})")
		}
		j := strings.IndexByte(s, '}')
		if j < 0 {
			return nil, errors.New("unclosed { (placeholders are written {query.NAME}, {header.NAME} or {parts.PART.body.FIELD})")
		}
		seg, err := parsePlaceholder(s[1:j])
		if err != nil {
			return nil, err
		}
		seg.inQuery = inQuery
		t.segs = append(t.segs, seg)
		s = s[j+1:]
	}
	// Literal dot segments would be resolved away by the upstream (or
	// anything between): refuse them here, with the placeholders standing
	// for a harmless value.
	var b strings.Builder
	for _, g := range t.segs {
		if g.src == literal {
			b.WriteString(g.text)
		} else {
			b.WriteString("x")
		}
	}
	if hasDotSegment(b.String()) {
		return nil, fmt.Errorf("%q has a . or .. segment", b.String())
	}
	return t, nil
}

func parsePlaceholder(p string) (tseg, error) {
	kind, rest, _ := strings.Cut(p, ".")
	switch kind {
	case "query":
		if rest == "" || strings.ContainsAny(rest, "{") {
			return tseg{}, fmt.Errorf("{%s}: want {query.NAME}", p)
		}
		return tseg{src: fromQuery, text: rest}, nil
	case "header":
		if !validToken(rest) {
			return tseg{}, fmt.Errorf("{%s}: want {header.NAME} with a header name", p)
		}
		return tseg{src: fromHeader, text: rest}, nil
	case "parts":
		fields := strings.Split(rest, ".")
		if len(fields) < 3 || !validName(fields[0]) || fields[1] != "body" {
			return tseg{}, fmt.Errorf("{%s}: want {parts.PART.body.FIELD}, FIELD a dotted path into PART's JSON answer", p)
		}
		for _, f := range fields[2:] {
			if f == "" || strings.ContainsAny(f, "{") {
				return tseg{}, fmt.Errorf("{%s}: empty or bad field name", p)
			}
		}
		return tseg{src: fromPart, text: fields[0], field: fields[2:]}, nil
	}
	return tseg{}, fmt.Errorf("{%s}: unknown placeholder, want {query.NAME}, {header.NAME} or {parts.PART.body.FIELD}", p)
}

// checkLiteral refuses what cannot appear in a request target as written:
// controls, spaces, non-ASCII, "#" and "%" not starting an escape.
func checkLiteral(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c <= ' ' || c >= 0x7f:
			return fmt.Errorf("%q: byte %#x is not allowed in a request target (escape it as %%XX)", s, c)
		case c == '#':
			return fmt.Errorf("%q: a request target has no fragment (#)", s)
		case c == '%':
			if i+2 >= len(s) || !ishex(s[i+1]) || !ishex(s[i+2]) {
				return fmt.Errorf("%q: %% must start an escape %%XX", s)
			}
		}
	}
	return nil
}

func ishex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// hasDotSegment reports whether the path of target (before "?") has a
// segment that is "." or "..", escaped or not.
func hasDotSegment(target string) bool {
	path, _, _ := strings.Cut(target, "?")
	for path != "" {
		var seg string
		seg, path, _ = strings.Cut(path, "/")
		if u, err := url.PathUnescape(seg); err == nil {
			seg = u
		}
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// partRefs are the parts the template's placeholders read.
func (t *template) partRefs() []string {
	var out []string
	for _, g := range t.segs {
		if g.src == fromPart {
			out = append(out, g.text)
		}
	}
	return out
}

// lookupFunc returns a placeholder's value, or a failure when there is
// none.
type lookupFunc func(g *tseg) (string, *failure)

// render builds the request target, escaping every value for where it
// lands: a path segment (url.PathEscape: "/", "?", "#", "%", controls
// escaped) or a query component (url.QueryEscape). A value that is empty
// in the path, or a path segment that ends up "." or "..", fails the
// render: such a target would address another resource than the template
// names.
func (t *template) render(look lookupFunc) (string, *failure) {
	var b strings.Builder
	seg := 0             // path segment being written
	var dots []segSource // status to report per segment made of values
	for i := range t.segs {
		g := &t.segs[i]
		if g.src == literal {
			b.WriteString(g.text)
			if !g.inQuery {
				seg += strings.Count(g.text, "/")
			}
			continue
		}
		v, f := look(g)
		if f != nil {
			return "", f
		}
		if g.inQuery {
			b.WriteString(url.QueryEscape(v))
			continue
		}
		if v == "" {
			return "", g.badValue("is empty, which would leave an empty path segment")
		}
		b.WriteString(url.PathEscape(v))
		dots = append(dots, segSource{seg, g})
	}
	target := b.String()
	if len(dots) > 0 && hasDotSegment(target) {
		path, _, _ := strings.Cut(target, "?")
		segs := strings.Split(path, "/")
		for _, d := range dots {
			if s, err := url.PathUnescape(segs[d.seg]); err == nil && (s == "." || s == "..") {
				return "", d.g.badValue("makes a . or .. path segment")
			}
		}
	}
	return target, nil
}

type segSource struct {
	seg int
	g   *tseg
}

// describe names the placeholder's source for error messages.
func (g *tseg) describe() string {
	switch g.src {
	case fromQuery:
		return fmt.Sprintf("query parameter %q", g.text)
	case fromHeader:
		return fmt.Sprintf("header %s", g.text)
	case fromPart:
		return fmt.Sprintf("field %s of part %q", strings.Join(g.field, "."), g.text)
	}
	return "literal"
}

// badValue is the failure for a value that cannot be used: the client's
// fault (400) when it came from the inbound request, the upstream's (502)
// when it came from an earlier part's answer.
func (g *tseg) badValue(what string) *failure {
	if g.src == fromPart {
		return &failure{status: 502, class: classMissingField, msg: g.describe() + " " + what}
	}
	return &failure{status: 400, class: classBadRequest, msg: g.describe() + " " + what}
}
