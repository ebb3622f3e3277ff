package jwtauth

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/go-jose/go-jose/v4/jwt"
)

// TestTokenNotRetained: the sidecar passes unsafe.String views of its
// reused connection buffer; nothing Verify keeps may alias it.
func TestTokenNotRetained(t *testing.T) {
	is := newIssuer(t)
	now := time.Now().Truncate(time.Second)
	v, err := New([]Provider{{Name: "p", Issuer: iss, KeySet: inline(is, t)}}, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, is, "k1", now, nil)
	want := strings.Split(tok, ".")[1]
	buf := []byte(tok)
	c1, err := v.Verify("p", unsafe.String(&buf[0], len(buf)))
	if err != nil {
		t.Fatal(err)
	}
	copy(buf, strings.Repeat("x", len(buf))) // the next request reuses the buffer
	if c1.Payload() != want {
		t.Errorf("Payload changed with the caller's buffer: %.20q...", c1.Payload())
	}
	if c2, err := v.Verify("p", tok); err != nil || c2 != c1 {
		t.Errorf("the same token missed the cache after the caller's buffer was reused: %v", err)
	}
}

// TestFarNumericDates: dates beyond time.Duration's range do not wrap.
func TestFarNumericDates(t *testing.T) {
	is := newIssuer(t)
	now := time.Now().Truncate(time.Second)
	v, err := New([]Provider{{Name: "p", Issuer: iss, KeySet: inline(is, t), CacheSize: -1}}, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		claim string
		value any
		want  Kind
	}{
		{"nbf", 1e12, NotYetValid},
		{"iat", 1e12, IssuedInFuture},
		{"nbf", 1e300, Malformed},
		{"exp", 1e300, Malformed},
		{"exp", -1e300, Malformed},
	} {
		tok := sign(t, is, "k1", now, func(c *jwt.Claims, m map[string]any) {
			switch tc.claim {
			case "nbf":
				c.NotBefore = nil
			case "iat":
				c.IssuedAt = nil
			case "exp":
				c.Expiry = nil
			}
			m[tc.claim] = tc.value
		})
		if _, err := v.Verify("p", tok); kindOf(err) != tc.want {
			t.Errorf("%s=%v: %v, want %v", tc.claim, tc.value, err, tc.want)
		}
	}
}

// TestNoKeysChallengeIsSafe: the client learns nothing about the JWKS
// endpoint; the log line (Error) still says why.
func TestNoKeysChallengeIsSafe(t *testing.T) {
	v, err := New([]Provider{{Name: "p", Issuer: iss, KeySet: KeySet{Remote: &Remote{URI: "http://idp.internal.example:8443/jwks"}}}})
	if err != nil {
		t.Fatal(err)
	}
	v.providers[0].fail(errors.New(`Get "http://idp.internal.example:8443/jwks": dial tcp 10.1.2.3:8443: connect: connection refused`))
	_, err = v.Verify("p", "a.b.c")
	var e *Error
	if !errors.As(err, &e) || e.Kind != NoKeys {
		t.Fatalf("%v, want NoKeys", err)
	}
	if c := e.WWWAuthenticate(); strings.Contains(c, "idp.internal") || strings.Contains(c, "10.1.2.3") {
		t.Errorf("challenge leaks the JWKS endpoint: %s", c)
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Error() lost the cause: %v", err)
	}
}
