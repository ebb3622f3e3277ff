package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRouter(t *testing.T) {
	handlers := map[string]http.Handler{}
	for _, n := range []string{"api", "web", "admin"} {
		handlers[n] = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(n)) })
	}
	lookup := func(n string) (http.Handler, bool) { h, ok := handlers[n]; return h, ok }
	rt, err := NewRouter([]IngressRoute{
		{Hosts: []string{"API.example.com."}, Match: Match{PathPrefix: "/admin/"}, Upstream: "admin"},
		{Hosts: []string{"api.example.com", "*.api.example.org"}, Upstream: "api"},
		{Match: Match{PathPrefix: "/"}, Upstream: "web"},
	}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ host, path, want string }{
		{"api.example.com", "/v1", "api"},
		{"Api.Example.Com:8443", "/v1", "api"},
		{"api.example.com.", "/admin/x", "admin"},
		{"x.api.example.org", "/", "api"},
		{"api.example.org", "/", "web"},     // the wildcard needs one label
		{"a.b.api.example.org", "/", "web"}, // exactly one
		{"evilapi.example.org", "/", "web"},
		{"other", "/", "web"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "http://"+c.host+c.path, nil)
		r.Host = c.host
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, r)
		if got := w.Body.String(); got != c.want {
			t.Errorf("%s%s went to %q, want %q", c.host, c.path, got, c.want)
		}
	}
	none, _ := NewRouter([]IngressRoute{{Hosts: []string{"a.example"}, Upstream: "api"}}, lookup)
	w := httptest.NewRecorder()
	none.ServeHTTP(w, httptest.NewRequest("GET", "http://b.example/", nil))
	if w.Code != http.StatusNotFound {
		t.Errorf("unmatched host: %d", w.Code)
	}
	if _, err := NewRouter([]IngressRoute{{Upstream: "nope"}}, lookup); err == nil || !strings.Contains(err.Error(), "routes[0].upstream") {
		t.Errorf("unknown upstream: %v", err)
	}
}

func TestIngressValidate(t *testing.T) {
	ls := Ingresses{
		{Name: "a", Bind: "0.0.0.0:8443", Routes: []IngressRoute{{Upstream: "api", Hosts: []string{"*.ok.example", "a.*.example", "x:80"}}}},
		{Name: "a", Bind: "0.0.0.0:8443", MaxHeaderBytes: 10},
		{Bind: "nope", Routes: []IngressRoute{{Match: Match{PathRegex: "("}}}},
		{Name: "c", Bind: ":1", Routes: []IngressRoute{{Upstream: "api"}}, BodyIdleTimeout: -time.Second, MaxConcurrentStreams: -1,
			InitialStreamWindowSize: 1024, InitialConnectionWindowSize: 1 << 31},
		{Name: "d", Bind: ":2", Routes: []IngressRoute{{Upstream: "api"}}, MaxConcurrentStreams: 1 << 30},
	}
	err := ls.Validate()
	for _, want := range []string{
		"[0].routes[0].hosts[1]: ", "[0].routes[0].hosts[2]: ", "[1].name: ", "[1].bind: ", "[1].max_header_bytes: ",
		"[1].routes: at least one", "[2].bind: want host:port", "[2].routes[0].upstream: required", "[2].routes[0].match.path_regex: ",
		"[3].body_idle_timeout: negative", "[3].max_concurrent_streams: want 1 to 100000, got -1",
		"[3].initial_stream_window_size: want 65535 to 2147483647, got 1024",
		"[3].initial_connection_window_size: want 65535 to 2147483647, got 2147483648",
		"[4].max_concurrent_streams: want 1 to 100000, got 1073741824",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
}
