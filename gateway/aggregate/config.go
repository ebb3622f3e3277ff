package aggregate

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/outrider-mesh/outrider/internal/confval"
)

// Defaults applied by New to fields left zero.
const (
	DefaultEndpointTimeout = 10 * time.Second
	DefaultPartTimeout     = 5 * time.Second
	DefaultMaxPartBytes    = confval.ByteSize(1 << 20)
	// MaxMaxPartBytes bounds max_part_bytes: part responses are held in
	// memory until the merged answer is written.
	MaxMaxPartBytes = confval.ByteSize(64 << 20)
)

// Config declares the composite endpoints of one route. The zero Config
// declares none: every request goes to the next handler untouched.
type Config struct {
	// Endpoints are the composite endpoints, each answering one exact
	// request path. Requests for any other path pass through.
	Endpoints []Endpoint `yaml:"endpoints"`
}

// Endpoint is one composite endpoint: a request for Path is answered by
// calling every part and merging their JSON answers into one object.
type Endpoint struct {
	// Path is the exact request path the endpoint answers
	// ("/composite/home"); the query string is not part of the match.
	// Required, unique among the endpoints.
	Path string `yaml:"path"`
	// Methods are the request methods accepted; default [GET]. HEAD is
	// accepted wherever GET is. Other methods get 405 with Allow. The
	// request body, if any, is not forwarded to the parts.
	Methods []string `yaml:"methods"`
	// Parts are the upstream calls whose answers are merged, in this order,
	// under their names. At least one.
	Parts []Part `yaml:"parts"`
	// Failure is what a failed part does to the answer: "whole" (default)
	// fails the request with the part's status (502 or 504) and a JSON
	// error naming it; "partial" answers 200 with the parts that succeeded
	// and a "_parts" object giving each part's status, unless a required
	// part failed or none succeeded.
	Failure string `yaml:"failure"`
	// Timeout bounds the whole composite request, sequential parts
	// included; default 10s. A part still running when it expires fails
	// with 504.
	Timeout time.Duration `yaml:"timeout"`
	// MaxPartBytes bounds each part's response body; a larger answer is
	// cut off and fails the part (502). Default 1MiB, at most 64MiB.
	MaxPartBytes confval.ByteSize `yaml:"max_part_bytes"`
}

// Part is one upstream call of a composite endpoint.
type Part struct {
	// Name is the key of the part's answer in the merged object, and how
	// later parts refer to it. Letters, digits, "-" and "_", not starting
	// with "_" (the "_parts" key is reserved). Required, unique in the
	// endpoint.
	Name string `yaml:"name"`
	// Upstream names the mesh upstream the call goes to (balancing,
	// retries and mTLS are the upstream's). Required.
	Upstream string `yaml:"upstream"`
	// Method is the method of the call: GET (default), POST, PUT, PATCH,
	// DELETE or OPTIONS. The call has no body.
	Method string `yaml:"method"`
	// Path is the request target sent upstream, a template starting with
	// "/" that may carry a query string. Placeholders:
	//   {query.NAME}   first value of the inbound query parameter NAME
	//   {header.NAME}  the inbound request header NAME
	//   {parts.P.body.F1.F2}  the JSON value at F1.F2 in part P's answer
	//                  (P must be listed in after, directly or through
	//                  another part; a number Fn indexes an array)
	// Values are percent-escaped ("/", "?", "#", "%", CR and LF never
	// reach the target unescaped); an empty value in the path, a value
	// making a "." or ".." segment, or a missing one fails the part
	// without calling it (400 when the inbound request lacks it, 502 when
	// an earlier part's answer does). Required.
	Path string `yaml:"path"`
	// After lists parts that must succeed before this one is called
	// (their answers can then be used in Path). Default: none, the part
	// starts at once, in parallel with the others.
	After []string `yaml:"after"`
	// Timeout bounds this call; default 5s, never more than the
	// endpoint's remaining time.
	Timeout time.Duration `yaml:"timeout"`
	// ForwardHeaders names inbound request headers copied to the call.
	// Default none. Trace context is propagated by the upstream call
	// itself; hop-by-hop headers, Host, Content-Length, Accept-Encoding
	// and the trace headers cannot be listed.
	ForwardHeaders []string `yaml:"forward_headers"`
	// Required, with failure: partial, makes this part's failure fail the
	// whole request. Every part is required with failure: whole.
	Required bool `yaml:"required"`
}

const (
	failureWhole   = "whole"
	failurePartial = "partial"
)

var partMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

// refusedForward are headers a part may not copy from the inbound request:
// they describe the inbound connection or body, or are set by the call.
var refusedForward = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Host": true, "Content-Length": true, "Content-Type": true, "Content-Encoding": true, "Accept-Encoding": true,
	"Traceparent": true, "Tracestate": true, "Baggage": true, "Expect": true,
}

// Validate reports every problem in c, as FieldErrors joined.
func (c Config) Validate() error { return c.validate(nil) }

// validate is Validate, and with known non-nil, also checks that every
// part's upstream is one of them.
func (c Config) validate(known []string) error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, confval.Errorf(path, format, args...))
	}
	paths := map[string]int{}
	for i, ep := range c.Endpoints {
		at := fmt.Sprintf("endpoints[%d]", i)
		switch {
		case ep.Path == "":
			add(at+".path", "required: the exact request path the composite endpoint answers, such as /composite/home")
		case ep.Path[0] != '/':
			add(at+".path", "%q must start with /", ep.Path)
		case strings.ContainsAny(ep.Path, "?# \t\r\n"):
			add(at+".path", "%q must be a bare path: no query, fragment, spaces or line breaks", ep.Path)
		default:
			if j, dup := paths[ep.Path]; dup {
				add(at+".path", "%q is already the path of endpoints[%d]", ep.Path, j)
			} else {
				paths[ep.Path] = i
			}
		}
		for j, m := range ep.Methods {
			if !validToken(m) || strings.ToUpper(m) != m {
				add(fmt.Sprintf("%s.methods[%d]", at, j), "%q is not a method: want an upper-case token such as GET or POST", m)
			}
		}
		switch ep.Failure {
		case "", failureWhole, failurePartial:
		default:
			add(at+".failure", "%q is not a failure policy: want whole or partial", ep.Failure)
		}
		if ep.Timeout < 0 {
			add(at+".timeout", "%s is negative", ep.Timeout)
		}
		if ep.MaxPartBytes < 0 {
			add(at+".max_part_bytes", "%d is negative", ep.MaxPartBytes)
		} else if ep.MaxPartBytes > MaxMaxPartBytes {
			add(at+".max_part_bytes", "%s is more than %s: part answers are held in memory", ep.MaxPartBytes, MaxMaxPartBytes)
		}
		errs = append(errs, validateParts(at, ep, known)...)
	}
	return errors.Join(errs...)
}

func validateParts(at string, ep Endpoint, known []string) []error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, confval.Errorf(path, format, args...))
	}
	if len(ep.Parts) == 0 {
		add(at+".parts", "required: at least one part")
		return errs
	}
	names := map[string]int{}
	for i, p := range ep.Parts {
		if validName(p.Name) {
			if _, dup := names[p.Name]; dup {
				add(fmt.Sprintf("%s.parts[%d].name", at, i), "%q is already the name of parts[%d]", p.Name, names[p.Name])
			} else {
				names[p.Name] = i
			}
		}
	}
	for i, p := range ep.Parts {
		pat := fmt.Sprintf("%s.parts[%d]", at, i)
		switch {
		case p.Name == "":
			add(pat+".name", "required: the key of this part's answer in the merged JSON")
		case !validName(p.Name):
			add(pat+".name", "%q: want letters, digits, - and _, not starting with _", p.Name)
		}
		if p.Upstream == "" {
			add(pat+".upstream", "required: the name of the mesh upstream to call")
		} else if known != nil && !slices.Contains(known, p.Upstream) {
			add(pat+".upstream", "%q is not a known upstream (known: %s)", p.Upstream, strings.Join(known, ", "))
		}
		if p.Method != "" && !slices.Contains(partMethods, p.Method) {
			add(pat+".method", "%q: want one of %s", p.Method, strings.Join(partMethods, ", "))
		}
		if p.Timeout < 0 {
			add(pat+".timeout", "%s is negative", p.Timeout)
		} else if ep.Timeout > 0 && p.Timeout > ep.Timeout {
			add(pat+".timeout", "%s is more than the endpoint's timeout %s, which would cut it short", p.Timeout, ep.Timeout)
		}
		for j, a := range p.After {
			k, ok := names[a]
			switch {
			case !ok:
				add(fmt.Sprintf("%s.after[%d]", pat, j), "%q is not the name of a part of this endpoint", a)
			case k == i:
				add(fmt.Sprintf("%s.after[%d]", pat, j), "a part cannot wait for itself")
			case slices.Index(p.After, a) < j:
				add(fmt.Sprintf("%s.after[%d]", pat, j), "%q is listed twice", a)
			}
		}
		for j, h := range p.ForwardHeaders {
			switch {
			case !validToken(h):
				add(fmt.Sprintf("%s.forward_headers[%d]", pat, j), "%q is not a header name", h)
			case refusedForward[http.CanonicalHeaderKey(h)]:
				add(fmt.Sprintf("%s.forward_headers[%d]", pat, j), "%s cannot be forwarded: it belongs to the inbound connection or is set by the call", h)
			}
		}
		if p.Path == "" {
			add(pat+".path", "required: the request target to send upstream, such as /users/{query.id}")
			continue
		}
		t, err := parseTemplate(p.Path)
		if err != nil {
			add(pat+".path", "%v", err)
			continue
		}
		for _, ref := range t.partRefs() {
			if _, ok := names[ref]; !ok {
				add(pat+".path", "placeholder refers to part %q, which this endpoint does not have", ref)
			} else if !dependsOn(ep.Parts, names, i, ref) {
				add(pat+".path", "placeholder refers to part %q, which this part does not wait for: list it in after", ref)
			}
		}
	}
	if cycle := findCycle(ep.Parts, names); cycle != nil {
		add(at+".parts", "after makes a cycle: %s", strings.Join(cycle, " -> "))
	}
	return errs
}

// dependsOn reports whether part i waits for the part named ref, directly
// or through other parts. Cycles are reported separately; seen stops them
// here.
func dependsOn(parts []Part, names map[string]int, i int, ref string) bool {
	seen := make([]bool, len(parts))
	var walk func(int) bool
	walk = func(k int) bool {
		if seen[k] {
			return false
		}
		seen[k] = true
		for _, a := range parts[k].After {
			if a == ref {
				return true
			}
			if j, ok := names[a]; ok && walk(j) {
				return true
			}
		}
		return false
	}
	return walk(i)
}

// findCycle returns the names along one cycle of after edges, first name
// repeated at the end, or nil.
func findCycle(parts []Part, names map[string]int) []string {
	const (
		unseen = iota
		active
		done
	)
	state := make([]int, len(parts))
	var stack []int
	var found []string
	var visit func(int) bool
	visit = func(i int) bool {
		state[i] = active
		stack = append(stack, i)
		for _, a := range parts[i].After {
			j, ok := names[a]
			if !ok || j == i {
				continue
			}
			if state[j] == active {
				k := slices.Index(stack, j)
				for _, s := range stack[k:] {
					found = append(found, parts[s].Name)
				}
				found = append(found, parts[j].Name)
				return true
			}
			if state[j] == unseen && visit(j) {
				return true
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = done
		return false
	}
	for i := range parts {
		if state[i] == unseen && visit(i) {
			return found
		}
	}
	return nil
}

func validName(s string) bool {
	if s == "" || s[0] == '_' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validToken reports whether s is an RFC 9110 token (method, header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}
