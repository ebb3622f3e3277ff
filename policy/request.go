package policy

import "fmt"

// Request is one HTTP request as L7 rules see it. The sidecar fills one per
// request on the request's goroutine, usually reusing a value held by the
// connection so that authorizing costs no allocation; the policy reads it
// during Authorize and keeps no reference to it or its fields.
type Request struct {
	// Method is the request method exactly as sent (methods are
	// case-sensitive, RFC 9110 section 9.1).
	Method string
	// Path is the normalized path (package pathnorm), without the query:
	// the path the application will receive.
	Path string
	// Header looks up request header fields; nil means the request has
	// none.
	Header Headers
	// Auth verifies the request's bearer tokens; nil means no JWT provider
	// is configured, and every JWT requirement fails as unauthenticated.
	Auth Authenticator
}

// Headers looks up request header fields.
type Headers interface {
	// Header returns the first value of the fields named name (ASCII
	// case-insensitive) and how many fields carry that name. name is
	// given in canonical form (textproto.CanonicalMIMEHeaderKey), so an
	// implementation over net/http's http.Header may index it directly.
	Header(name string) (value string, n int)
}

// Claims are a verified token's claims.
type Claims interface {
	// Match reports whether the claim at path has value, with Consul's
	// VerifyClaims semantics (package jwtauth documents them).
	Match(path []string, value string) bool
}

// Authenticator verifies the request's token for a JWT provider. An
// implementation verifies each provider at most once per request and
// remembers the outcome, so rules that name the same provider cost one
// verification. It is called on the request's goroutine only.
type Authenticator interface {
	// Authenticate returns the claims of the request's valid token for
	// provider, or an error when the token is missing or invalid.
	Authenticate(provider string) (Claims, error)
}

// Code says how a denied request is answered.
type Code uint8

// The codes of denials. A Decision that allows has CodeNone.
const (
	// CodeNone: not denied, or a connection-level (L4) denial.
	CodeNone Code = iota
	// CodeForbidden: 403 (gRPC PERMISSION_DENIED). The peer or request is
	// not allowed.
	CodeForbidden
	// CodeUnauthenticated: 401 with WWW-Authenticate (gRPC
	// UNAUTHENTICATED). A rule that would allow the request needs a token
	// from Decision.Provider, which is missing or invalid.
	CodeUnauthenticated
	// CodeBadRequest: 400 (gRPC INVALID_ARGUMENT). A header that a rule
	// depends on was sent more than once: rules are not applied to a
	// guess of which value counts.
	CodeBadRequest
)

// Status is the HTTP status a denial with this code is answered with.
func (c Code) Status() int {
	switch c {
	case CodeUnauthenticated:
		return 401
	case CodeBadRequest:
		return 400
	default:
		return 403
	}
}

// String names the code for logs and JSON.
func (c Code) String() string {
	switch c {
	case CodeForbidden:
		return "forbidden"
	case CodeUnauthenticated:
		return "unauthenticated"
	case CodeBadRequest:
		return "bad_request"
	default:
		return ""
	}
}

// MarshalText renders the code as String does.
func (c Code) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (c *Code) UnmarshalText(b []byte) error {
	for _, k := range []Code{CodeNone, CodeForbidden, CodeUnauthenticated, CodeBadRequest} {
		if k.String() == string(b) {
			*c = k
			return nil
		}
	}
	return fmt.Errorf("policy: unknown decision code %q", b)
}
