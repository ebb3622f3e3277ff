package filter

import (
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/outrider-mesh/outrider/internal/confval"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // field paths, sorted
	}{
		{name: "zero", cfg: Config{}},
		{name: "full", cfg: Config{
			AllowCIDRs: []string{"10.0.0.0/8", "2001:db8::/32", "192.0.2.7", "::ffff:172.16.0.0/108"},
			DenyCIDRs:  []string{"10.6.6.6", "fe80::/10"}, MaxBodyBytes: 1 << 20, MaxHeaders: 50, MaxHeaderBytes: 8 << 10,
			CORS: CORS{AllowOrigins: []string{"https://app.example.com", "https://*.example.com", "http://localhost:8080", "http://[::1]:3000", "HTTPS://Admin.Example.COM"},
				AllowMethods: []string{"PUT", "DELETE"}, AllowHeaders: []string{"Content-Type", "X-Api-Key"}, ExposeHeaders: []string{"X-Request-Id"},
				AllowCredentials: true, MaxAge: 10 * time.Minute},
			ResponseHeaders: ResponseHeaders{Set: map[string]string{"X-Frame-Options": "SAMEORIGIN", "Strict-Transport-Security": "max-age=63072000"}, Remove: []string{"Server", "X-Powered-By"}},
			SecurityHeaders: true,
		}},
		{name: "any origin without credentials", cfg: Config{CORS: CORS{AllowOrigins: []string{"*"}, AllowMethods: []string{"*"}, AllowHeaders: []string{"*"}, ExposeHeaders: []string{"*"}}}},
		{name: "cidrs", cfg: Config{AllowCIDRs: []string{"10.0.0.0/8", "10.0.0.0/33", "bogus"}, DenyCIDRs: []string{"1.2.3.4/", ""}},
			want: []string{"allow_cidrs[1]", "allow_cidrs[2]", "deny_cidrs[0]", "deny_cidrs[1]"}},
		{name: "limits", cfg: Config{MaxBodyBytes: -1, MaxHeaders: 10001, MaxHeaderBytes: -5},
			want: []string{"max_body_bytes", "max_header_bytes", "max_headers"}},
		{name: "negative max_headers", cfg: Config{MaxHeaders: -1}, want: []string{"max_headers"}},
		{name: "credentials with any origin", cfg: Config{CORS: CORS{AllowOrigins: []string{"*"}, AllowCredentials: true}},
			want: []string{"cors.allow_origins[0]"}},
		{name: "any origin not alone", cfg: Config{CORS: CORS{AllowOrigins: []string{"https://a.example", "*"}}},
			want: []string{"cors.allow_origins[1]"}},
		{name: "bad origins", cfg: Config{CORS: CORS{AllowOrigins: []string{
			"example.com", "https://example.com/", "https://example.com/path", "https://*.*.example.com", "https://a.*.example.com",
			"https://*example.com", "*://example.com", "https://example.com:0", "https://example.com:65536", "https://example.com:x",
			"https://user@example.com", "https://exa mple.com", "https://*.", "https://-a.example.com", "null", "https://bücher.example",
			"https://*.[::1]", "https://example.com.", "ftp:/x", "https://*",
		}}}, want: func() []string {
			var w []string
			for i := range 20 {
				w = append(w, "cors.allow_origins["+itoa(i)+"]")
			}
			return w
		}()},
		{name: "cors keys without origins", cfg: Config{CORS: CORS{AllowMethods: []string{"PUT"}, AllowCredentials: true}},
			want: []string{"cors.allow_origins"}},
		{name: "bad cors lists", cfg: Config{CORS: CORS{AllowOrigins: []string{"https://a.example"}, AllowMethods: []string{"GET", "PU T"},
			AllowHeaders: []string{"X-Ok", "X:Bad"}, ExposeHeaders: []string{"*"}, AllowCredentials: true, MaxAge: 1500 * time.Millisecond}},
			want: []string{"cors.allow_headers[1]", "cors.allow_methods[1]", "cors.expose_headers", "cors.max_age"}},
		{name: "negative max_age", cfg: Config{CORS: CORS{AllowOrigins: []string{"https://a.example"}, MaxAge: -time.Second}},
			want: []string{"cors.max_age"}},
		{name: "bad response headers", cfg: Config{
			CORS: CORS{AllowOrigins: []string{"https://a.example"}},
			ResponseHeaders: ResponseHeaders{
				Set: map[string]string{"X-Inject": "a\r\nSet-Cookie: x=1", "X-Nul": "a\x00b", "Bad Name": "v", "Content-Length": "5",
					"x-dup": "1", "X-Dup": "2", "X-Empty": "", "Access-Control-Allow-Origin": "*", "X-Also-Removed": "v"},
				Remove: []string{"Transfer-Encoding", "Server", "server", "x-also-removed", "Bad:Name"},
			}},
			want: []string{
				"response_headers.remove[0]", "response_headers.remove[2]", "response_headers.remove[4]",
				"response_headers.set.Access-Control-Allow-Origin", "response_headers.set.Bad Name", "response_headers.set.Content-Length",
				"response_headers.set.X-Also-Removed", "response_headers.set.x-dup", "response_headers.set.X-Empty",
				"response_headers.set.X-Inject", "response_headers.set.X-Nul",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			var got []string
			for _, fe := range confval.Fields(err) {
				if fe.Msg == "" {
					t.Errorf("%s: empty message", fe.Path)
				}
				got = append(got, fe.Path)
			}
			sort.Strings(got)
			want := append([]string(nil), tt.want...)
			sort.Strings(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Validate paths = %q\nwant %q\n(err: %v)", got, want, err)
			}
			if _, nerr := New(tt.cfg); (nerr != nil) != (len(tt.want) > 0) {
				t.Errorf("New error = %v, want failure %v", nerr, len(tt.want) > 0)
			}
		})
	}
}

// TestValidateMessages: the messages say what to write instead.
func TestValidateMessages(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{AllowCIDRs: []string{"10.0.0.0/8", "10.0.0.300"}}, `allow_cidrs[1]: "10.0.0.300" is not an IP address or CIDR prefix`},
		{Config{CORS: CORS{AllowOrigins: []string{"*"}, AllowCredentials: true}}, "cannot be used with allow_credentials"},
		{Config{CORS: CORS{AllowOrigins: []string{"https://a.*.example.com"}}}, "a wildcard may only be the whole first label"},
		{Config{ResponseHeaders: ResponseHeaders{Set: map[string]string{"X-A": "1\n2"}}}, "must not contain CR, LF, NUL"},
	} {
		if err := tt.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func TestOriginMatch(t *testing.T) {
	tests := []struct {
		pattern string
		yes, no []string
	}{
		{"https://app.example.com", []string{"https://app.example.com", "HTTPS://APP.Example.com"},
			[]string{"http://app.example.com", "https://app.example.com:443", "https://app.example.com.", "https://xapp.example.com", "https://app.example.co", "null", ""}},
		{"https://*.example.com", []string{"https://a.example.com", "https://A-1.Example.COM"},
			[]string{"https://example.com", "https://a.b.example.com", "http://a.example.com", "https://a.example.com:8443", "https://.example.com",
				"https://-a.example.com", "https://a_b.example.com", "https://a/.example.com", "https://evil.com/.example.com", "https://a.example.com.evil"}},
		{"http://*.example.com:8080", []string{"http://x.example.com:8080"}, []string{"http://x.example.com", "http://x.example.com:80800", "http://x.example.com:8081"}},
		{"http://[::1]:3000", []string{"http://[::1]:3000"}, []string{"http://[::1]", "http://[::2]:3000"}},
		{"https://APP.example.com", []string{"https://app.example.com"}, nil},
	}
	for _, tt := range tests {
		p, err := parseOrigin(tt.pattern)
		if err != nil {
			t.Fatalf("%s: %v", tt.pattern, err)
		}
		for _, o := range tt.yes {
			if echo, ok := p.match(o); !ok || len(echo) != 1 {
				t.Errorf("%s should match %q", tt.pattern, o)
			}
		}
		for _, o := range tt.no {
			if _, ok := p.match(o); ok {
				t.Errorf("%s should not match %q", tt.pattern, o)
			}
		}
	}
}
