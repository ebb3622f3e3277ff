package aggregate

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/outrider-mesh/outrider/internal/confval"
)

func homeConfig(failure string, parts ...Part) Config {
	return Config{Endpoints: []Endpoint{{Path: "/composite/home", Failure: failure, Parts: parts}}}
}

func TestMergeAndPassThrough(t *testing.T) {
	m := newMesh(t)
	m.backend("users", jsonHandler(`{"id":7,"name":"ada"}`))
	m.backend("orders", jsonHandler(`[1,2]`))
	srv := m.front(homeConfig("", one("user", "users", "/users/7"), one("orders", "orders", "/orders")))

	a := get(t, srv, "/composite/home")
	if a.status != 200 || a.body != `{"user":{"id":7,"name":"ada"},"orders":[1,2]}`+"\n" {
		t.Fatalf("got %d %q", a.status, a.body)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if c := a.header.Get(CompletedHeader); c != "true" {
		t.Errorf("%s %q", CompletedHeader, c)
	}

	// Other paths, and the composite path with another suffix, go to next.
	for _, target := range []string{"/other?x=1", "/composite/home/x", "/composite"} {
		a := get(t, srv, target)
		if a.body != "next GET "+target || a.header.Get("X-Next") != "1" {
			t.Errorf("%s: got %d %q, want next", target, a.status, a.body)
		}
	}
	if a := do(t, srv, http.MethodPost, "/other", nil); a.body != "next POST /other" {
		t.Errorf("POST /other: %q", a.body)
	}
}

func TestMethods(t *testing.T) {
	m := newMesh(t)
	var hits atomic.Int32
	m.backend("users", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		jsonHandler(`{}`)(w, r)
	})
	srv := m.front(homeConfig("", one("user", "users", "/u")))
	a := do(t, srv, http.MethodPost, "/composite/home", nil)
	if a.status != 405 || a.header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST: %d Allow=%q", a.status, a.header.Get("Allow"))
	}
	if hits.Load() != 0 {
		t.Fatal("a refused method called the part")
	}
	if a := do(t, srv, http.MethodHead, "/composite/home", nil); a.status != 200 || a.body != "" {
		t.Fatalf("HEAD: %d %q", a.status, a.body)
	}

	srv = m.front(Config{Endpoints: []Endpoint{{Path: "/c", Methods: []string{"POST"}, Parts: []Part{one("user", "users", "/u")}}}})
	if a := do(t, srv, http.MethodPost, "/c", nil); a.status != 200 {
		t.Fatalf("POST on a POST endpoint: %d %s", a.status, a.body)
	}
	if a := get(t, srv, "/c"); a.status != 405 || a.header.Get("Allow") != "POST" {
		t.Fatalf("GET on a POST endpoint: %d Allow=%q", a.status, a.header.Get("Allow"))
	}
}

// TestPartsRunConcurrently proves the parts are called at the same time:
// each backend holds its answer until all three have been called, so a
// sequential aggregator would never get past the first.
func TestPartsRunConcurrently(t *testing.T) {
	m := newMesh(t)
	var arrived sync.WaitGroup
	arrived.Add(3)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	barrier := func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		select {
		case <-all:
			jsonHandler(`"ok"`)(w, r)
		case <-time.After(5 * time.Second):
			http.Error(w, "the other parts never arrived", 500)
		}
	}
	m.backend("a", barrier)
	m.backend("b", barrier)
	m.backend("c", barrier)
	srv := m.front(homeConfig("", one("a", "a", "/"), one("b", "b", "/"), one("c", "c", "/")))
	a := get(t, srv, "/composite/home")
	if a.status != 200 || a.body != `{"a":"ok","b":"ok","c":"ok"}`+"\n" {
		t.Fatalf("got %d %q", a.status, a.body)
	}
}

func TestSequentialDependency(t *testing.T) {
	m := newMesh(t)
	var userDone atomic.Bool
	m.backend("users", func(w http.ResponseWriter, r *http.Request) {
		userDone.Store(true)
		jsonHandler(`{"profile":{"id":42,"tags":["x","vip"]},"ok":true}`)(w, r)
	})
	var got atomic.Value
	m.backend("orders", func(w http.ResponseWriter, r *http.Request) {
		if !userDone.Load() {
			http.Error(w, "called before its dependency answered", 500)
			return
		}
		got.Store(r.RequestURI)
		jsonHandler(`{"n":3}`)(w, r)
	})
	srv := m.front(homeConfig("",
		Part{Name: "orders", Upstream: "orders", After: []string{"user"},
			Path: "/orders/{parts.user.body.profile.id}/{parts.user.body.profile.tags.1}?ok={parts.user.body.ok}&q={query.q}"},
		one("user", "users", "/users/{header.X-User}")))
	a := do(t, srv, "GET", "/composite/home?q=a+b%26c", http.Header{"X-User": {"u1"}})
	if a.status != 200 || a.body != `{"orders":{"n":3},"user":{"profile":{"id":42,"tags":["x","vip"]},"ok":true}}`+"\n" {
		t.Fatalf("got %d %q", a.status, a.body)
	}
	if uri := got.Load(); uri != "/orders/42/vip?ok=true&q=a+b%26c" {
		t.Fatalf("orders called with %q", uri)
	}
}

// TestTemplateInjection sends values with path and header syntax through
// the placeholders: each either fails the part with 400 before any call,
// or arrives as exactly one escaped segment / query value.
func TestTemplateInjection(t *testing.T) {
	m := newMesh(t)
	type seen struct {
		raw, seg, q string
		injected    bool
	}
	var last atomic.Value
	var hits atomic.Int32
	m.backend("users", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		segs := strings.Split(r.URL.EscapedPath(), "/")
		s := seen{raw: r.RequestURI, q: r.URL.Query().Get("v"), injected: r.Header.Get("X-Injected") != ""}
		if len(segs) == 4 && segs[1] == "users" && segs[3] == "profile" {
			s.seg, _ = url.PathUnescape(segs[2])
		} else {
			s.seg = "<structure changed: " + r.URL.EscapedPath() + ">"
		}
		last.Store(s)
		jsonHandler(`{}`)(w, r)
	})
	srv := m.front(homeConfig("", one("user", "users", "/users/{header.X-Id}/profile?v={header.X-Id}")))
	cases := []struct {
		value string
		want  int
	}{
		{"plain", 200},
		{"../admin", 200},
		{"a/b", 200},
		{"a?b=c", 200},
		{"a#frag", 200},
		{"100%", 200},
		{"%2e%2e", 200}, // arrives as the literal text %2e%2e, escaped
		{"a b", 200},
		{"..", 400},
		{".", 400},
		{"", 400},
	}
	for _, c := range cases {
		t.Run(c.value, func(t *testing.T) {
			before := hits.Load()
			a := do(t, srv, "GET", "/composite/home", http.Header{"X-Id": {c.value}})
			if a.status != c.want {
				t.Fatalf("status %d, want %d (%s)", a.status, c.want, a.body)
			}
			if c.want != 200 {
				if hits.Load() != before {
					t.Fatal("a bad value still made a call")
				}
				if !strings.Contains(a.body, `"part":"user"`) {
					t.Fatalf("error does not name the part: %s", a.body)
				}
				return
			}
			s := last.Load().(seen)
			if s.seg != c.value || s.q != c.value || s.injected {
				t.Fatalf("value %q arrived as segment %q, query %q (%s)", c.value, s.seg, s.q, s.raw)
			}
		})
	}

	// CR/LF cannot come in through a header, but can through an earlier
	// part's answer: it is escaped, never a header line.
	m.backend("evil", jsonHandler(`{"id":"x\r\nX-Injected: 1\r\n\r\nGET /admin","dots":".."}`))
	srv = m.front(homeConfig("partial",
		one("evil", "evil", "/"),
		Part{Name: "user", Upstream: "users", After: []string{"evil"}, Path: "/users/{parts.evil.body.id}/profile?v={parts.evil.body.id}"},
		Part{Name: "dots", Upstream: "users", After: []string{"evil"}, Path: "/users/{parts.evil.body.dots}/profile"}))
	a := get(t, srv, "/composite/home")
	s := last.Load().(seen)
	if s.seg != "x\r\nX-Injected: 1\r\n\r\nGET /admin" || s.injected {
		t.Fatalf("CR/LF value arrived as %q (%s), injected=%v", s.seg, s.raw, s.injected)
	}
	if st, msg := partStatus(t, decode(t, a), "dots"); st != 502 || !strings.Contains(msg, ". or ..") {
		t.Fatalf("dots from an answer: %d %q", st, msg)
	}
}

func TestHangingPartIsBoundedByItsTimeout(t *testing.T) {
	for _, mode := range []string{"network", "handler ignoring its context"} {
		t.Run(mode, func(t *testing.T) {
			m := newMesh(t)
			release := make(chan struct{})
			m.backend("fast", jsonHandler(`{"ok":1}`))
			if mode == "network" {
				m.backend("slow", func(w http.ResponseWriter, r *http.Request) {
					select {
					case <-release:
					case <-r.Context().Done():
					}
				})
			} else {
				// The worst upstream handler: it answers only when the test
				// lets it, after the composite answer was received.
				m.handler("slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					<-release
					jsonHandler(`{"late":true}`)(w, r)
				}))
			}
			slow := Part{Name: "slow", Upstream: "slow", Path: "/", Timeout: 50 * time.Millisecond}
			whole := m.front(homeConfig("whole", one("fast", "fast", "/"), slow))
			partial := m.front(homeConfig("partial", one("fast", "fast", "/"), slow))

			// Whole mode: 504 naming the part. The slow handler is still
			// blocked (release is closed only after both answers), so the
			// answer cannot have waited for it.
			start := time.Now()
			a := get(t, whole, "/composite/home")
			if a.status != 504 || !strings.Contains(a.body, `"part":"slow"`) || !strings.Contains(a.body, "timeout") {
				t.Fatalf("whole: %d %s", a.status, a.body)
			}
			b := get(t, partial, "/composite/home")
			elapsed := time.Since(start)
			close(release)
			if b.status != 200 || b.header.Get(CompletedHeader) != "false" {
				t.Fatalf("partial: %d %s", b.status, b.body)
			}
			v := decode(t, b)
			if _, ok := v["slow"]; ok {
				t.Fatal("timed-out part present in the answer")
			}
			if st, msg := partStatus(t, v, "slow"); st != 504 || msg != "timeout" {
				t.Fatalf("slow status %d %q", st, msg)
			}
			if st, _ := partStatus(t, v, "fast"); st != 200 {
				t.Fatalf("fast status %d", st)
			}
			// Not a latency measurement: a bound 40 times the timeouts,
			// only to show the answers did not wait for a hung part.
			if elapsed > 4*time.Second {
				t.Fatalf("answers took %s with 50ms part timeouts", elapsed)
			}
		})
	}
}

func TestEndpointTimeoutBoundsSequentialParts(t *testing.T) {
	m := newMesh(t)
	m.backend("a", jsonHandler(`{"id":1}`))
	m.backend("hang", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	cfg := Config{Endpoints: []Endpoint{{Path: "/c", Timeout: 80 * time.Millisecond, Parts: []Part{
		one("a", "a", "/"),
		{Name: "b", Upstream: "hang", Path: "/{parts.a.body.id}", After: []string{"a"}},
	}}}}
	a := get(t, m.front(cfg), "/c")
	if a.status != 504 || !strings.Contains(a.body, `"part":"b"`) {
		t.Fatalf("got %d %s", a.status, a.body)
	}
}

func TestBadPartAnswers(t *testing.T) {
	big := strings.Repeat("x", 300<<10)
	cases := []struct {
		name    string
		h       http.HandlerFunc
		status  int // of the part, and of the whole answer
		message string
	}{
		{"html", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html>oops</html>")
		}, 502, "text/html, not JSON"},
		{"invalid JSON labelled JSON", jsonHandler(`{"a":`), 502, "not valid JSON"},
		{"empty 200", func(w http.ResponseWriter, r *http.Request) {}, 502, "not valid JSON"},
		{"5xx", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(503)
			io.WriteString(w, `{"error":"down"}`)
		}, 502, "upstream answered 503"},
		{"404", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, 502, "upstream answered 404"},
		{"huge with length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `"`+big+`"`)
		}, 502, "larger than max_part_bytes"},
		{"huge streamed", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `"`)
			for range 40 {
				io.WriteString(w, big[:32<<10])
				w.(http.Flusher).Flush()
			}
			io.WriteString(w, `"`)
		}, 502, "larger than max_part_bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newMesh(t)
			m.backend("good", jsonHandler(`{"ok":true}`))
			m.backend("bad", c.h)
			ep := Endpoint{Path: "/c", MaxPartBytes: 64 << 10, Parts: []Part{one("good", "good", "/"), one("bad", "bad", "/")}}
			whole := m.front(Config{Endpoints: []Endpoint{ep}})
			a := get(t, whole, "/c")
			if a.status != c.status || !strings.Contains(a.body, c.message) || !strings.Contains(a.body, `"part":"bad"`) {
				t.Fatalf("whole: %d %s", a.status, a.body)
			}
			ep.Failure = "partial"
			b := get(t, m.front(Config{Endpoints: []Endpoint{ep}}), "/c")
			v := decode(t, b)
			if b.status != 200 || v["good"] == nil || v["bad"] != nil {
				t.Fatalf("partial: %d %s", b.status, b.body)
			}
			if st, msg := partStatus(t, v, "bad"); st != c.status || !strings.Contains(msg, c.message) {
				t.Fatalf("partial status %d %q", st, msg)
			}
		})
	}
}

func TestUpstreamStatusInParts(t *testing.T) {
	m := newMesh(t)
	m.backend("good", jsonHandler(`1`))
	m.backend("down", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	a := get(t, m.front(homeConfig("partial", one("good", "good", "/"), one("down", "down", "/"))), "/composite/home")
	want := `{"good":1,"_parts":{"good":{"status":200},"down":{"status":502,"error":"upstream answered 500","upstream_status":500}}}` + "\n"
	if a.body != want {
		t.Fatalf("got %s\nwant %s", a.body, want)
	}
}

func TestMissingDependencyField(t *testing.T) {
	m := newMesh(t)
	m.backend("users", jsonHandler(`{"name":"ada","obj":{"k":1}}`))
	var calls atomic.Int32
	m.backend("orders", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		jsonHandler(`[]`)(w, r)
	})
	for _, field := range []string{"id", "name.first", "obj", "obj.k.x"} {
		t.Run(field, func(t *testing.T) {
			parts := []Part{one("user", "users", "/"), {Name: "orders", Upstream: "orders", After: []string{"user"},
				Path: "/orders/{parts.user.body." + field + "}"}}
			a := get(t, m.front(homeConfig("", parts...)), "/composite/home")
			if a.status != 502 || !strings.Contains(a.body, `"part":"orders"`) || !strings.Contains(a.body, `part \"user\"`) {
				t.Fatalf("whole: %d %s", a.status, a.body)
			}
			b := get(t, m.front(homeConfig("partial", parts...)), "/composite/home")
			v := decode(t, b)
			if b.status != 200 || v["user"] == nil {
				t.Fatalf("partial: %d %s", b.status, b.body)
			}
			if st, _ := partStatus(t, v, "orders"); st != 502 {
				t.Fatalf("orders status %d", st)
			}
			if calls.Load() != 0 {
				t.Fatalf("orders was called %d times without its field", calls.Load())
			}
		})
	}
}

func TestFailedDependencySkipsDependents(t *testing.T) {
	m := newMesh(t)
	m.backend("ok", jsonHandler(`{"id":1}`))
	m.backend("down", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(502) })
	var calls atomic.Int32
	m.backend("orders", func(w http.ResponseWriter, r *http.Request) { calls.Add(1); jsonHandler(`1`)(w, r) })
	a := get(t, m.front(homeConfig("partial",
		one("other", "ok", "/"),
		one("user", "down", "/"),
		Part{Name: "orders", Upstream: "orders", After: []string{"user"}, Path: "/o"},
		Part{Name: "items", Upstream: "orders", After: []string{"orders"}, Path: "/i"},
	)), "/composite/home")
	v := decode(t, a)
	for _, name := range []string{"orders", "items"} {
		if st, msg := partStatus(t, v, name); st != 424 || !strings.Contains(msg, "failed") {
			t.Errorf("%s: %d %q", name, st, msg)
		}
	}
	if calls.Load() != 0 {
		t.Fatal("a part whose dependency failed was called")
	}
}

func TestPartialPolicy(t *testing.T) {
	m := newMesh(t)
	m.backend("ok", jsonHandler(`1`))
	m.backend("down", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	// A required part failing fails the request, with the statuses.
	a := get(t, m.front(homeConfig("partial", one("a", "ok", "/"),
		Part{Name: "b", Upstream: "down", Path: "/", Required: true})), "/composite/home")
	if a.status != 502 || !strings.Contains(a.body, `"part":"b"`) || !strings.Contains(a.body, `"_parts"`) {
		t.Fatalf("required: %d %s", a.status, a.body)
	}
	// Nothing succeeding fails the request too.
	a = get(t, m.front(homeConfig("partial", one("a", "down", "/"), one("b", "down", "/"))), "/composite/home")
	if a.status != 502 || !strings.Contains(a.body, `"part":"a"`) {
		t.Fatalf("none: %d %s", a.status, a.body)
	}
	// Everything succeeding in partial mode still gives the statuses.
	a = get(t, m.front(homeConfig("partial", one("a", "ok", "/"))), "/composite/home")
	if a.status != 200 || a.body != `{"a":1,"_parts":{"a":{"status":200}}}`+"\n" || a.header.Get(CompletedHeader) != "true" {
		t.Fatalf("all ok: %d %s", a.status, a.body)
	}
}

func TestWholeFailureCancelsOtherParts(t *testing.T) {
	m := newMesh(t)
	canceled, arrived := make(chan struct{}), make(chan struct{})
	m.backend("down", func(w http.ResponseWriter, r *http.Request) {
		// Fail only once the slow part's request has reached its
		// backend: one never sent cannot be seen canceled there.
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
		}
		w.WriteHeader(500)
	})
	m.backend("slow", func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
		close(canceled)
	})
	a := get(t, m.front(homeConfig("", one("slow", "slow", "/"), one("down", "down", "/"))), "/composite/home")
	if a.status != 502 || !strings.Contains(a.body, `"part":"down"`) {
		t.Fatalf("got %d %s", a.status, a.body)
	}
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow part was not canceled when another failed")
	}
}

func TestUnknownUpstreamAndPanics(t *testing.T) {
	m := newMesh(t)
	m.handler("panics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom") }))
	m.handler("aborts", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"a":`))
		panic(http.ErrAbortHandler)
	}))
	a := get(t, m.front(homeConfig("partial", one("x", "nowhere", "/"), one("p", "panics", "/"), one("q", "aborts", "/"))), "/composite/home")
	if a.status != 502 {
		t.Fatalf("got %d %s", a.status, a.body)
	}
	v := decode(t, a)
	for name, want := range map[string]string{"x": `no upstream "nowhere"`, "p": "upstream call failed", "q": "cut off"} {
		if st, msg := partStatus(t, v, name); st != 502 || !strings.Contains(msg, want) {
			t.Errorf("%s: %d %q", name, st, msg)
		}
	}

	_, err := New(homeConfig("", one("x", "nowhere", "/")), WithResolver(m.resolve), WithUpstreams([]string{"users", "orders"}))
	if err == nil || !strings.Contains(err.Error(), `endpoints[0].parts[0].upstream: "nowhere" is not a known upstream (known: users, orders)`) {
		t.Fatalf("New with known upstreams: %v", err)
	}
	if _, err := New(homeConfig("", one("x", "nowhere", "/"))); err == nil {
		t.Fatal("New without a resolver accepted endpoints")
	}
}

func TestInboundValuesMissing(t *testing.T) {
	m := newMesh(t)
	m.backend("users", jsonHandler(`1`))
	srv := m.front(homeConfig("", one("u", "users", "/users/{query.id}")))
	if a := get(t, srv, "/composite/home"); a.status != 400 || !strings.Contains(a.body, `query parameter \"id\" is missing`) {
		t.Fatalf("missing query: %d %s", a.status, a.body)
	}
	if a := get(t, srv, "/composite/home?id=5"); a.status != 200 {
		t.Fatalf("with query: %d %s", a.status, a.body)
	}
}

func TestForwardHeaders(t *testing.T) {
	m := newMesh(t)
	var got atomic.Value
	m.backend("users", func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Clone())
		jsonHandler(`1`)(w, r)
	})
	srv := m.front(homeConfig("", Part{Name: "u", Upstream: "users", Path: "/", ForwardHeaders: []string{"x-user", "Accept-Language"}}))
	do(t, srv, "GET", "/composite/home", http.Header{"X-User": {"a", "b"}, "Authorization": {"Bearer s"}, "Accept-Language": {"fr"}, "Cookie": {"c=1"}})
	h := got.Load().(http.Header)
	if v := h.Values("X-User"); len(v) != 2 || v[0] != "a" || v[1] != "b" {
		t.Errorf("X-User %q", v)
	}
	if h.Get("Accept-Language") != "fr" || h.Get("Accept") != "application/json" {
		t.Errorf("headers %v", h)
	}
	if h.Get("Authorization") != "" || h.Get("Cookie") != "" {
		t.Errorf("unlisted headers forwarded: %v", h)
	}
}

func TestSpans(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	tracer := tp.Tracer("test")
	m := newMesh(t)
	m.backend("users-backend", jsonHandler(`{"id":1}`))
	m.backend("down-backend", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	// The upstream handler makes its own client span from the request
	// context, as the sidecar's does per attempt.
	for _, name := range []string{"users", "down"} {
		inner, _ := m.resolve(name + "-backend")
		m.handler(name, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, span := tracer.Start(r.Context(), "client "+name, trace.WithSpanKind(trace.SpanKindClient))
			defer span.End()
			inner.ServeHTTP(w, r.WithContext(ctx))
		}))
	}
	srv := m.front(homeConfig("partial", one("user", "users", "/"),
		Part{Name: "orders", Upstream: "users", After: []string{"user"}, Path: "/{parts.user.body.id}"},
		one("bad", "down", "/")), WithTracer(tracer))
	get(t, srv, "/composite/home")

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range sr.Ended() {
		spans[s.Name()] = s
	}
	root, ok := spans["aggregate /composite/home"]
	if !ok {
		t.Fatalf("no endpoint span in %v", names(sr.Ended()))
	}
	for _, part := range []string{"user", "orders", "bad"} {
		s, ok := spans["aggregate part "+part]
		if !ok {
			t.Fatalf("no span for part %s", part)
		}
		if s.Parent().SpanID() != root.SpanContext().SpanID() {
			t.Errorf("part %s span is not a child of the endpoint span", part)
		}
		attrs := map[string]string{}
		for _, kv := range s.Attributes() {
			attrs[string(kv.Key)] = kv.Value.String()
		}
		want := map[string]string{"user": "ok", "orders": "ok", "bad": "status"}[part]
		if attrs["outrider.aggregate.outcome"] != want || attrs["outrider.upstream"] == "" || attrs["http.response.status_code"] == "" {
			t.Errorf("part %s attributes %v", part, attrs)
		}
	}
	clients := 0
	for _, s := range sr.Ended() {
		if strings.HasPrefix(s.Name(), "client ") {
			clients++
			p := s.Parent().SpanID()
			if p != spans["aggregate part user"].SpanContext().SpanID() && p != spans["aggregate part orders"].SpanContext().SpanID() &&
				p != spans["aggregate part bad"].SpanContext().SpanID() {
				t.Errorf("client span %s is not under a part span", s.Name())
			}
		}
	}
	if clients != 3 {
		t.Errorf("%d client spans, want 3", clients)
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	m := newMesh(t)
	m.backend("ok", jsonHandler(`1`))
	m.backend("down", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	srv := m.front(Config{Endpoints: []Endpoint{
		{Path: "/p", Failure: "partial", Parts: []Part{one("a", "ok", "/"), one("b", "down", "/")}},
		{Path: "/w", Parts: []Part{one("a", "ok", "/")}},
	}}, WithMetrics(metrics, "home"))
	get(t, srv, "/p")
	get(t, srv, "/w")
	get(t, srv, "/w")
	do(t, srv, "DELETE", "/w", nil)
	for outcome, want := range map[string]float64{"partial": 1, "complete": 2, "rejected": 1, "failed": 0} {
		if got := counterValue(t, metrics.requests.WithLabelValues("home", outcome)); got != want {
			t.Errorf("requests %s = %v, want %v", outcome, got, want)
		}
	}
	for outcome, want := range map[string]float64{"ok": 3, "status": 1} {
		if got := counterValue(t, metrics.parts.WithLabelValues("home", outcome)); got != want {
			t.Errorf("parts %s = %v, want %v", outcome, got, want)
		}
	}
}

func TestClientGoneCancelsParts(t *testing.T) {
	m := newMesh(t)
	canceled := make(chan struct{})
	arrived := make(chan struct{})
	m.backend("slow", func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
		close(canceled)
	})
	srv := m.front(homeConfig("", one("s", "slow", "/")))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/composite/home", nil)
	go func() { <-arrived; cancel() }()
	if res, err := srv.Client().Do(req); err == nil {
		res.Body.Close()
		t.Fatal("request not canceled")
	}
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("part not canceled when the client went away")
	}
}

func TestDefaultsApplied(t *testing.T) {
	a, err := New(homeConfig("", one("u", "x", "/")), WithResolver(func(string) (http.Handler, bool) { return nil, false }))
	if err != nil {
		t.Fatal(err)
	}
	ep := a.endpoints["/composite/home"]
	p := ep.parts[0]
	if ep.timeout != DefaultEndpointTimeout || ep.maxBytes != int64(DefaultMaxPartBytes) || ep.partial ||
		p.timeout != DefaultPartTimeout || p.method != "GET" {
		t.Fatalf("defaults: %+v %+v", ep, p)
	}
	if DefaultMaxPartBytes != confval.ByteSize(1<<20) {
		t.Fatal("default max_part_bytes")
	}
	// The zero Config passes everything through.
	z, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	if fmt.Sprintf("%p", z.Wrap(next)) != fmt.Sprintf("%p", next) {
		t.Fatal("zero Config wraps")
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
