package ratelimit

import (
	"strings"
	"testing"
	"time"

	"github.com/outrider-mesh/outrider/internal/confval"
)

func TestValidate(t *testing.T) {
	ok := Limit{Requests: 10, Period: time.Second}
	tests := []struct {
		name string
		cfg  Config
		want []string // "path: message fragment"
	}{
		{"zero", Config{}, nil},
		{"minimal", Config{Limits: []Limit{ok}}, nil},
		{"full", Config{Limits: []Limit{{Name: "per-key", Requests: 5, Period: time.Minute, Burst: 20,
			Key: Key{Header: "X-API-Key"}, Scope: "global", MissingKey: "reject", MaxKeys: 10}}}, nil},
		{"missing numbers", Config{Limits: []Limit{{}}}, []string{
			"limits[0].requests: must be at least 1", "limits[0].period: required"}},
		{"negatives", Config{Limits: []Limit{{Requests: 1, Period: time.Second, Burst: -1, MaxKeys: -1}}}, []string{
			"limits[0].burst: must not be negative", "limits[0].max_keys: must not be negative"}},
		{"too fine", Config{Limits: []Limit{{Requests: 10, Period: 5}}}, []string{
			"limits[0].requests: 10 per 5ns"}},
		{"too fine for redis", Config{Limits: []Limit{{Name: "g", Scope: "global", Requests: 1000, Period: time.Microsecond * 999}}}, []string{
			"limits[0].requests: 1000 per 999µs"}},
		{"enums", Config{Limits: []Limit{{Requests: 1, Period: time.Second, Scope: "cluster", MissingKey: "allow"}}}, []string{
			`limits[0].scope: "cluster"`, `limits[0].missing_key: "allow"`}},
		{"two keys", Config{Limits: []Limit{{Requests: 1, Period: time.Second, Key: Key{Peer: true, Header: "X"}}}}, []string{
			"limits[0].key: set only one"}},
		{"bad header", Config{Limits: []Limit{{Requests: 1, Period: time.Second, Key: Key{Header: "X Key"}}}}, []string{
			`limits[0].key.header: "X Key" is not a header name`}},
		{"bad claim", Config{Limits: []Limit{{Requests: 1, Period: time.Second, Key: Key{JWTClaim: "org..id"}}}}, []string{
			"limits[0].key.jwt_claim: \"org..id\": empty name"}},
		{"global needs name", Config{Limits: []Limit{{Requests: 1, Period: time.Second, Scope: "global"}}}, []string{
			"limits[0].name: required for a global limit"}},
		{"bad name", Config{Limits: []Limit{{Name: `a"b`, Requests: 1, Period: time.Second}}}, []string{
			`limits[0].name: "a\"b": want at most 64`}},
		{"duplicate names", Config{Limits: []Limit{ok, {Name: "limit0", Requests: 1, Period: time.Second}}}, []string{
			`limits[1].name: "limit0" is also the name of limits[0]`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			fields := confval.Fields(err)
			if len(fields) != len(tt.want) {
				t.Fatalf("got %d errors %v, want %d: %q", len(fields), err, len(tt.want), tt.want)
			}
			for i, f := range fields {
				if !strings.HasPrefix(f.Error(), tt.want[i]) {
					t.Errorf("error %d = %q, want prefix %q", i, f.Error(), tt.want[i])
				}
			}
			if _, nerr := New(tt.cfg, WithRedis(&Redis{})); (nerr != nil) != (err != nil) {
				t.Errorf("New error %v, Validate %v", nerr, err)
			}
		})
	}
}

func TestRedisConfigValidate(t *testing.T) {
	err := RedisConfig{DB: -1, Timeout: -1, PoolSize: -1, FailureMode: "maybe", TLS: &RedisTLS{CertFile: "c.pem"}}.Validate()
	want := []string{"address: required", "db: must not", "timeout: must not", "pool_size: must not",
		`failure_mode: "maybe"`, "tls: set both"}
	fields := confval.Fields(err)
	if len(fields) != len(want) {
		t.Fatalf("got %v, want %q", err, want)
	}
	for i, f := range fields {
		if !strings.HasPrefix(f.Error(), want[i]) {
			t.Errorf("error %d = %q, want prefix %q", i, f, want[i])
		}
	}
	if err := (RedisConfig{Address: "127.0.0.1:6379", FailureMode: "closed"}).Validate(); err != nil {
		t.Error(err)
	}
	if _, err := NewRedis(RedisConfig{}); err == nil {
		t.Error("NewRedis accepted an empty address")
	}
}

func TestGCRA(t *testing.T) {
	// 2 per second (interval 500ms), burst 3.
	g := gcra{interval: int64(500 * time.Millisecond), tolerance: 3 * int64(500*time.Millisecond)}
	var b bucket
	ms := func(n int64) int64 { return n * int64(time.Millisecond) }
	steps := []struct {
		at        int64
		ok        bool
		remaining int64
		wait      int64
	}{
		{0, true, 2, 0},
		{0, true, 1, 0},
		{0, true, 0, 0},
		{0, false, 0, ms(500)},
		{ms(499), false, 0, ms(1)},
		{ms(500), true, 0, 0},
		{ms(500), false, 0, ms(500)},
		{ms(5000), true, 2, 0}, // idle long enough: full again, never above burst
		{ms(5000), true, 1, 0},
	}
	for i, s := range steps {
		v := b.take(g, s.at)
		if v.ok != s.ok || v.remaining != s.remaining || v.wait != s.wait {
			t.Errorf("step %d at %dms: got ok=%v remaining=%d wait=%v, want %v %d %v",
				i, s.at/int64(time.Millisecond), v.ok, v.remaining, time.Duration(v.wait), s.ok, s.remaining, time.Duration(s.wait))
		}
	}
}

// A flood of distinct keys never grows the table past max_keys; buckets
// still limiting are kept (so their keys stay limited) and new keys share
// the overflow bucket; once buckets are full again they are swept.
func TestTableBounded(t *testing.T) {
	g := gcra{interval: int64(time.Second), tolerance: int64(time.Second)}
	tb := newTable(g, 1000)
	for i := range uint64(100_000) {
		tb.take(i*0x9E3779B97F4A7C15, 0)
	}
	if n := tb.len(); n > 1000 || n < 900 {
		t.Fatalf("table holds %d keys, want at most 1000 (and nearly full)", n)
	}
	// A key admitted before the flood is still tracked and still limited.
	if v := tb.take(0, 0); v.ok || v.overflow {
		t.Fatalf("first key after the flood: %+v, want limited by its own bucket", v)
	}
	// New keys overflow into one shared bucket: at most burst of them pass.
	admitted := 0
	for i := range uint64(1000) {
		v := tb.take(1e15+i, 0)
		if !v.overflow {
			t.Fatalf("new key %d did not overflow", i)
		}
		if v.ok {
			admitted++
		}
	}
	if admitted != 0 { // the flood already drained the overflow bucket
		t.Fatalf("%d overflow keys admitted, want 0", admitted)
	}
	// Two seconds later every bucket is full: new keys take the freed slots.
	now := int64(2 * time.Second)
	for i := range uint64(100_000) {
		if v := tb.take(2e15+i, now); v.ok == false && !v.overflow {
			t.Fatalf("new key %d limited in its own bucket", i)
		}
	}
	if n := tb.len(); n > 1000 {
		t.Fatalf("table holds %d keys after the second flood, want at most 1000", n)
	}
}

func TestSmallTable(t *testing.T) {
	tb := newTable(gcra{interval: 1, tolerance: 1}, 1)
	if len(tb.shards) != 1 || tb.perShard != 1 {
		t.Fatalf("shards %d perShard %d", len(tb.shards), tb.perShard)
	}
}
