package cache

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outrider-mesh/outrider/internal/confval"
)

func TestParseCacheControl(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want directives
	}{
		{nil, directives{maxAge: -1, sMaxAge: -1, minFresh: -1, staleWhileRevalidate: -1, staleIfError: -1}},
		{[]string{"max-age=60, s-maxage=30"}, directives{maxAge: 60, sMaxAge: 30, minFresh: -1, staleWhileRevalidate: -1, staleIfError: -1}},
		{[]string{`Max-Age="60"`, "max-age=5"}, directives{maxAge: 60, sMaxAge: -1, minFresh: -1, staleWhileRevalidate: -1, staleIfError: -1}},
		{[]string{`private="a, b", no-cache, public`}, directives{maxAge: -1, sMaxAge: -1, minFresh: -1, staleWhileRevalidate: -1, staleIfError: -1, private: true, noCache: true, public: true}},
		{[]string{"no-store,must-revalidate ,proxy-revalidate, only-if-cached"}, directives{maxAge: -1, sMaxAge: -1, minFresh: -1, staleWhileRevalidate: -1, staleIfError: -1, noStore: true, mustRevalidate: true, proxyRevalidate: true, onlyIfCache: true}},
		{[]string{"max-age=-1, stale-while-revalidate=99999999999, stale-if-error=x, min-fresh=3"}, directives{maxAge: 0, sMaxAge: -1, minFresh: 3, staleWhileRevalidate: maxDelta, staleIfError: 0}},
		{[]string{`ext="x\"y,max-age=3", max-age=7`}, directives{maxAge: 7, sMaxAge: -1, minFresh: -1, staleWhileRevalidate: -1, staleIfError: -1}},
	} {
		if got := parseCacheControl(tc.in); got != tc.want {
			t.Errorf("parseCacheControl(%q)\n got %+v\nwant %+v", tc.in, got, tc.want)
		}
	}
}

func TestKey(t *testing.T) {
	for _, tc := range []struct {
		cfg          KeyConfig
		url          string
		key, forward string
		changed      bool
	}{
		{KeyConfig{}, "http://Ex.COM/a?b=2&a=1", "http://ex.com/a?a=1&b=2", "b=2&a=1", false},
		{KeyConfig{}, "http://ex.com/a?a=2&b=1&a=1", "http://ex.com/a?a=2&a=1&b=1", "a=2&b=1&a=1", false},
		{KeyConfig{}, "http://ex.com/a?&&a=1&", "http://ex.com/a?a=1", "&&a=1&", false},
		{KeyConfig{}, "http://ex.com/%2Fa", "http://ex.com/%2Fa", "", false},
		{KeyConfig{IgnoreQueryParams: []string{"utm_source"}}, "http://ex.com/?utm_source=x&id=1&utm%5Fsource=y", "http://ex.com/?id=1", "id=1", true},
		{KeyConfig{IncludeQueryParams: []string{"id", "p"}}, "http://ex.com/?z=1&p=2&id=1", "http://ex.com/?id=1&p=2", "p=2&id=1", true},
	} {
		r, err := http.NewRequest(http.MethodGet, tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		key, fw, changed := newKeyer(tc.cfg).key(r)
		if key != tc.key || fw != tc.forward || changed != tc.changed {
			t.Errorf("%s: got (%q, %q, %v), want (%q, %q, %v)", tc.url, key, fw, changed, tc.key, tc.forward, tc.changed)
		}
	}
}

func TestInitialAge(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	for _, tc := range []struct {
		h         http.Header
		req, resp time.Time
		want      time.Duration
	}{
		{h(), t0, t0, 0},
		{h("Age", "30"), t0, t0.Add(2 * time.Second), 32 * time.Second},
		{h("Date", t0.Add(-time.Minute).Format(http.TimeFormat)), t0, t0, time.Minute},
		{h("Date", t0.Add(time.Hour).Format(http.TimeFormat), "Age", "5"), t0, t0, 5 * time.Second}, // clock skew: apparent age 0
	} {
		if got := initialAge(tc.h, tc.req, tc.resp); got != tc.want {
			t.Errorf("initialAge(%v) = %v, want %v", tc.h, got, tc.want)
		}
	}
}

func TestStoreLRU(t *testing.T) {
	s := NewStore(confval.ByteSize(3 * (entryOverhead + 100)))
	now := time.Now()
	put := func(k string) {
		if !s.put(&entry{key: k, body: make([]byte, 90), header: http.Header{}}) {
			t.Fatalf("put %s refused", k)
		}
	}
	put("a")
	put("b")
	put("c")
	if e, _ := s.lookup("a", nil, now); e == nil { // a is now most recent
		t.Fatal("a missing")
	}
	put("d") // evicts b
	for k, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true} {
		if e, _ := s.lookup(k, nil, now); (e != nil) != want {
			t.Errorf("%s stored = %v, want %v", k, e != nil, want)
		}
	}
	if s.Size() > s.max {
		t.Fatalf("size %d over bound %d", s.Size(), s.max)
	}
	if s.put(&entry{key: "huge", body: make([]byte, 4000)}) {
		t.Fatal("an entry larger than the store was stored")
	}
	s.invalidate("a")
	if e, _ := s.lookup("a", nil, now); e != nil || s.Len() != 2 {
		t.Fatalf("after invalidate: %v, len %d", e, s.Len())
	}
	// Variants: one primary key, bounded count.
	vs := NewStore(1 << 20)
	for i := range maxVariants + 3 {
		vs.put(&entry{key: "v", vary: []string{"X"}, varyVals: []string{"=" + string(rune('a'+i))}, header: http.Header{}})
	}
	if vs.Len() != maxVariants {
		t.Fatalf("%d variants stored, want %d", vs.Len(), maxVariants)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want []string
	}{
		{Config{}, nil},
		{Config{Enabled: true, MaxObjectSize: 1 << 20, DefaultTTL: time.Minute, XCacheHeader: "X-Cache"}, nil},
		{Config{MaxObjectSize: 2 << 30}, []string{"max_object_size"}},
		{Config{DefaultTTL: -1, MaxStaleIfError: -1, MaxStaleWhileRevalidate: -1}, []string{"default_ttl", "max_stale_while_revalidate", "max_stale_if_error"}},
		{Config{XCacheHeader: "X Cache"}, []string{"x_cache_header"}},
		{Config{Key: KeyConfig{IgnoreQueryParams: []string{"a", ""}, IncludeQueryParams: []string{"b"}}}, []string{"key", "key.ignore_query_params[1]"}},
		{Config{UnkeyedHeaders: []string{"ok", "bad:"}, AllowUnkeyedHeaders: []string{""}}, []string{"unkeyed_headers[1]", "allow_unkeyed_headers[0]"}},
	} {
		var got []string
		for _, f := range confval.Fields(tc.cfg.Validate()) {
			got = append(got, f.Path)
			if f.Msg == "" {
				t.Errorf("%s: empty message", f.Path)
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("Validate(%+v) paths %v, want %v", tc.cfg, got, tc.want)
		}
	}
}

func TestUnkeyedList(t *testing.T) {
	l := Config{UnkeyedHeaders: []string{"x-custom"}, AllowUnkeyedHeaders: []string{"x-forwarded-proto"}}.unkeyedList()
	joined := "," + strings.Join(l, ",") + ","
	if !strings.Contains(joined, ",X-Custom,") || strings.Contains(joined, ",X-Forwarded-Proto,") || !strings.Contains(joined, ",X-Forwarded-Host,") {
		t.Fatalf("unkeyed list %v", l)
	}
}

func TestEtagMatchAndVary(t *testing.T) {
	if !etagMatch([]string{`"a", W/"b"`}, `"b"`) || etagMatch([]string{`"a"`}, `"b"`) || !etagMatch([]string{"*"}, `"x"`) || etagMatch([]string{"*"}, "") {
		t.Fatal("etagMatch")
	}
	names, star := varyNames(http.Header{"Vary": {"accept-encoding, Accept-Language", ""}})
	if star || strings.Join(names, ",") != "Accept-Encoding,Accept-Language" {
		t.Fatalf("varyNames %v %v", names, star)
	}
	if _, star := varyNames(http.Header{"Vary": {"a, *"}}); !star {
		t.Fatal("Vary * not seen")
	}
	if varyValue(http.Header{"A": {"x , y"}}, "A") != varyValue(http.Header{"A": {"x", "y"}}, "A") || varyValue(http.Header{}, "A") == varyValue(http.Header{"A": {""}}, "A") {
		t.Fatal("varyValue normalization")
	}
}
