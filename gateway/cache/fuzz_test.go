package cache

import (
	"net/http"
	"strings"
	"testing"
)

func FuzzParseCacheControl(f *testing.F) {
	for _, s := range []string{"max-age=60", `private="a,b", max-age="3"`, `x="\"`, "s-maxage=99999999999999", ",,=,", "no-store,", `a="b\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := parseCacheControl([]string{s})
		for _, v := range []int{d.maxAge, d.sMaxAge, d.minFresh, d.staleWhileRevalidate, d.staleIfError} {
			if v < -1 || v > maxDelta {
				t.Fatalf("%q: delta %d out of range", s, v)
			}
		}
		// Splitting at a top-level comma that is outside quotes never
		// loses a directive that appears alone.
		if !strings.ContainsAny(s, `"=`) {
			if parseCacheControl([]string{s + ",no-store"}).noStore != true {
				t.Fatalf("%q: trailing no-store lost", s)
			}
		}
	})
}

func FuzzQuery(f *testing.F) {
	for _, s := range []string{"b=2&a=1", "a=1&&b", "%zz=1&a", "utm_source=x&id=1", "&", "a=1;b=2"} {
		f.Add(s)
	}
	k := newKeyer(KeyConfig{IgnoreQueryParams: []string{"utm_source"}})
	f.Fuzz(func(t *testing.T, raw string) {
		key, fw, _ := k.query(raw)
		// Normalizing is idempotent, and the forwarded query normalizes
		// to the same key (what the origin sees is what is keyed).
		if k2, _, _ := k.query(key); k2 != key {
			t.Fatalf("query(%q) = %q, again %q", raw, key, k2)
		}
		if k3, _, changed := k.query(fw); k3 != key || changed {
			t.Fatalf("forward %q keys %q (changed %v), want %q", fw, k3, changed, key)
		}
		if !strings.Contains(raw, "%") {
			for _, param := range strings.Split(key, "&") {
				if name, _, _ := strings.Cut(param, "="); name == "utm_source" {
					t.Fatalf("ignored parameter in key %q", key)
				}
			}
		}
	})
}

func FuzzVary(f *testing.F) {
	f.Add("Accept-Encoding, accept-language", "gzip, br")
	f.Add("*", "")
	f.Fuzz(func(t *testing.T, vary, val string) {
		h := http.Header{"Vary": {vary}}
		names, star := varyNames(h)
		if star && names != nil {
			t.Fatal("star with names")
		}
		req := http.Header{}
		for _, n := range names {
			req[n] = []string{val}
		}
		e := &entry{vary: names}
		for _, n := range names {
			e.varyVals = append(e.varyVals, varyValue(req, n))
		}
		if !e.matches(req) {
			t.Fatalf("entry does not match the request that filled it (vary %q)", vary)
		}
	})
}
