package cache

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/outrider-mesh/outrider/internal/confval"
)

// Config is one route's caching. The zero value is off.
type Config struct {
	// Enabled turns caching on for the route. GET and HEAD requests are
	// looked up and filled; POST, PUT, PATCH and DELETE invalidate what is
	// stored for their URI; other methods pass through.
	Enabled bool `yaml:"enabled"`

	// MaxObjectSize is the largest response (headers and body) the route
	// stores. A larger response is still sent to the client in full, just
	// not stored. Default 1MiB; at most 1GiB.
	MaxObjectSize confval.ByteSize `yaml:"max_object_size"`

	// DefaultTTL is the heuristic freshness (RFC 9111 §4.2.2) given to a
	// response that has no explicit freshness (no max-age, s-maxage or
	// Expires) and a heuristically cacheable status (200, 203, 204, 300,
	// 301, 308, 404, 405, 410, 414, 501) or Cache-Control: public. It is
	// never used for a request that carried a Cookie or Authorization
	// header or verified token, so a personalized page is cached only
	// when the origin says so. Default 0: no heuristic freshness; only
	// responses with explicit freshness or a validator are stored.
	DefaultTTL time.Duration `yaml:"default_ttl"`

	// Key says which parts of the query string make up the cache key.
	// Scheme, authority (Host) and path always do.
	Key KeyConfig `yaml:"key"`

	// CacheAuthorizedPublic allows storing responses to requests that
	// carry credentials (an Authorization header, or a token the sidecar
	// verified) when the response says a shared cache may (RFC 9111 §3.5:
	// Cache-Control public, s-maxage or must-revalidate). Default false:
	// such responses are never stored, whatever they say.
	CacheAuthorizedPublic bool `yaml:"cache_authorized_public"`

	// XCacheHeader names a response header that says what the cache did:
	// HIT, MISS, STALE (served stale), REVALIDATED (served after a 304
	// from the origin) or BYPASS (not looked up). Default "": none.
	XCacheHeader string `yaml:"x_cache_header"`

	// MaxStaleWhileRevalidate caps the stale-while-revalidate window the
	// origin grants (RFC 5861), during which a stale response is served
	// while one background request refreshes it. Default 0: the origin's
	// value as sent.
	MaxStaleWhileRevalidate time.Duration `yaml:"max_stale_while_revalidate"`

	// MaxStaleIfError caps the stale-if-error window the origin grants
	// (RFC 5861), during which a stale response replaces a 500, 502, 503
	// or 504 from the origin. Default 0: the origin's value as sent.
	MaxStaleIfError time.Duration `yaml:"max_stale_if_error"`

	// UnkeyedHeaders adds request headers to the built-in list of
	// headers that can change a response without being part of the key
	// (X-Forwarded-Host, X-Forwarded-Server, X-Forwarded-Scheme,
	// X-Forwarded-Proto, X-Forwarded-Port, X-Forwarded-Prefix, X-Host,
	// X-Original-URL, X-Rewrite-URL, X-HTTP-Method-Override,
	// X-HTTP-Method, X-Method-Override, Forwarded). A response to a
	// request carrying one of them is stored only when its Vary names
	// that header, and such a request never shares another's fetch.
	UnkeyedHeaders []string `yaml:"unkeyed_headers"`

	// AllowUnkeyedHeaders removes headers from that list, for a header a
	// trusted proxy in front always overwrites (X-Forwarded-Proto behind
	// a load balancer that sets it on every request).
	AllowUnkeyedHeaders []string `yaml:"allow_unkeyed_headers"`
}

// KeyConfig selects the query parameters in the cache key. The query in
// the key is normalized: parameters sorted by name (the order of repeated
// values of one name is kept), empty ones dropped. With neither list set,
// every parameter counts.
type KeyConfig struct {
	// IgnoreQueryParams are parameter names left out of the key and
	// removed from the request sent to the origin on a lookup, so that
	// the stored response cannot depend on them (utm_source, fbclid).
	IgnoreQueryParams []string `yaml:"ignore_query_params"`

	// IncludeQueryParams, when set, are the only parameter names kept
	// in the key; every other parameter is removed from the request sent
	// to the origin. Exclusive with ignore_query_params.
	IncludeQueryParams []string `yaml:"include_query_params"`
}

const (
	defaultMaxObjectSize = 1 << 20
	maxMaxObjectSize     = 1 << 30
)

var defaultUnkeyed = []string{
	"X-Forwarded-Host", "X-Forwarded-Server", "X-Forwarded-Scheme",
	"X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Host",
	"X-Original-Url", "X-Rewrite-Url", "X-Http-Method-Override",
	"X-Http-Method", "X-Method-Override", "Forwarded",
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if c.MaxObjectSize < 0 || c.MaxObjectSize > maxMaxObjectSize {
		errs = append(errs, confval.Errorf("max_object_size", "%s is out of range (want 0 for the 1MiB default, up to 1GiB)", c.MaxObjectSize))
	}
	if c.DefaultTTL < 0 {
		errs = append(errs, confval.Errorf("default_ttl", "negative duration %s (want 0 for none, or a positive duration)", c.DefaultTTL))
	}
	if c.MaxStaleWhileRevalidate < 0 {
		errs = append(errs, confval.Errorf("max_stale_while_revalidate", "negative duration %s (want 0 for the origin's value, or a positive cap)", c.MaxStaleWhileRevalidate))
	}
	if c.MaxStaleIfError < 0 {
		errs = append(errs, confval.Errorf("max_stale_if_error", "negative duration %s (want 0 for the origin's value, or a positive cap)", c.MaxStaleIfError))
	}
	if c.XCacheHeader != "" && !validToken(c.XCacheHeader) {
		errs = append(errs, confval.Errorf("x_cache_header", "%q is not a header name", c.XCacheHeader))
	}
	if len(c.Key.IgnoreQueryParams) > 0 && len(c.Key.IncludeQueryParams) > 0 {
		errs = append(errs, confval.Errorf("key", "ignore_query_params and include_query_params are exclusive (set one)"))
	}
	for i, p := range c.Key.IgnoreQueryParams {
		if p == "" {
			errs = append(errs, confval.Errorf("key.ignore_query_params["+itoa(i)+"]", "empty parameter name"))
		}
	}
	for i, p := range c.Key.IncludeQueryParams {
		if p == "" {
			errs = append(errs, confval.Errorf("key.include_query_params["+itoa(i)+"]", "empty parameter name"))
		}
	}
	for i, h := range c.UnkeyedHeaders {
		if !validToken(h) {
			errs = append(errs, confval.Errorf("unkeyed_headers["+itoa(i)+"]", "%q is not a header name", h))
		}
	}
	for i, h := range c.AllowUnkeyedHeaders {
		if !validToken(h) {
			errs = append(errs, confval.Errorf("allow_unkeyed_headers["+itoa(i)+"]", "%q is not a header name", h))
		}
	}
	return errors.Join(errs...)
}

// unkeyedList is the effective unkeyed-header list, canonicalized.
func (c Config) unkeyedList() []string {
	allow := make(map[string]bool, len(c.AllowUnkeyedHeaders))
	for _, h := range c.AllowUnkeyedHeaders {
		allow[http.CanonicalHeaderKey(h)] = true
	}
	var out []string
	seen := map[string]bool{}
	for _, h := range append(append([]string(nil), defaultUnkeyed...), c.UnkeyedHeaders...) {
		h = http.CanonicalHeaderKey(strings.TrimSpace(h))
		if !allow[h] && !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}
