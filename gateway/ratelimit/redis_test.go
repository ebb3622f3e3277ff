package ratelimit

import (
	"bufio"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrider-mesh/outrider/gateway/clientip"
	"github.com/outrider-mesh/outrider/gateway/reqinfo"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/outrider-mesh/outrider/internal/testutil/redistest"
)

// startRedis runs a private redis-server for the test (see redistest).
func startRedis(t testing.TB) string { return redistest.Start(t) }

func newRedis(t testing.TB, cfg RedisConfig) *Redis {
	t.Helper()
	r, err := NewRedis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func adminClient(t testing.TB, sock string) *redis.Client {
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: sock})
	t.Cleanup(func() { c.Close() })
	return c
}

var globalLimit = Limit{Name: "api", Requests: 1, Period: time.Hour, Burst: 30, Scope: "global", Key: Key{Header: "X-Api-Key"}}

// Two sidecars sharing one Redis admit, together, no more than the limit.
func TestGlobalTwoSidecars(t *testing.T) {
	sock := startRedis(t)
	cfg := Config{Limits: []Limit{globalLimit}}
	a := mustNew(t, cfg, WithRedis(newRedis(t, RedisConfig{Address: sock, Timeout: 2 * time.Second})))
	b := mustNew(t, cfg, WithRedis(newRedis(t, RedisConfig{Address: sock, Timeout: 2 * time.Second})))
	srvA, hitsA := serve(t, a)
	srvB, hitsB := serve(t, b)
	counts := blast(t, []string{srvA.URL, srvB.URL}, 300, "X-Api-Key", "k")
	if counts[200] != 30 || counts[429] != 270 || hitsA.hits.Load()+hitsB.hits.Load() != 30 {
		t.Fatalf("statuses %v, backend hits %d+%d; want 30 admitted in total", counts, hitsA.hits.Load(), hitsB.hits.Load())
	}
	if hitsA.hits.Load() == 0 || hitsB.hits.Load() == 0 {
		t.Logf("one sidecar admitted everything (%d/%d)", hitsA.hits.Load(), hitsB.hits.Load())
	}
	// Another key is counted separately.
	if r := get(t, srvB.Client(), srvB.URL, "X-Api-Key", "other"); r.StatusCode != 200 {
		t.Errorf("other key: %d", r.StatusCode)
	}
	// The 429 carries the headers.
	r := get(t, srvA.Client(), srvA.URL, "X-Api-Key", "k")
	if r.StatusCode != 429 || r.Header.Get("Retry-After") == "" || !strings.HasPrefix(r.Header.Get("RateLimit"), `"api";r=0;t=`) {
		t.Errorf("429 headers: %v", r.Header)
	}
}

// One decision is one round trip: the client sends one command (EVALSHA)
// per request, and the server counts one EVALSHA per request.
func TestGlobalOneRoundTrip(t *testing.T) {
	sock := startRedis(t)
	rd := newRedis(t, RedisConfig{Address: sock, Timeout: 2 * time.Second})
	var cmds atomic.Int64
	rd.client.AddHook(countHook{&cmds})
	lim := mustNew(t, Config{Limits: []Limit{
		globalLimit,
		{Name: "route", Requests: 1000, Period: time.Second, Scope: "global"}, // same round trip
	}}, WithRedis(rd))
	srv, _ := serve(t, lim)
	get(t, srv.Client(), srv.URL, "X-Api-Key", "warm") // loads the script (EVALSHA, then EVAL)
	admin := adminClient(t, sock)
	if err := admin.ConfigResetStat(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	cmds.Store(0)
	const n = 50
	for i := range n {
		get(t, srv.Client(), srv.URL, "X-Api-Key", "k"+strconv.Itoa(i%3))
	}
	if got := cmds.Load(); got != n {
		t.Errorf("client sent %d commands for %d decisions", got, n)
	}
	stats := commandStats(t, admin)
	if stats["evalsha"] != n || stats["eval"] != 0 {
		t.Errorf("server counted evalsha=%d eval=%d for %d decisions (%v)", stats["evalsha"], stats["eval"], n, stats)
	}
	// Keys carry TTLs: "k0" took 17 tokens of one hour each, so its key
	// expires when the bucket is full again, within burst*interval = 30h.
	ttl, err := admin.PTTL(context.Background(), lim.global[0].redisPrefix+keyHash("k0")).Result()
	if err != nil || ttl <= 0 || ttl > 30*time.Hour {
		t.Errorf("PTTL of a bucket: %v %v, want a positive TTL within 30h", ttl, err)
	}
	keys, _ := admin.Keys(context.Background(), "*").Result()
	for _, k := range keys {
		if !strings.HasPrefix(k, DefaultKeyPrefix) {
			t.Errorf("key %q outside the prefix", k)
		}
		if strings.Contains(k, "k0") || strings.Contains(k, "warm") {
			t.Errorf("key %q holds the raw key value", k)
		}
	}
}

func keyHash(s string) string {
	l := &limit{kind: keyHeader, header: "X-Api-Key"}
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Api-Key", s)
	k, _ := l.redisKey(req, &reqinfo.Info{}, clientip.Resolver{})
	return k
}

type countHook struct{ n *atomic.Int64 }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(int64(len(cmds))); return next(ctx, cmds) }
}

func commandStats(t *testing.T, c *redis.Client) map[string]int {
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		name, rest, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
		out[name] = n
	}
	return out
}

// Redis down, silent, slow, answering errors or not Redis at all: the
// failure mode decides, each failure is counted, and the log is rate
// limited.
func TestRedisFailures(t *testing.T) {
	sock := startRedis(t)
	admin := adminClient(t, sock)
	servers := map[string]func(t *testing.T) string{
		"down":      func(t *testing.T) string { return filepath.Join(t.TempDir(), "none.sock") },
		"silent":    silentServer,
		"not redis": garbageServer,
		"script error": func(t *testing.T) string {
			// A bucket key holding a hash: the script's GET fails (WRONGTYPE).
			if err := admin.HSet(context.Background(), DefaultKeyPrefix+"api:"+keyHash("k"), "x", "y").Err(); err != nil {
				t.Fatal(err)
			}
			return sock
		},
		"slow": func(t *testing.T) string {
			// DEBUG SLEEP blocks the server past the 50ms timeout.
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); admin.Do(context.Background(), "DEBUG", "SLEEP", "1") }()
			t.Cleanup(wg.Wait)
			time.Sleep(50 * time.Millisecond) // let the sleep start first
			return sock
		},
	}
	wantKind := map[string]string{"down": "connection", "silent": "timeout", "not redis": "connection", "script error": "reply", "slow": "timeout"}
	for name, start := range servers {
		for _, mode := range []string{FailOpen, FailClosed, FailLocal} {
			t.Run(name+"/"+mode, func(t *testing.T) {
				if name == "slow" && mode != FailLocal {
					t.Skip("one DEBUG SLEEP run is enough")
				}
				addr := start(t)
				cfg := RedisConfig{Address: addr, FailureMode: mode}
				if wantKind[name] != "timeout" {
					// Only the timeout cases rely on the 50ms default; the
					// others must not time out on a loaded machine.
					cfg.Timeout = 5 * time.Second
				}
				rd := newRedis(t, cfg)
				reg := prometheus.NewRegistry()
				m := NewMetrics(reg)
				logs := &countHandler{}
				lim, err := New(Config{Limits: []Limit{{Name: "api", Requests: 1, Period: time.Hour, Burst: 2, Scope: "global", Key: Key{Header: "X-Api-Key"}}}},
					WithRedis(rd), WithMetrics(m, "r"), WithLogger(slog.New(logs)))
				if err != nil {
					t.Fatal(err)
				}
				b := &backend{}
				h := sidecar(lim.Wrap(b))
				const n = 4
				var codes []int
				for range n {
					rec := httptest.NewRecorder()
					req := httptest.NewRequest("GET", "/", nil)
					req.Header.Set("X-Api-Key", "k")
					h.ServeHTTP(rec, req)
					codes = append(codes, rec.Code)
				}
				want := map[string]string{
					FailOpen:   "[200 200 200 200]",
					FailClosed: "[429 429 429 429]",
					FailLocal:  "[200 200 429 429]", // this sidecar's own bucket, burst 2
				}[mode]
				if got := strconvInts(codes); got != want {
					t.Errorf("statuses %s, want %s", got, want)
				}
				if got := testutil.ToFloat64(m.redisErrors.WithLabelValues("r", wantKind[name])); got != n {
					t.Errorf("redis_errors{kind=%s} = %v, want %d", wantKind[name], got, n)
				}
				outcomes := map[string][]string{
					FailOpen:   {"fallback_open"},
					FailClosed: {"fallback_closed"},
					FailLocal:  {"fallback_local_admitted", "fallback_local_limited"},
				}[mode]
				for _, o := range outcomes {
					if got := testutil.ToFloat64(m.decisions.WithLabelValues("r", o)); got != float64(n/len(outcomes)) {
						t.Errorf("decisions{outcome=%s} = %v", o, got)
					}
				}
				if logs.n.Load() != 1 {
					t.Errorf("%d warnings for %d failures, want 1 (rate limited)", logs.n.Load(), n)
				}
			})
		}
	}
}

func strconvInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return "[" + strings.Join(s, " ") + "]"
}

type countHandler struct{ n atomic.Int64 }

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(context.Context, slog.Record) error {
	h.n.Add(1)
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }

// A closed Redis fails like an unreachable one; Close is idempotent.
func TestRedisClose(t *testing.T) {
	sock := startRedis(t)
	rd := newRedis(t, RedisConfig{Address: sock, FailureMode: FailClosed})
	lim := mustNew(t, Config{Limits: []Limit{globalLimit}}, WithRedis(rd))
	if err := rd.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rd.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	rec := httptest.NewRecorder()
	lim.Wrap(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 429 {
		t.Fatalf("after Close, closed mode: %d", rec.Code)
	}
}
