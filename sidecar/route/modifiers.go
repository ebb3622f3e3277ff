package route

import (
	"errors"
	"fmt"
	"net/textproto"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"
)

// Modifiers are compiled api.HTTPHeaderModifiers: the Envoy
// request_headers_to_remove/_to_add (or response_) that Consul generates
// from a router destination or a split. The zero value modifies nothing.
type Modifiers struct {
	remove []string // canonical, sorted, unique
	add    []field  // sorted by name
	set    []field  // sorted by name
}

type field struct{ name, value string }

// HeaderEditor edits a header field set; names are given canonical
// (textproto.CanonicalMIMEHeaderKey). http.Header satisfies it.
type HeaderEditor interface {
	// Add appends a field, keeping those already there.
	Add(name, value string)
	// Set replaces every field of that name with one.
	Set(name, value string)
	// Del removes every field of that name.
	Del(name string)
}

// IsZero reports whether m modifies nothing.
func (m *Modifiers) IsZero() bool { return len(m.remove) == 0 && len(m.add) == 0 && len(m.set) == 0 }

// Apply edits h: first Remove, then Add, then Set, each in the order of
// the (canonical) names. That is Envoy's order for what Consul generates:
// headers_to_remove first, then headers_to_add in order, Add entries
// (append) before Set entries (overwrite), so a name in both Add and Set
// ends with the Set value alone. (Consul lists each map in Go's random map
// order; the sorted order here only matters to the caller's HeaderEditor.
// Envoy releases after 1.25 apply every overwrite before any append.)
func (m *Modifiers) Apply(h HeaderEditor) {
	for _, name := range m.remove {
		h.Del(name)
	}
	for _, f := range m.add {
		h.Add(f.name, f.value)
	}
	for _, f := range m.set {
		h.Set(f.name, f.value)
	}
}

// String describes m for config dumps, e.g.
// "remove X-Debug; add X-A=1; set X-Canary=1"; "" when m is zero.
func (m *Modifiers) String() string {
	var parts []string
	if len(m.remove) > 0 {
		parts = append(parts, "remove "+strings.Join(m.remove, ","))
	}
	for _, l := range [...]struct {
		verb string
		fs   []field
	}{{"add", m.add}, {"set", m.set}} {
		if len(l.fs) == 0 {
			continue
		}
		kv := make([]string, len(l.fs))
		for i, f := range l.fs {
			kv[i] = f.name + "=" + f.value
		}
		parts = append(parts, l.verb+" "+strings.Join(kv, ","))
	}
	return strings.Join(parts, "; ")
}

// compileModifiers validates hm the way Envoy would when it receives it
// (Consul validates nothing here): names must be field names and neither
// pseudo-headers nor Host ("':-prefixed or host headers may not be
// modified"). Values are literal, with "%%" for "%": Envoy's %VARIABLE%
// substitutions are not supported, and any other "%" is an error. As in
// Envoy, an Add or Set with an empty value does nothing. field names the
// block in errors, e.g. "Routes[0].Destination.RequestHeaders".
func compileModifiers(hm *api.HTTPHeaderModifiers, fieldName string) (Modifiers, error) {
	var m Modifiers
	if hm == nil {
		return m, nil
	}
	for i, name := range hm.Remove {
		c, err := modifiableName(name)
		if err != nil {
			return Modifiers{}, fieldErr(fmt.Sprintf("%s.Remove[%d]", fieldName, i), err)
		}
		m.remove = append(m.remove, c)
	}
	slices.Sort(m.remove)
	m.remove = slices.Compact(m.remove)
	var err error
	if m.add, err = compileFields(hm.Add, fieldName+".Add"); err != nil {
		return Modifiers{}, err
	}
	if m.set, err = compileFields(hm.Set, fieldName+".Set"); err != nil {
		return Modifiers{}, err
	}
	return m, nil
}

func compileFields(kv map[string]string, fieldName string) ([]field, error) {
	var out []field
	for name, value := range kv {
		f := fmt.Sprintf("%s[%q]", fieldName, name)
		c, err := modifiableName(name)
		if err != nil {
			return nil, fieldErr(f, err)
		}
		v, err := literalValue(value)
		if err != nil {
			return nil, fieldErr(f, err)
		}
		if v == "" {
			continue
		}
		out = append(out, field{c, v})
	}
	slices.SortFunc(out, func(a, b field) int { return strings.Compare(a.name, b.name) })
	for i := 1; i < len(out); i++ {
		if out[i].name == out[i-1].name {
			return nil, fieldErr(fmt.Sprintf("%s[%q]", fieldName, out[i].name), errors.New("names the same header as another key"))
		}
	}
	return out, nil
}

func modifiableName(name string) (string, error) {
	if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) }) {
		if strings.HasPrefix(name, ":") {
			return "", errors.New("pseudo-headers may not be modified")
		}
		return "", fmt.Errorf("%q is not a header field name", name)
	}
	c := textproto.CanonicalMIMEHeaderKey(name)
	if c == "Host" {
		return "", errors.New("the Host header may not be modified")
	}
	return c, nil
}

func literalValue(v string) (string, error) {
	if !strings.Contains(v, "%") {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		if i+1 < len(v) && v[i+1] == '%' {
			b.WriteByte('%')
			i++
			continue
		}
		return "", fmt.Errorf("value %q: Envoy %%VARIABLE%% substitutions are not supported (write %%%% for a literal %%)", v)
	}
	return b.String(), nil
}
