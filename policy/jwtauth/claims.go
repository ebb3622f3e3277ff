package jwtauth

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Claims are a verified token's claims. They are immutable and may be
// shared between requests (the cache does).
type Claims struct {
	Issuer, Subject             string
	Audience                    []string
	Expiry, NotBefore, IssuedAt time.Time
	raw                         map[string]any
	payload                     string
}

// Lookup returns the claim at path (nested objects), if present.
func (c *Claims) Lookup(path []string) (any, bool) {
	var v any = c.raw
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, len(path) > 0
}

// Match implements Consul's VerifyClaims: the claim at path equals value.
// A string claim equals value; an array matches when one of its scalar
// elements does; numbers and bools match their JSON text. When the last
// path element is "scope" or "scp" and the claim is a string, value may be
// any one of its space-separated tokens (RFC 8693 scopes). Objects never
// match.
func (c *Claims) Match(path []string, value string) bool {
	v, ok := c.Lookup(path)
	if !ok {
		return false
	}
	switch t := v.(type) {
	case string:
		if t == value {
			return true
		}
		if last := path[len(path)-1]; last == "scope" || last == "scp" {
			for _, s := range strings.Fields(t) {
				if s == value {
					return true
				}
			}
		}
		return false
	case []any:
		for _, e := range t {
			if s, ok := scalarText(e); ok && s == value {
				return true
			}
		}
		return false
	}
	s, ok := scalarText(v)
	return ok && s == value
}

func scalarText(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case bool:
		return strconv.FormatBool(t), true
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), true
	case json.Number:
		return t.String(), true
	}
	return "", false
}

// Text renders a claim for a forwarded header: strings as they are,
// numbers and bools as JSON, arrays of scalars joined by ",", objects as
// JSON.
func (c *Claims) Text(path []string) (string, bool) {
	v, ok := c.Lookup(path)
	if !ok {
		return "", false
	}
	if s, ok := scalarText(v); ok {
		return s, true
	}
	if a, ok := v.([]any); ok {
		parts := make([]string, 0, len(a))
		scalars := true
		for _, e := range a {
			s, ok := scalarText(e)
			if !ok {
				scalars = false
				break
			}
			parts = append(parts, s)
		}
		if scalars {
			return strings.Join(parts, ","), true
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// Payload is the token's base64url payload as it was sent.
func (c *Claims) Payload() string { return c.payload }
