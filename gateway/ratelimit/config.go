package ratelimit

import (
	"errors"
	"math"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/outrider-mesh/outrider/internal/confval"
)

// Defaults.
const (
	// DefaultMaxKeys bounds the keys one local limit tracks.
	DefaultMaxKeys = 65536
	// DefaultRedisTimeout bounds dialling Redis and one decision's round trip.
	DefaultRedisTimeout = 50 * time.Millisecond
	// DefaultRedisPoolSize is the connections kept per Redis value.
	DefaultRedisPoolSize = 32
	// DefaultKeyPrefix starts every key this package writes to Redis.
	DefaultKeyPrefix = "outrider:rl:"
	// maxNameLen bounds a limit's name (it is sent in response headers).
	maxNameLen = 64
)

// Config is a route's rate limiting. The zero Config limits nothing.
type Config struct {
	// Limits are applied in order to every request of the route; a request
	// is forwarded only if all of them admit it. Local limits are checked
	// before global ones, so a request refused locally costs no Redis
	// round trip.
	Limits []Limit `yaml:"limits"`
	// Headers adds RateLimit-Policy and RateLimit to admitted responses
	// too (they are always on 429 responses). Default false.
	Headers bool `yaml:"headers"`
}

// Limit is one token bucket: Requests per Period on average, at most
// Burst at once, counted per Key.
type Limit struct {
	// Name identifies the limit in the RateLimit-Policy and RateLimit
	// response headers and, for a global limit, names its counters in
	// Redis: global limits with the same name share counters across routes
	// and sidecars, so give each its own name unless sharing is meant.
	// Letters, digits, '-', '_' and '.', at most 64 characters. Default
	// "limit<index>" for a local limit; required for a global one.
	Name string `yaml:"name"`
	// Requests is how many requests each key may make per Period on
	// average. Required, at least 1.
	Requests int `yaml:"requests"`
	// Period is the time Requests are spread over ("1s", "1m"). Required.
	Period time.Duration `yaml:"period"`
	// Burst is the most requests a key may make at once, after being idle
	// for Burst/Requests periods. Default Requests.
	Burst int `yaml:"burst"`
	// Key says whose requests share a bucket. Unset: one bucket for the
	// whole route.
	Key Key `yaml:"key"`
	// Scope is "local" (default: counted in this process only) or
	// "global" (counted in Redis, shared by every sidecar using it; needs
	// the listener's redis configuration).
	Scope string `yaml:"scope"`
	// MissingKey is what happens to a request that lacks the key (no
	// header, no verified token, no peer ID): "shared" (default) counts
	// all such requests in one bucket with the same numbers, so that
	// leaving the key out never escapes the limit; "reject" answers 429
	// to them at once.
	MissingKey string `yaml:"missing_key"`
	// MaxKeys bounds the keys a local limit remembers (default 65536; a
	// global limit uses it for its local fallback). Idle keys are
	// forgotten first; when every slot holds a key that is still being
	// limited, requests with new keys share one overflow bucket until a
	// slot frees.
	MaxKeys int `yaml:"max_keys"`
}

// Key selects what a limit counts per. Set at most one field.
type Key struct {
	// Peer counts per mTLS peer SPIFFE ID.
	Peer bool `yaml:"peer"`
	// ClientIP counts per client address: the TCP peer, or the address
	// the listener's trusted proxies forwarded in X-Forwarded-For.
	ClientIP bool `yaml:"client_ip"`
	// Header counts per value of this request header (e.g. "X-API-Key").
	Header string `yaml:"header"`
	// JWTClaim counts per value of this claim of the verified bearer
	// token, nested objects separated by "." ("sub", "org.id").
	JWTClaim string `yaml:"jwt_claim"`
}

// Scopes and missing-key policies.
const (
	ScopeLocal   = "local"
	ScopeGlobal  = "global"
	MissingShare = "shared"
	MissingDeny  = "reject"
)

// Validate reports every problem in c.
func (c Config) Validate() error {
	var errs []error
	names := map[string]int{}
	for i, l := range c.Limits {
		p := "limits[" + strconv.Itoa(i) + "]"
		if err := l.validate(); err != nil {
			errs = append(errs, confval.Prefix(p, err))
		}
		if n := l.name(i); n != "" {
			if j, dup := names[n]; dup {
				errs = append(errs, confval.Errorf(p+".name", "%q is also the name of limits[%d]; names must be unique within a route", n, j))
			} else {
				names[n] = i
			}
		}
	}
	return errors.Join(errs...)
}

func (l Limit) name(i int) string {
	if l.Name == "" && l.Scope != ScopeGlobal {
		return "limit" + strconv.Itoa(i)
	}
	return l.Name
}

func (l Limit) validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, confval.Errorf(path, format, args...))
	}
	switch {
	case l.Name == "" && l.Scope == ScopeGlobal:
		bad("name", "required for a global limit (it names the counters shared in Redis)")
	case l.Name != "" && !validName(l.Name):
		bad("name", "%q: want at most %d letters, digits, '-', '_' or '.'", l.Name, maxNameLen)
	}
	if l.Requests < 1 {
		bad("requests", "must be at least 1, got %d", l.Requests)
	}
	if l.Period <= 0 {
		bad("period", "required: a positive duration such as \"1s\" or \"1m\"")
	}
	if l.Requests >= 1 && l.Period > 0 {
		min := time.Duration(1)
		if l.Scope == ScopeGlobal {
			min = time.Microsecond
		}
		if l.Period/time.Duration(l.Requests) < min {
			bad("requests", "%d per %s is more than one request per %s, the finest rate counted", l.Requests, l.Period, min)
		}
	}
	if l.Requests >= 1 && l.Period > 0 && l.Burst > 0 && int64(l.Period)/int64(l.Requests) > math.MaxInt64/4/int64(l.Burst) {
		bad("burst", "%d bursts of %s each is longer than the buckets can count (about 70 years)", l.Burst, l.Period/time.Duration(l.Requests))
	}
	if l.Burst < 0 {
		bad("burst", "must not be negative, got %d", l.Burst)
	}
	if l.MaxKeys < 0 {
		bad("max_keys", "must not be negative, got %d", l.MaxKeys)
	}
	switch l.Scope {
	case "", ScopeLocal, ScopeGlobal:
	default:
		bad("scope", "%q: want \"local\" or \"global\"", l.Scope)
	}
	switch l.MissingKey {
	case "", MissingShare, MissingDeny:
	default:
		bad("missing_key", "%q: want \"shared\" or \"reject\"", l.MissingKey)
	}
	set := 0
	for _, b := range []bool{l.Key.Peer, l.Key.ClientIP, l.Key.Header != "", l.Key.JWTClaim != ""} {
		if b {
			set++
		}
	}
	if set > 1 {
		bad("key", "set only one of peer, client_ip, header and jwt_claim")
	}
	if h := l.Key.Header; h != "" && !validToken(h) {
		bad("key.header", "%q is not a header name", h)
	}
	if c := l.Key.JWTClaim; c != "" {
		for _, part := range strings.Split(c, ".") {
			if part == "" {
				bad("key.jwt_claim", "%q: empty name between dots; want a claim name or dotted path such as \"org.id\"", c)
				break
			}
		}
	}
	return errors.Join(errs...)
}

func validName(s string) bool {
	if len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// validToken reports whether s is an RFC 9110 token (a field name).
func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return s != ""
}

// RedisConfig is the Redis server that global limits share: a listener
// level value, built once with NewRedis and passed to each route's New.
type RedisConfig struct {
	// Address is "host:port", or the path of a Unix socket ("/run/redis.sock").
	// Required.
	Address string `yaml:"address"`
	// Username and Password authenticate (ACL user, or Password alone for
	// requirepass). Default none.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// DB is the database number. Default 0.
	DB int `yaml:"db"`
	// TLS, when set, connects with TLS.
	TLS *RedisTLS `yaml:"tls"`
	// Timeout bounds dialling and each decision's round trip, including the
	// wait for a free pooled connection (default 50ms). A decision that
	// takes longer is a Redis failure.
	Timeout time.Duration `yaml:"timeout"`
	// PoolSize is the most connections open at once (default 32).
	PoolSize int `yaml:"pool_size"`
	// KeyPrefix starts every key written (default "outrider:rl:"). Keys
	// expire once their bucket is full again.
	KeyPrefix string `yaml:"key_prefix"`
	// FailureMode is what a global limit does when Redis fails (down,
	// slower than Timeout, or answering errors): "local" (default) decides
	// with this sidecar's own bucket, same numbers, so a Redis outage
	// neither opens the floodgates nor takes the route down; "open" admits;
	// "closed" answers 429.
	FailureMode string `yaml:"failure_mode"`
}

// RedisTLS configures TLS to Redis.
type RedisTLS struct {
	// CAFile is a PEM bundle that verifies the server (default: system roots).
	CAFile string `yaml:"ca_file"`
	// ServerName overrides the name verified (default: Address's host).
	ServerName string `yaml:"server_name"`
	// CertFile and KeyFile are a client certificate, both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Failure modes.
const (
	FailLocal  = "local"
	FailOpen   = "open"
	FailClosed = "closed"
)

// Validate reports every problem in c.
func (c RedisConfig) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, confval.Errorf(path, format, args...))
	}
	if c.Address == "" {
		bad("address", "required: host:port or a Unix socket path")
	}
	if c.DB < 0 {
		bad("db", "must not be negative, got %d", c.DB)
	}
	if c.Timeout < 0 {
		bad("timeout", "must not be negative, got %s", c.Timeout)
	}
	if c.PoolSize < 0 {
		bad("pool_size", "must not be negative, got %d", c.PoolSize)
	}
	switch c.FailureMode {
	case "", FailLocal, FailOpen, FailClosed:
	default:
		bad("failure_mode", "%q: want \"local\", \"open\" or \"closed\"", c.FailureMode)
	}
	if t := c.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		bad("tls", "set both cert_file and key_file, or neither")
	}
	return errors.Join(errs...)
}

func canonicalHeader(h string) string { return textproto.CanonicalMIMEHeaderKey(h) }
