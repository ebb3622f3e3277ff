package balance

import (
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"
)

// Policy names a balancing algorithm. The values are Consul's
// service-resolver LoadBalancer.Policy values.
type Policy string

const (
	// RoundRobin cycles through endpoints in proportion to their weights,
	// interleaved (smooth weighted round robin); with equal weights it is
	// plain round robin.
	RoundRobin Policy = "round_robin"
	// Random picks uniformly at random, in proportion to weights.
	Random Policy = "random"
	// LeastRequest prefers the endpoint with the fewest active requests
	// among ChoiceCount sampled ones (see the package documentation for
	// unequal weights).
	LeastRequest Policy = "least_request"
	// RingHash is Ketama-style consistent hashing on a ring of
	// MinRingSize..MaxRingSize entries.
	RingHash Policy = "ring_hash"
	// Maglev is consistent hashing through a Maglev lookup table of
	// MaglevTableSize entries.
	Maglev Policy = "maglev"
)

// hashBased reports whether p consumes the request hash.
func (p Policy) hashBased() bool { return p == RingHash || p == Maglev }

func (p Policy) known() bool {
	switch p {
	case RoundRobin, Random, LeastRequest, RingHash, Maglev:
		return true
	}
	return false
}

// Defaults and limits, as Envoy's (Consul passes the values through to
// Envoy unchanged, and Envoy rejects values outside these limits).
const (
	// DefaultChoiceCount is LeastRequestConfig.ChoiceCount when unset.
	DefaultChoiceCount = 2
	// DefaultMinRingSize is RingHashConfig.MinimumRingSize when unset.
	DefaultMinRingSize = 1024
	// DefaultMaxRingSize is RingHashConfig.MaximumRingSize when unset, and
	// the largest value either ring size may be configured to.
	DefaultMaxRingSize = 8 << 20
	// MaxRingEntries bounds the ring actually built, whatever the
	// configuration asks: a ring point costs 12 bytes plus at most 4 of
	// index, so a ring takes at most 16 MiB per upstream. Only very unequal
	// weights (the lightest endpoint still gets its share of MinRingSize)
	// or a MinRingSize above it reach the cap; proportions between
	// endpoints are kept.
	MaxRingEntries = 1 << 20
	// MaglevTableSize is the size of the Maglev lookup table (a prime, as
	// Envoy's default). Consul does not expose it.
	MaglevTableSize = 65537
)

// Config is the LoadBalancer block of a service-resolver, converted. The
// zero value selects the caller's default policy with default settings.
// Zero numeric fields mean the default; Balancer.Update clamps values out
// of range rather than failing (FromConsul rejects them).
type Config struct {
	// Policy is the algorithm. "" means the default of the Balancer
	// (NewBalancer's argument: RoundRobin for L4, LeastRequest for L7).
	Policy Policy
	// ChoiceCount is how many endpoints LeastRequest samples per pick
	// (LeastRequestConfig.ChoiceCount); default 2, at least 2.
	ChoiceCount int
	// MinRingSize and MaxRingSize bound the RingHash ring
	// (RingHashConfig.MinimumRingSize, MaximumRingSize); defaults 1024 and
	// 8M, and the built ring never exceeds MaxRingEntries.
	MinRingSize int
	MaxRingSize int
	// HashPolicies compute the request hash for RingHash and Maglev (see
	// Hash). Without policies, or when none produces a value, hash-based
	// policies pick at random.
	HashPolicies []HashPolicy
}

// HashPolicy is one source of the request hash (a Consul
// LoadBalancer.HashPolicies entry).
type HashPolicy struct {
	// Field is "header", "cookie" or "query_parameter"; "" when SourceIP.
	Field string
	// FieldValue is the header, cookie or query parameter name.
	FieldValue string
	// SourceIP hashes the downstream client's IP address.
	SourceIP bool
	// Terminal stops the evaluation of the following policies once a hash
	// has been computed.
	Terminal bool
	// Cookie, only for Field "cookie", makes Hash generate the cookie when
	// the request has none (Consul's CookieConfig).
	Cookie *CookieConfig
}

// Hash policy fields (HashPolicy.Field).
const (
	FieldHeader = "header"
	FieldCookie = "cookie"
	FieldQuery  = "query_parameter"
)

// CookieConfig makes a cookie hash policy generate the cookie when a
// request lacks it. A cookie is generated only when Session is true or TTL
// is positive, as Envoy does.
type CookieConfig struct {
	// Session generates a session cookie (no Max-Age). Exclusive with TTL.
	Session bool
	// TTL is the generated cookie's Max-Age, in whole seconds (a TTL under
	// one second gives a session cookie, as in Envoy).
	TTL time.Duration
	// Path is the generated cookie's Path attribute; "" omits it.
	Path string
}

// generates reports whether the policy creates a missing cookie.
func (c *CookieConfig) generates() bool { return c != nil && (c.Session || c.TTL > 0) }

// ConfigError is a FromConsul validation error; Field is the path of the
// offending field in the Consul config entry.
type ConfigError struct {
	Field  string // e.g. "LoadBalancer.HashPolicies[1].Field"
	Reason string
}

func (e *ConfigError) Error() string { return "balance: " + e.Field + ": " + e.Reason }

func errField(field, format string, args ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// FromConsul converts the LoadBalancer block of a Consul service-resolver
// (nil gives the zero Config), validating it as Consul does when the entry
// is written, plus the limits Envoy enforces when it receives the
// configuration. The error, a *ConfigError, names the first bad field.
func FromConsul(lb *api.LoadBalancer) (Config, error) {
	if lb == nil {
		return Config{}, nil
	}
	p := Policy(lb.Policy)
	if p != "" && !p.known() {
		return Config{}, errField("LoadBalancer.Policy", "unknown policy %q (want one of %q, %q, %q, %q, %q)",
			lb.Policy, RoundRobin, Random, LeastRequest, RingHash, Maglev)
	}
	cfg := Config{Policy: p}
	if lb.RingHashConfig != nil {
		if p != RingHash {
			return Config{}, errField("LoadBalancer.RingHashConfig", "set for policy %s; it applies only to %q", policyName(p), RingHash)
		}
		minSize, maxSize := lb.RingHashConfig.MinimumRingSize, lb.RingHashConfig.MaximumRingSize
		if minSize > DefaultMaxRingSize {
			return Config{}, errField("LoadBalancer.RingHashConfig.MinimumRingSize", "%d is above the limit %d", minSize, DefaultMaxRingSize)
		}
		if maxSize > DefaultMaxRingSize {
			return Config{}, errField("LoadBalancer.RingHashConfig.MaximumRingSize", "%d is above the limit %d", maxSize, DefaultMaxRingSize)
		}
		if minSize > 0 && maxSize > 0 && minSize > maxSize {
			return Config{}, errField("LoadBalancer.RingHashConfig.MinimumRingSize", "%d is above MaximumRingSize %d", minSize, maxSize)
		}
		cfg.MinRingSize, cfg.MaxRingSize = int(minSize), int(maxSize)
	}
	if lb.LeastRequestConfig != nil {
		if p != LeastRequest {
			return Config{}, errField("LoadBalancer.LeastRequestConfig", "set for policy %s; it applies only to %q", policyName(p), LeastRequest)
		}
		n := lb.LeastRequestConfig.ChoiceCount
		if n == 1 {
			return Config{}, errField("LoadBalancer.LeastRequestConfig.ChoiceCount", "must be at least 2 (or 0 for the default %d)", DefaultChoiceCount)
		}
		cfg.ChoiceCount = int(min(n, 1<<16))
	}
	if len(lb.HashPolicies) > 0 && !p.hashBased() {
		return Config{}, errField("LoadBalancer.HashPolicies", "set for policy %s; hash policies apply only to %q and %q", policyName(p), RingHash, Maglev)
	}
	for i, hp := range lb.HashPolicies {
		name := fmt.Sprintf("LoadBalancer.HashPolicies[%d]", i)
		switch hp.Field {
		case "", FieldHeader, FieldCookie, FieldQuery:
		default:
			return Config{}, errField(name+".Field", "unknown field %q (want %q, %q or %q)", hp.Field, FieldHeader, FieldCookie, FieldQuery)
		}
		switch {
		case hp.SourceIP && hp.Field != "":
			return Config{}, errField(name+".Field", "%q set with SourceIP; a policy hashes either the source address or a field", hp.Field)
		case hp.SourceIP && hp.FieldValue != "":
			return Config{}, errField(name+".FieldValue", "set with SourceIP")
		case hp.Field != "" && hp.FieldValue == "":
			return Config{}, errField(name+".FieldValue", "required: the %s name to hash", fieldNoun(hp.Field))
		case hp.FieldValue != "" && hp.Field == "":
			return Config{}, errField(name+".Field", "required with FieldValue %q", hp.FieldValue)
		case !hp.SourceIP && hp.Field == "":
			return Config{}, errField(name, "empty: set Field and FieldValue, or SourceIP")
		}
		out := HashPolicy{Field: hp.Field, FieldValue: hp.FieldValue, SourceIP: hp.SourceIP, Terminal: hp.Terminal}
		if cc := hp.CookieConfig; cc != nil {
			if hp.Field != FieldCookie {
				return Config{}, errField(name+".CookieConfig", "set for field %q; it applies only to %q", hp.Field, FieldCookie)
			}
			if cc.Session && cc.TTL != 0 {
				return Config{}, errField(name+".CookieConfig.TTL", "set with Session; a session cookie has no TTL")
			}
			if cc.TTL < 0 {
				return Config{}, errField(name+".CookieConfig.TTL", "negative (%s)", cc.TTL)
			}
			out.Cookie = &CookieConfig{Session: cc.Session, TTL: cc.TTL, Path: cc.Path}
		}
		cfg.HashPolicies = append(cfg.HashPolicies, out)
	}
	return cfg, nil
}

// policyName quotes p for messages, naming the empty policy.
func policyName(p Policy) string {
	if p == "" {
		return `"" (the default)`
	}
	return strconv.Quote(string(p))
}

func fieldNoun(field string) string {
	switch field {
	case FieldHeader:
		return "header"
	case FieldCookie:
		return "cookie"
	}
	return "query parameter"
}

// normalize resolves the default policy and fills and clamps the numeric
// settings, so that the pickers need no further checks.
func (c Config) normalize(def Policy) Config {
	if c.Policy == "" || !c.Policy.known() {
		c.Policy = def
	}
	if c.ChoiceCount <= 0 {
		c.ChoiceCount = DefaultChoiceCount
	}
	c.ChoiceCount = min(max(c.ChoiceCount, 2), 1<<16)
	if c.MinRingSize <= 0 {
		c.MinRingSize = DefaultMinRingSize
	}
	if c.MaxRingSize <= 0 {
		c.MaxRingSize = DefaultMaxRingSize
	}
	c.MinRingSize = min(c.MinRingSize, DefaultMaxRingSize)
	c.MaxRingSize = min(max(c.MaxRingSize, c.MinRingSize), DefaultMaxRingSize)
	return c
}

// samePicker reports whether two normalized configs build the same picker
// from the same endpoints (hash policies are read by Hash, not by pickers).
func (c Config) samePicker(d Config) bool {
	return c.Policy == d.Policy && c.ChoiceCount == d.ChoiceCount &&
		c.MinRingSize == d.MinRingSize && c.MaxRingSize == d.MaxRingSize
}
