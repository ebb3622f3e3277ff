package ratelimit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// gcraScript decides every global limit of one request in one round trip,
// atomically: KEYS are the buckets, ARGV holds each one's interval and
// tolerance in microseconds. It reads the server's clock (TIME), so
// sidecars with skewed clocks still share one timeline. It returns, per
// key, max(TAT, now) + interval - now; the request is admitted, and every
// TAT moved on, only if each of them is within its tolerance. Keys expire
// when their bucket is full again. Numbers are written with %d: Lua's
// default formatting would round microsecond timestamps.
const gcraScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
local admit = true
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2*i-1])
  local tolerance = tonumber(ARGV[2*i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local diff = tat + interval - now
  out[i] = diff
  if diff > tolerance then admit = false end
end
if admit then
  for i = 1, #KEYS do
    redis.call('SET', KEYS[i], string.format('%d', now + out[i]), 'PX', string.format('%d', math.floor(out[i] / 1000) + 1))
  end
end
return out
`

// Redis is a Redis server shared by the global limits of a listener's
// routes. It is safe for concurrent use; Close it when the listener
// stops.
type Redis struct {
	client  *redis.Client
	script  *redis.Script
	prefix  string
	timeout time.Duration
	failure string
	once    sync.Once
	err     error
}

// NewRedis validates cfg and builds a client. It does not connect:
// connections are made on demand, and a Redis that is down when the
// listener starts is handled like one that fails later (FailureMode).
func NewRedis(cfg RedisConfig) (*Redis, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultRedisTimeout
	}
	pool := cfg.PoolSize
	if pool == 0 {
		pool = DefaultRedisPoolSize
	}
	opt := &redis.Options{
		Addr:                  cfg.Address,
		Username:              cfg.Username,
		Password:              cfg.Password,
		DB:                    cfg.DB,
		Protocol:              2,
		DialTimeout:           timeout,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		PoolTimeout:           timeout,
		ContextTimeoutEnabled: true,
		PoolSize:              pool,
		// A retry would be a second round trip past the timeout; the
		// failure mode answers instead.
		MaxRetries:               -1,
		DialerRetries:            1,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	if strings.HasPrefix(cfg.Address, "/") {
		opt.Network = "unix"
	}
	if cfg.TLS != nil {
		tc, err := tlsConfig(cfg.TLS, cfg.Address)
		if err != nil {
			return nil, err
		}
		opt.TLSConfig = tc
	}
	prefix := cfg.KeyPrefix
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	failure := cfg.FailureMode
	if failure == "" {
		failure = FailLocal
	}
	return &Redis{
		client:  redis.NewClient(opt),
		script:  redis.NewScript(gcraScript),
		prefix:  prefix,
		timeout: timeout,
		failure: failure,
	}, nil
}

func tlsConfig(c *RedisTLS, addr string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if tc.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			tc.ServerName = host
		}
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ratelimit: redis tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ratelimit: redis tls.ca_file %s: no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("ratelimit: redis tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Close closes the connections. It is idempotent; decisions after Close
// fail and take the failure mode.
func (r *Redis) Close() error {
	r.once.Do(func() { r.err = r.client.Close() })
	return r.err
}

// take runs the script: one EVALSHA (an EVAL the first time a server has
// not seen the script). args holds an interval and a tolerance per key.
func (r *Redis) take(keys []string, args []any) ([]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	res, err := r.script.Run(ctx, r.client, keys, args...).Int64Slice()
	if err == nil && len(res) != len(keys) {
		err = fmt.Errorf("script returned %d values for %d keys", len(res), len(keys))
	}
	return res, err
}

// Kinds of Redis failure, a metric label.
const (
	errTimeout    = "timeout"
	errReply      = "reply"
	errConnection = "connection"
)

func errKind(err error) string {
	var re redis.Error
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, redis.ErrPoolTimeout),
		errors.As(err, &ne) && ne.Timeout():
		return errTimeout
	case errors.As(err, &re):
		return errReply
	}
	return errConnection
}
