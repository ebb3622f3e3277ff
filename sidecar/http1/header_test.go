package http1

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
)

func TestHeaderEdits(t *testing.T) {
	t.Parallel()
	h, err := readRequest(t, "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nCookie: a=1\r\nx-a: 2\r\nX-B: 3\r\n\r\n", 0)
	if err != nil {
		t.Fatal(err)
	}
	hd := &h.Header
	if v, ok := hd.Get("x-A"); !ok || string(v) != "1" {
		t.Errorf("Get = %q, %v", v, ok)
	}
	if _, ok := hd.Get("X-Missing"); ok || hd.Has("X-Missing") || !hd.Has("HOST") {
		t.Error("Has/Get of a missing or differently cased field")
	}
	name, value := []byte("X-New"), []byte("v")
	hd.Add(string(name), string(value))
	name[0], value[0] = 'Z', 'Z' // Add copies
	hd.Set("X-A", "set")
	hd.Set("X-C", "c")
	hd.Del("x-b")
	var got []string
	for _, f := range hd.Fields {
		got = append(got, string(f.Name)+"="+string(f.Value))
	}
	want := "Host=h X-A=set Cookie=a=1 X-New=v X-C=c"
	if strings.Join(got, " ") != want {
		t.Errorf("fields %q, want %q", strings.Join(got, " "), want)
	}
	// Appending to a field never overwrites its neighbours.
	v0, _ := hd.Get("Host")
	_ = append(v0, "xxxx"...)
	if v, _ := hd.Get("X-A"); string(v) != "set" {
		t.Errorf("appending to a value clobbered the next: %q", v)
	}
	for _, f := range hd.Fields {
		_ = append(f.Name, "xx"...)
		_ = append(f.Value, "xx"...)
	}
	if got := string(h.AppendWire(nil)); got != "GET / HTTP/1.1\r\nHost: h\r\nX-A: set\r\nCookie: a=1\r\nX-New: v\r\nX-C: c\r\n\r\n" {
		t.Errorf("wire %q", got)
	}
}

func TestHeaderAddSanitizes(t *testing.T) {
	t.Parallel()
	var h Header
	h.Add("X Bad:\r\n", "a\r\nInjected: 1\x00")
	f := h.Fields[0]
	if string(f.Name) != "X-Bad---" || string(f.Value) != "a  Injected: 1 " {
		t.Errorf("got %q: %q", f.Name, f.Value)
	}
}

// Values added before a Read stay valid (unchanged) until the next Read.
func TestHeaderAddStable(t *testing.T) {
	t.Parallel()
	var h Header
	var vals [][]byte
	for i := range 100 {
		h.Add("X", strings.Repeat(string(rune('a'+i%26)), i))
		vals = append(vals, h.Fields[i].Value)
	}
	for i, v := range vals {
		if string(v) != strings.Repeat(string(rune('a'+i%26)), i) {
			t.Fatalf("value %d changed to %q", i, v)
		}
	}
}

func TestCookie(t *testing.T) {
	t.Parallel()
	h, err := readRequest(t, "GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1; b=\"two\";c=; =x; d\r\ncookie: e=5;a=dup\r\n\r\n", 0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, value string
		ok          bool
	}{
		{"a", "1", true},
		{"b", "two", true},
		{"c", "", true},
		{"d", "", true},
		{"e", "5", true},
		{"A", "", false},
		{"z", "", false},
	}
	for _, tc := range tests {
		v, ok := h.Header.Cookie(tc.name)
		if string(v) != tc.value || ok != tc.ok {
			t.Errorf("Cookie(%q) = %q, %v; want %q, %v", tc.name, v, ok, tc.value, tc.ok)
		}
		// net/http agrees.
		req, _ := http.ReadRequest(bufio.NewReader(strings.NewReader(
			"GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1; b=\"two\";c=; =x; d\r\ncookie: e=5;a=dup\r\n\r\n")))
		c, err := req.Cookie(tc.name)
		if (err == nil) != tc.ok || err == nil && c.Value != tc.value {
			t.Errorf("net/http Cookie(%q) = %v, %v", tc.name, c, err)
		}
	}
}
