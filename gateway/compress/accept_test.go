package compress

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestChoose(t *testing.T) {
	all := []algorithm{zstdAlg, brAlg, gzipAlg}
	tests := []struct {
		name   string
		lines  []string // nil: no header at all
		prefs  []algorithm
		want   algorithm
		wantQ  int16
		reason string
	}{
		{name: "absent header", lines: nil, want: none},
		{name: "empty header", lines: []string{""}, want: none},
		{name: "browser", lines: []string{"gzip, deflate, br, zstd"}, want: zstdAlg, wantQ: 1000},
		{name: "browser gzip-first prefs", lines: []string{"gzip, deflate, br, zstd"}, prefs: []algorithm{gzipAlg, brAlg}, want: gzipAlg, wantQ: 1000},
		{name: "q decides over prefs", lines: []string{"zstd;q=0.5, gzip;q=0.8"}, want: gzipAlg, wantQ: 800},
		{name: "only gzip", lines: []string{"gzip"}, want: gzipAlg, wantQ: 1000},
		{name: "x-gzip", lines: []string{"x-gzip"}, want: gzipAlg, wantQ: 1000},
		{name: "case-insensitive", lines: []string{"GZip;Q=1.000"}, want: gzipAlg, wantQ: 1000},
		{name: "star", lines: []string{"*"}, want: zstdAlg, wantQ: 1000},
		{name: "star with exclusion", lines: []string{"*;q=0.5, zstd;q=0"}, want: brAlg, wantQ: 500},
		{name: "q=0 excludes", lines: []string{"gzip;q=0, br;q=0.001"}, want: brAlg, wantQ: 1},
		{name: "all excluded", lines: []string{"gzip;q=0, br;q=0, zstd;q=0"}, want: none},
		{name: "star q=0", lines: []string{"*;q=0"}, want: none},
		{name: "identity preferred", lines: []string{"gzip;q=0.5, identity"}, want: none},
		{name: "identity tie goes to coding", lines: []string{"gzip, identity"}, want: gzipAlg, wantQ: 1000},
		{name: "identity excluded, nothing offered", lines: []string{"identity;q=0, deflate"}, want: none},
		{name: "identity excluded, gzip ok", lines: []string{"identity;q=0, gzip;q=0.2"}, want: gzipAlg, wantQ: 200},
		{name: "star covers identity", lines: []string{"gzip;q=0.3, *;q=0.9"}, want: zstdAlg, wantQ: 900},
		{name: "bad q ignored element", lines: []string{"zstd;q=2, gzip;q=0.9"}, want: gzipAlg, wantQ: 900},
		{name: "too many decimals", lines: []string{"zstd;q=0.0001, gzip"}, want: gzipAlg, wantQ: 1000},
		{name: "1.001 invalid", lines: []string{"zstd;q=1.001, br;q=1.000"}, want: brAlg, wantQ: 1000},
		{name: "other params skipped", lines: []string{"gzip;level=9;q=0.7"}, want: gzipAlg, wantQ: 700},
		{name: "whitespace", lines: []string{"  br \t; q=0.4 ,, gzip ;q=0.3"}, want: brAlg, wantQ: 400},
		{name: "first duplicate counts", lines: []string{"gzip;q=0, gzip"}, want: none},
		{name: "several lines", lines: []string{"br;q=0.1", "gzip;q=0.2"}, want: gzipAlg, wantQ: 200},
		{name: "not a token", lines: []string{"gz ip, \"br\""}, want: none},
		{name: "deflate unsupported", lines: []string{"deflate"}, want: none},
		{name: "prefs limit choice", lines: []string{"zstd"}, prefs: []algorithm{gzipAlg}, want: none},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefs := tt.prefs
			if prefs == nil {
				prefs = all
			}
			a := parseAcceptEncoding(tt.lines)
			got, q := a.choose(prefs)
			if got != tt.want || got != none && q != tt.wantQ {
				t.Errorf("choose(%q) = %v q=%d, want %v q=%d", tt.lines, got, q, tt.want, tt.wantQ)
			}
		})
	}
}

func TestParseQValue(t *testing.T) {
	for s, want := range map[string]int16{"0": 0, "1": 1000, "0.5": 500, "0.123": 123, "1.0": 1000, "1.000": 1000, "0.": 0, "1.": 1000} {
		if got, ok := parseQValue(s); !ok || got != want {
			t.Errorf("parseQValue(%q) = %d, %v; want %d", s, got, ok, want)
		}
	}
	for _, s := range []string{"", "2", ".5", "0.1234", "1.1", "-0", "0,5", "0.5x", "01"} {
		if got, ok := parseQValue(s); ok {
			t.Errorf("parseQValue(%q) = %d, want invalid", s, got)
		}
	}
}

func TestAllowedContentTypes(t *testing.T) {
	c, err := New(Config{Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	yes := []string{"text/html", "text/html; charset=utf-8", "TEXT/CSS", "application/json", "application/problem+json",
		"application/vnd.api+json; v=2", "image/svg+xml", "application/atom+xml", "application/javascript", "text/event-stream"}
	no := []string{"", "image/png", "application/octet-stream", "application/grpc", "application/grpc+json", "application/grpc-web+proto",
		"application/zip", "json", "text/", "application/+json", "video/mp4"}
	for _, ct := range yes {
		if !c.allowed(ct) {
			t.Errorf("allowed(%q) = false, want true", ct)
		}
	}
	for _, ct := range no {
		if c.allowed(ct) {
			t.Errorf("allowed(%q) = true, want false", ct)
		}
	}
	c, err = New(Config{Enabled: true, ContentTypes: []string{"application/x-custom", "font/*"}})
	if err != nil {
		t.Fatal(err)
	}
	if !c.allowed("application/x-custom;a=b") || !c.allowed("font/woff") || c.allowed("text/html") {
		t.Error("a configured list replaces the default")
	}
}

func TestAddVary(t *testing.T) {
	tests := []struct{ in, want []string }{
		{nil, []string{"Accept-Encoding"}},
		{[]string{"Origin"}, []string{"Origin", "Accept-Encoding"}},
		{[]string{"Origin, accept-encoding"}, []string{"Origin, accept-encoding"}},
		{[]string{"Origin", "Accept-Encoding"}, []string{"Origin", "Accept-Encoding"}},
		{[]string{"*"}, []string{"*"}},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.in != nil {
			h["Vary"] = append([]string(nil), tt.in...)
		}
		addVary(h)
		addVary(h) // idempotent
		if !reflect.DeepEqual(h["Vary"], tt.want) {
			t.Errorf("addVary(%q) = %q, want %q", tt.in, h["Vary"], tt.want)
		}
	}
}

func TestRequestCoding(t *testing.T) {
	c, err := New(Config{DecompressRequests: Decompress{Enabled: true, Algorithms: []string{"gzip", "zstd"}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		lines    []string
		alg      algorithm
		identity bool
		ok       bool
	}{
		{[]string{"gzip"}, gzipAlg, false, true},
		{[]string{"X-GZIP"}, gzipAlg, false, true},
		{[]string{"identity, zstd"}, zstdAlg, false, true},
		{[]string{"identity"}, none, true, true},
		{[]string{""}, none, true, true},
		{[]string{"br"}, none, false, false},
		{[]string{"deflate"}, none, false, false},
		{[]string{"gzip, gzip"}, none, false, false},
		{[]string{"gzip", "zstd"}, none, false, false},
		{[]string{"gzip;q=1"}, none, false, false},
	}
	for _, tt := range tests {
		alg, id, ok := c.requestCoding(tt.lines)
		if alg != tt.alg || id != tt.identity || ok != tt.ok {
			t.Errorf("requestCoding(%q) = %v, %v, %v; want %v, %v, %v", tt.lines, alg, id, ok, tt.alg, tt.identity, tt.ok)
		}
	}
}

func FuzzAcceptEncoding(f *testing.F) {
	for _, s := range []string{"gzip, deflate, br, zstd", "*;q=0", "identity;q=0", "br;q=0.5, gzip;q=0.50",
		"zstd;q=1.000;x=y", ";;;,,,", "gzip;q=", "*;q=0.001, gzip;q=0", "GZIP ;\tQ = 0.9", "\x00;q=1"} {
		f.Add(s)
	}
	all := []algorithm{zstdAlg, brAlg, gzipAlg}
	f.Fuzz(func(t *testing.T, s string) {
		a := parseAcceptEncoding(strings.Split(s, "\n"))
		got, q := a.choose(all)
		if got == none {
			return
		}
		if q <= 0 || q > 1000 || q != a.weight(got) {
			t.Fatalf("%q: chose %v with q %d (weight %d)", s, got, q, a.weight(got))
		}
		for _, other := range all {
			if a.weight(other) > q {
				t.Fatalf("%q: chose %v q=%d over %v q=%d", s, got, q, other, a.weight(other))
			}
		}
		if a.q[got] == 0 {
			t.Fatalf("%q: chose %v, which the client excluded", s, got)
		}
		// The parser never reports a q-value out of range.
		for _, v := range append(a.q[1:], a.identity, a.star) {
			if v < -1 || v > 1000 {
				t.Fatalf("%q: q-value %d", s, v)
			}
		}
	})
}

func FuzzRequestCoding(f *testing.F) {
	for _, s := range []string{"gzip", "identity, br", "gzip,zstd", " , ", "x-gzip;", "zstd\tbr"} {
		f.Add(s)
	}
	c, err := New(Config{DecompressRequests: Decompress{Enabled: true}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		alg, identity, ok := c.requestCoding([]string{s})
		if ok && identity != (alg == none) {
			t.Fatalf("%q: alg %v identity %v", s, alg, identity)
		}
		if !ok && alg != none {
			t.Fatalf("%q: refused but alg %v", s, alg)
		}
	})
}

func FuzzMediaType(f *testing.F) {
	for _, s := range []string{"text/html; charset=utf-8", "application/vnd.x+json", "/", "a/b/c", "TEXT/Plain;;", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		typ, sub, ok := mediaType(s)
		if ok && (!isToken(typ) || !isToken(sub) || strings.ToLower(typ) != typ || strings.ToLower(sub) != sub) {
			t.Fatalf("%q: %q/%q", s, typ, sub)
		}
	})
}
