package jwtauth

import "strings"

// Kind classifies why a token was not accepted.
type Kind uint8

// The kinds of Error.
const (
	NoToken Kind = iota + 1
	Malformed
	Algorithm
	UnknownKey
	BadSignature
	Expired
	NotYetValid
	IssuedInFuture
	Issuer
	Audience
	NoKeys
	UnknownProvider
	Ambiguous
)

var kindNames = [...]string{"", "no_token", "malformed", "algorithm", "unknown_key", "bad_signature", "expired",
	"not_yet_valid", "issued_in_future", "issuer", "audience", "no_keys", "unknown_provider", "ambiguous"}

// String names the kind, e.g. "expired".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Error is a token the provider did not accept.
type Error struct {
	Provider string
	Kind     Kind
	// Reason is short and safe to show a client: it holds no key material,
	// no part of the token and nothing about the sidecar's network.
	Reason string
	// detail is for logs only (Error), never for the client: for NoKeys,
	// why the key set is not loaded (it names the JWKS URL and addresses).
	detail string
}

func (e *Error) Error() string {
	s := "jwtauth: provider " + e.Provider + ": " + e.Kind.String() + ": " + e.Reason
	if e.detail != "" {
		s += ": " + e.detail
	}
	return s
}

// WWWAuthenticate is the RFC 6750 challenge for the 401 answer.
func (e *Error) WWWAuthenticate() string {
	realm := `Bearer realm="` + quoteSafe(e.Provider) + `"`
	if e.Kind == NoToken {
		return realm
	}
	return realm + `, error="invalid_token", error_description="` + quoteSafe(e.Reason) + `"`
}

// quoteSafe keeps s inside a quoted-string: no quotes, backslashes or
// control bytes.
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f || r > 0x7e {
			return '_'
		}
		return r
	}, s)
}
