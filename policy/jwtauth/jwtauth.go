package jwtauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Defaults and bounds.
const (
	DefaultClockSkew      = 30 * time.Second
	DefaultRequestTimeout = 5 * time.Second
	DefaultCacheDuration  = 5 * time.Minute
	DefaultCacheSize      = 1024
	// MaxTokenBytes bounds a token; longer ones are Malformed.
	MaxTokenBytes = 8 << 10
	// MaxJWKSBytes bounds a key set document.
	MaxJWKSBytes = 1 << 20
	// earlyRefreshEvery rate-limits refreshes asked for by unknown key IDs.
	earlyRefreshEvery = 30 * time.Second
	// maxNumericDate bounds exp, nbf and iat, in seconds (go-jose's bound).
	maxNumericDate = 1 << 62
)

// DefaultAlgorithms are the algorithms a provider accepts when it names
// none.
var DefaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Provider is one token issuer.
type Provider struct {
	// Name is unique; rules and intentions refer to it. Required.
	Name string
	// Issuer is the "iss" every token must carry. Required.
	Issuer string
	// Audiences, when set, must contain one of the token's "aud" values.
	Audiences []string
	// Algorithms are the allowed "alg" values (default DefaultAlgorithms).
	Algorithms []string
	// ClockSkew is the leeway for exp, nbf and iat (default 30 s).
	ClockSkew time.Duration
	// KeySet is where the verification keys come from.
	KeySet KeySet
	// Locations are where the token is read, in order (default: header
	// Authorization with prefix "Bearer ").
	Locations []Location
	// ForwardClaims are claims the sidecar sets as request headers.
	ForwardClaims []ClaimHeader
	// ForwardPayloadHeader, when set, carries the token's base64url
	// payload to the application (Consul's Forwarding.HeaderName).
	ForwardPayloadHeader string
	// StripToken removes the token before the request is forwarded.
	StripToken bool
	// CacheSize is the number of verified tokens kept (0: 1024; negative:
	// no cache).
	CacheSize int
}

// KeySet holds exactly one source of keys.
type KeySet struct {
	JWKS   []byte  // an inline JSON Web Key Set
	File   string  // a JWKS file, re-read by Reload
	Remote *Remote // a JWKS URL, fetched by Run
}

// Remote is a JWKS served over HTTP(S).
type Remote struct {
	URI string
	// RequestTimeout bounds one fetch (default 5 s).
	RequestTimeout time.Duration
	// CacheDuration is the refresh period (default 5 min).
	CacheDuration time.Duration
}

// Location is where a token is read: exactly one of Header, Query and
// Cookie.
type Location struct {
	Header      string
	ValuePrefix string // with Header, e.g. "Bearer " (the scheme's case is ignored)
	Query       string
	Cookie      string
}

// String names the location for logs.
func (l Location) String() string {
	switch {
	case l.Header != "":
		return "header " + l.Header
	case l.Query != "":
		return "query parameter " + l.Query
	default:
		return "cookie " + l.Cookie
	}
}

// ClaimHeader forwards the claim at Path in request header Header.
type ClaimHeader struct {
	Path   []string
	Header string
}

// Request is what Authenticate reads a token from.
type Request interface {
	// Header returns the first value of the fields named name (ASCII
	// case-insensitive) and how many there are.
	Header(name string) (value string, n int)
	Query(name string) (value string, ok bool)
	Cookie(name string) (value string, ok bool)
}

// Found says where Authenticate found the token, so that the caller can
// strip it.
type Found struct {
	Location Location
	OK       bool
}

// Option configures New.
type Option func(*options)

type options struct {
	log    *slog.Logger
	client *http.Client
	now    func() time.Time
}

// WithLogger sets the logger for key-set loads and failures.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithHTTPClient sets the client remote key sets are fetched with.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Verifier verifies tokens for a fixed set of providers.
type Verifier struct {
	opts      options
	forwarded []string     // header names the providers forward claims in
	client    *http.Client // for remote key sets, made by Run when no WithHTTPClient
	providers []*provider
	byName    map[string]*provider
}

// provider is a Provider with its live state.
type provider struct {
	Provider
	algs []jose.SignatureAlgorithm
	keys atomic.Pointer[keySet]

	mu          sync.Mutex // guards the fields below
	lastLoaded  time.Time
	lastError   string
	stale       bool
	lastEarly   time.Time
	cache       map[string]*cached
	early       chan struct{} // asks Run for an early refresh
	fileModTime time.Time
}

// keySet is one loaded, immutable set of verification keys.
type keySet struct {
	keys []jose.JSONWebKey
	gen  uint64
	doc  []byte // the document they came from
}

type cached struct {
	claims *Claims
	gen    uint64
}

var keyGen atomic.Uint64

// New validates providers and loads inline and file key sets.
func New(providers []Provider, opts ...Option) (*Verifier, error) {
	v := &Verifier{byName: map[string]*provider{}}
	for _, o := range opts {
		o(&v.opts)
	}
	if v.opts.log == nil {
		v.opts.log = slog.New(slog.DiscardHandler)
	}
	if v.opts.now == nil {
		v.opts.now = time.Now
	}
	var errs []error
	for i, p := range providers {
		pp, err := newProvider(p)
		name := p.Name
		if name == "" {
			name = "#" + strconv.Itoa(i+1)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("jwtauth: provider %s: %w", name, err))
			continue
		}
		if _, dup := v.byName[p.Name]; dup {
			errs = append(errs, fmt.Errorf("jwtauth: provider %s: name: used twice", name))
			continue
		}
		switch {
		case p.KeySet.JWKS != nil:
			err = pp.install(p.KeySet.JWKS, v.opts.now())
		case p.KeySet.File != "":
			err = v.loadFile(pp)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("jwtauth: provider %s: key set: %w", name, err))
			continue
		}
		v.providers = append(v.providers, pp)
		v.byName[p.Name] = pp
		for _, c := range pp.ForwardClaims {
			v.forwarded = append(v.forwarded, c.Header)
		}
		if pp.ForwardPayloadHeader != "" {
			v.forwarded = append(v.forwarded, pp.ForwardPayloadHeader)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return v, nil
}

func newProvider(p Provider) (*provider, error) {
	if p.Name == "" {
		return nil, errors.New("name: required")
	}
	if p.Issuer == "" {
		return nil, errors.New("issuer: required")
	}
	if p.ClockSkew < 0 {
		return nil, errors.New("clock_skew: negative")
	}
	if p.ClockSkew == 0 {
		p.ClockSkew = DefaultClockSkew
	}
	if len(p.Algorithms) == 0 {
		p.Algorithms = DefaultAlgorithms
	}
	pp := &provider{Provider: p, early: make(chan struct{}, 1)}
	for _, a := range p.Algorithms {
		if !slices.Contains(DefaultAlgorithms, a) {
			return nil, fmt.Errorf("algorithms: %q is not an allowed asymmetric algorithm (none and HMAC are refused)", a)
		}
		pp.algs = append(pp.algs, jose.SignatureAlgorithm(a))
	}
	n := 0
	if p.KeySet.JWKS != nil {
		n++
	}
	if p.KeySet.File != "" {
		n++
	}
	if r := p.KeySet.Remote; r != nil {
		n++
		u, err := url.Parse(r.URI)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("key set: remote URI %q is not an http(s) URL", r.URI)
		}
		if r.RequestTimeout < 0 || r.CacheDuration < 0 {
			return nil, errors.New("key set: remote timeouts must not be negative")
		}
		rc := *r
		if rc.RequestTimeout == 0 {
			rc.RequestTimeout = DefaultRequestTimeout
		}
		if rc.CacheDuration == 0 {
			rc.CacheDuration = DefaultCacheDuration
		}
		pp.KeySet.Remote = &rc
	}
	if n != 1 {
		return nil, errors.New("key set: exactly one of inline JWKS, file and remote")
	}
	if len(p.Locations) == 0 {
		pp.Locations = []Location{{Header: "Authorization", ValuePrefix: "Bearer "}}
	}
	for i, l := range pp.Locations {
		k := 0
		for _, s := range []string{l.Header, l.Query, l.Cookie} {
			if s != "" {
				k++
			}
		}
		if k != 1 || (l.ValuePrefix != "" && l.Header == "") {
			return nil, fmt.Errorf("locations[%d]: exactly one of header, query and cookie", i)
		}
	}
	for i, c := range p.ForwardClaims {
		if len(c.Path) == 0 || c.Header == "" {
			return nil, fmt.Errorf("forward claims[%d]: needs a path and a header", i)
		}
	}
	switch {
	case p.CacheSize == 0:
		pp.CacheSize = DefaultCacheSize
	case p.CacheSize < 0:
		pp.CacheSize = 0
	}
	return pp, nil
}

// parseKeySet reads a JWKS document and keeps its signature keys: public
// keys (a private key's public half), "use" empty or "sig".
func parseKeySet(doc []byte) ([]jose.JSONWebKey, error) {
	if len(doc) > MaxJWKSBytes {
		return nil, fmt.Errorf("key set over %d bytes", MaxJWKSBytes)
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(doc, &raw); err != nil {
		return nil, fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	var keys []jose.JSONWebKey
	var skipped []string
	for i, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if !k.IsPublic() {
			k = k.Public()
		}
		switch k.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		if len(skipped) > 0 {
			return nil, fmt.Errorf("no usable signature key (%s)", strings.Join(skipped, "; "))
		}
		return nil, errors.New("no usable signature key")
	}
	return keys, nil
}

// install replaces p's keys with doc's; on error the old keys stay.
func (p *provider) install(doc []byte, now time.Time) error {
	if ks := p.keys.Load(); ks != nil && string(ks.doc) == string(doc) {
		// Unchanged: keep the generation, and with it the token cache.
		p.mu.Lock()
		p.lastLoaded, p.lastError, p.stale = now, "", false
		p.mu.Unlock()
		return nil
	}
	keys, err := parseKeySet(doc)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.lastError, p.stale = err.Error(), p.keys.Load() != nil
		return err
	}
	p.keys.Store(&keySet{keys: keys, gen: keyGen.Add(1), doc: slices.Clone(doc)})
	p.cache = nil
	p.lastLoaded, p.lastError, p.stale = now, "", false
	return nil
}

func (p *provider) fail(err error) {
	p.mu.Lock()
	p.lastError, p.stale = err.Error(), p.keys.Load() != nil
	p.mu.Unlock()
}

func (v *Verifier) loadFile(p *provider) error {
	st, err := os.Stat(p.KeySet.File)
	if err != nil {
		return err
	}
	doc, err := os.ReadFile(p.KeySet.File)
	if err != nil {
		return err
	}
	if err := p.install(doc, v.opts.now()); err != nil {
		return err
	}
	p.mu.Lock()
	p.fileModTime = st.ModTime()
	p.mu.Unlock()
	return nil
}

// Reload re-reads file key sets now; a bad file keeps the previous keys
// and is logged.
func (v *Verifier) Reload() {
	for _, p := range v.providers {
		if p.KeySet.File == "" {
			continue
		}
		if err := v.loadFile(p); err != nil {
			v.opts.log.Error("JWT key set not reloaded; keeping the previous keys", "provider", p.Name, "file", p.KeySet.File, "error", err)
			continue
		}
		v.opts.log.Info("JWT key set reloaded", "provider", p.Name, "file", p.KeySet.File)
	}
}

// Ready reports whether every provider has keys.
func (v *Verifier) Ready() bool {
	for _, p := range v.providers {
		if p.keys.Load() == nil {
			return false
		}
	}
	return true
}

// Provider returns the named provider's configuration (with defaults).
func (v *Verifier) Provider(name string) (*Provider, bool) {
	p, ok := v.byName[name]
	if !ok {
		return nil, false
	}
	return &p.Provider, true
}

// ForwardedHeaders lists the header fields the providers set for the
// application (claims and payload): the sidecar removes them from every
// incoming request so that a client cannot forge them. The caller must not
// modify the slice.
func (v *Verifier) ForwardedHeaders() []string { return v.forwarded }

// Names lists the providers in configuration order.
func (v *Verifier) Names() []string {
	out := make([]string, len(v.providers))
	for i, p := range v.providers {
		out[i] = p.Name
	}
	return out
}

// Authenticate finds provider's token in req and verifies it.
func (v *Verifier) Authenticate(provider string, req Request) (*Claims, Found, error) {
	p, ok := v.byName[provider]
	if !ok {
		return nil, Found{}, &Error{Provider: provider, Kind: UnknownProvider, Reason: "no such provider"}
	}
	tok, loc, err := p.extract(req)
	if err != nil {
		return nil, Found{}, err
	}
	c, err := v.verify(p, tok)
	if err != nil {
		return nil, Found{}, err
	}
	return c, Found{Location: loc, OK: true}, nil
}

func (p *provider) extract(req Request) (string, Location, error) {
	for _, l := range p.Locations {
		var val string
		var ok bool
		switch {
		case l.Header != "":
			var n int
			val, n = req.Header(l.Header)
			if n > 1 {
				return "", l, &Error{Provider: p.Name, Kind: Ambiguous, Reason: l.Header + " header sent more than once"}
			}
			if n == 0 {
				continue
			}
			ok = true
			if pre := l.ValuePrefix; pre != "" {
				if len(val) < len(pre) || !strings.EqualFold(val[:len(pre)], pre) {
					continue // another scheme (Authorization: Basic ...): no token here
				}
				val = strings.TrimSpace(val[len(pre):])
			}
		case l.Query != "":
			val, ok = req.Query(l.Query)
		default:
			val, ok = req.Cookie(l.Cookie)
		}
		if ok {
			return val, l, nil
		}
	}
	return "", Location{}, &Error{Provider: p.Name, Kind: NoToken, Reason: "no token"}
}

// Verify verifies token for provider.
func (v *Verifier) Verify(provider, token string) (*Claims, error) {
	p, ok := v.byName[provider]
	if !ok {
		return nil, &Error{Provider: provider, Kind: UnknownProvider, Reason: "no such provider"}
	}
	return v.verify(p, token)
}

func (v *Verifier) verify(p *provider, token string) (*Claims, error) {
	fail := func(k Kind, reason string) (*Claims, error) {
		return nil, &Error{Provider: p.Name, Kind: k, Reason: reason}
	}
	if token == "" {
		return fail(NoToken, "no token")
	}
	if len(token) > MaxTokenBytes {
		return fail(Malformed, "token over "+strconv.Itoa(MaxTokenBytes)+" bytes")
	}
	ks := p.keys.Load()
	if ks == nil {
		p.mu.Lock()
		why := p.lastError
		p.mu.Unlock()
		if why == "" {
			why = "not fetched yet"
		}
		return nil, &Error{Provider: p.Name, Kind: NoKeys, Reason: "signing keys not loaded yet", detail: why}
	}
	now := v.opts.now()
	if p.CacheSize > 0 {
		p.mu.Lock()
		c, ok := p.cache[token]
		p.mu.Unlock()
		if ok && c.gen == ks.gen {
			if err := p.checkTime(c.claims, now); err != nil {
				return nil, err
			}
			return c.claims, nil
		}
	}
	tok, err := jwt.ParseSigned(token, p.algs)
	if err != nil {
		if strings.Contains(err.Error(), "unexpected signature algorithm") {
			return fail(Algorithm, "algorithm not allowed")
		}
		return fail(Malformed, "not a signed JWT")
	}
	if len(tok.Headers) != 1 {
		return fail(Malformed, "one signature expected")
	}
	h := tok.Headers[0]
	candidates := ks.keys
	if h.KeyID != "" {
		candidates = nil
		for _, k := range ks.keys {
			if k.KeyID == h.KeyID {
				candidates = append(candidates, k)
			}
		}
		if len(candidates) == 0 {
			p.askEarlyRefresh(now)
			return fail(UnknownKey, "unknown key id")
		}
	}
	var raw map[string]any
	verified := false
	for _, k := range candidates {
		if k.Algorithm != "" && k.Algorithm != h.Algorithm {
			continue
		}
		// One decode of the payload, into the map; the registered claims
		// are read from it (decoding into jwt.Claims too costs a second
		// JSON pass).
		if err := tok.Claims(k.Key, &raw); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		if h.KeyID == "" {
			p.askEarlyRefresh(now)
		}
		return fail(BadSignature, "signature does not verify")
	}
	c, why := registered(raw)
	if why != "" {
		return fail(Malformed, why)
	}
	// token may be a view of the caller's buffer (the sidecar passes its
	// reused connection buffer): the payload kept in the Claims and the
	// cache key must own their bytes. One copy, on the uncached path only.
	token = strings.Clone(token)
	c.payload = payloadOf(token)
	if c.Issuer != p.Issuer {
		return fail(Issuer, "issuer is not "+p.Issuer)
	}
	if len(p.Audiences) > 0 && !slices.ContainsFunc(p.Audiences, func(a string) bool { return slices.Contains(c.Audience, a) }) {
		return fail(Audience, "audience not accepted")
	}
	if err := p.checkTime(c, now); err != nil {
		return nil, err
	}
	if p.CacheSize > 0 {
		p.mu.Lock()
		if p.cache == nil {
			p.cache = make(map[string]*cached, p.CacheSize)
		}
		if len(p.cache) >= p.CacheSize {
			for k := range p.cache { // evict one, at random
				delete(p.cache, k)
				break
			}
		}
		p.cache[token] = &cached{claims: c, gen: ks.gen}
		p.mu.Unlock()
	}
	return c, nil
}

// registered reads the registered claims (RFC 7519 section 4.1) from the
// decoded payload; why says what is malformed.
func registered(raw map[string]any) (*Claims, string) {
	c := &Claims{raw: raw}
	var ok bool
	if v, has := raw["iss"]; has {
		if c.Issuer, ok = v.(string); !ok {
			return nil, "iss is not a string"
		}
	}
	if v, has := raw["sub"]; has {
		if c.Subject, ok = v.(string); !ok {
			return nil, "sub is not a string"
		}
	}
	switch a := raw["aud"].(type) {
	case nil:
	case string:
		c.Audience = []string{a}
	case []any:
		for _, e := range a {
			s, ok := e.(string)
			if !ok {
				return nil, "aud holds a non-string"
			}
			c.Audience = append(c.Audience, s)
		}
	default:
		return nil, "aud is neither a string nor a list"
	}
	for _, t := range [...]struct {
		name string
		dst  *time.Time
	}{{"exp", &c.Expiry}, {"nbf", &c.NotBefore}, {"iat", &c.IssuedAt}} {
		v, has := raw[t.name]
		if !has {
			continue
		}
		secs, ok := numericDate(v)
		if !ok {
			return nil, t.name + " is not a number"
		}
		// Bounded as go-jose bounds NumericDate: beyond it time.Duration
		// (and int64) overflow, and an nbf of 1e12 would wrap into the past.
		if secs != secs || secs >= maxNumericDate || secs <= -maxNumericDate {
			return nil, t.name + " is out of range"
		}
		whole := math.Floor(secs)
		*t.dst = time.Unix(int64(whole), int64((secs-whole)*1e9)).UTC()
	}
	if c.Expiry.IsZero() {
		return nil, "no exp claim"
	}
	return c, ""
}

func numericDate(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

func (p *provider) checkTime(c *Claims, now time.Time) error {
	switch skew := p.ClockSkew; {
	case now.Add(-skew).After(c.Expiry):
		return &Error{Provider: p.Name, Kind: Expired, Reason: "token expired"}
	case !c.NotBefore.IsZero() && now.Add(skew).Before(c.NotBefore):
		return &Error{Provider: p.Name, Kind: NotYetValid, Reason: "token not valid yet"}
	case !c.IssuedAt.IsZero() && now.Add(skew).Before(c.IssuedAt):
		return &Error{Provider: p.Name, Kind: IssuedInFuture, Reason: "token issued in the future"}
	}
	return nil
}

func (p *provider) askEarlyRefresh(now time.Time) {
	if p.KeySet.Remote == nil {
		return
	}
	p.mu.Lock()
	due := now.Sub(p.lastEarly) >= earlyRefreshEvery
	if due {
		p.lastEarly = now
	}
	p.mu.Unlock()
	if due {
		select {
		case p.early <- struct{}{}:
		default:
		}
	}
}

func payloadOf(token string) string {
	_, rest, _ := strings.Cut(token, ".")
	payload, _, _ := strings.Cut(rest, ".")
	return payload
}

// ProviderStatus describes a provider's keys for /config_dump.
type ProviderStatus struct {
	Name        string    `json:"name"`
	Issuer      string    `json:"issuer"`
	Source      string    `json:"source"`
	KeyIDs      []string  `json:"key_ids,omitempty"`
	Keys        int       `json:"keys"`
	LastLoaded  time.Time `json:"last_loaded,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Stale       bool      `json:"stale,omitempty"`
	NeverLoaded bool      `json:"never_loaded,omitempty"`
}

// Status describes every provider's keys.
func (v *Verifier) Status() []ProviderStatus {
	out := make([]ProviderStatus, 0, len(v.providers))
	for _, p := range v.providers {
		st := ProviderStatus{Name: p.Name, Issuer: p.Issuer}
		switch {
		case p.KeySet.Remote != nil:
			st.Source = "remote " + p.KeySet.Remote.URI
		case p.KeySet.File != "":
			st.Source = "file " + p.KeySet.File
		default:
			st.Source = "inline"
		}
		if ks := p.keys.Load(); ks != nil {
			st.Keys = len(ks.keys)
			for _, k := range ks.keys {
				if k.KeyID != "" {
					st.KeyIDs = append(st.KeyIDs, k.KeyID)
				}
			}
		} else {
			st.NeverLoaded = true
		}
		p.mu.Lock()
		st.LastLoaded, st.LastError, st.Stale = p.lastLoaded, p.lastError, p.stale
		p.mu.Unlock()
		out = append(out, st)
	}
	return out
}
