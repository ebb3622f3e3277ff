// Package jwttest is a token issuer for tests: a P-256 key, tokens signed
// with it by go-jose, and its JSON Web Key Set, inline or served by a real
// HTTP server on loopback that a test can take down and bring back.
package jwttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// KeyID is the "kid" of the issuer's key.
const KeyID = "k1"

// Issuer signs tokens for Iss.
type Issuer struct {
	Iss  string
	key  *ecdsa.PrivateKey
	down atomic.Bool
}

// New returns an issuer named iss with a fresh key.
func New(t testing.TB, iss string) *Issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &Issuer{Iss: iss, key: key}
}

// JWKS is the issuer's public key set, as JSON.
func (is *Issuer) JWKS(t testing.TB) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &is.key.PublicKey, KeyID: KeyID, Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Serve starts a JWKS server (closed when the test ends) and returns its
// URL. While SetDown(true) it answers 503.
func (is *Issuer) Serve(t testing.TB) string {
	t.Helper()
	doc := is.JWKS(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if is.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// SetDown takes the JWKS server down (true) or brings it back.
func (is *Issuer) SetDown(down bool) { is.down.Store(down) }

// Token signs a token for subject alice, audience web, issued now and
// expiring after ttl (negative: already expired), with extra claims added.
func (is *Issuer) Token(t testing.TB, ttl time.Duration, extra map[string]any) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: is.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", KeyID))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	std := jwt.Claims{Issuer: is.Iss, Subject: "alice", Audience: jwt.Audience{"web"},
		IssuedAt: jwt.NewNumericDate(now.Add(min(ttl, 0))), NotBefore: jwt.NewNumericDate(now.Add(min(ttl, 0) - time.Minute)),
		Expiry: jwt.NewNumericDate(now.Add(ttl))}
	tok, err := jwt.Signed(sig).Claims(std).Claims(extra).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
