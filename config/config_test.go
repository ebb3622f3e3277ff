package config

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenValue renders v for a golden file: keys as in YAML, durations as
// Go duration strings, SPIFFE IDs as strings.
func goldenValue(v reflect.Value) any {
	if v.Type() == durationType {
		return time.Duration(v.Int()).String()
	}
	if m, ok := v.Interface().(encoding.TextMarshaler); ok && v.Kind() != reflect.Pointer {
		b, err := m.MarshalText()
		if err != nil {
			panic(err)
		}
		return string(b)
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return goldenValue(v.Elem())
	case reflect.Struct:
		var m object
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			name := yamlName(f)
			if name == "" {
				name = strings.ToLower(f.Name) // Rule.Action
			}
			m = append(m, member{name, goldenValue(v.Field(i))})
		}
		return m
	case reflect.Slice:
		if v.IsNil() {
			return nil
		}
		s := make([]any, v.Len())
		for i := range s {
			s[i] = goldenValue(v.Index(i))
		}
		return s
	case reflect.Map:
		if v.IsNil() {
			return nil
		}
		m := map[string]any{}
		for it := v.MapRange(); it.Next(); {
			m[it.Key().String()] = goldenValue(it.Value())
		}
		return m
	}
	return v.Interface()
}

// object is a JSON object that keeps its members in struct field order.
type object []member

type member struct {
	key   string
	value any
}

func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(m.key)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(m.value)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func golden(t *testing.T, f *File) []byte {
	t.Helper()
	b, err := json.MarshalIndent(goldenValue(reflect.ValueOf(f).Elem()), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// checkGolden compares got with the golden file, or rewrites it with -update.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestGolden parses every testdata/*.yaml and compares the defaulted File
// with its .golden.json.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			f, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Validate(); err != nil {
				t.Errorf("Validate after Load: %v", err)
			}
			checkGolden(t, strings.TrimSuffix(path, ".yaml")+".golden.json", golden(t, f))
		})
	}
}

// TestBad parses every testdata/bad/*.yaml, which must fail, and compares
// the error text with its .err file.
func TestBad(t *testing.T) {
	checkBadFiles(t, "testdata/bad/*.yaml", func(name string, data []byte) (bool, error) {
		f, err := Parse(name, data)
		return f != nil, err
	})
}

// checkBadFiles parses every file matching glob with parse, which must
// fail without a result, every error line naming the file, and compares
// the error text with the file's .err golden.
func checkBadFiles(t *testing.T, glob string, parse func(name string, data []byte) (result bool, err error)) {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			result, err := parse(filepath.Base(path), data)
			if err == nil {
				t.Fatal("parsing succeeded")
			}
			if result {
				t.Error("a result with an error")
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "config: "+filepath.Base(path)+":") {
					t.Errorf("error line %q lacks the config: file: prefix", line)
				}
			}
			checkGolden(t, strings.TrimSuffix(path, ".yaml")+".err", []byte(err.Error()+"\n"))
		})
	}
}

// TestExample checks that the documented example parses and uses every
// section.
func TestExample(t *testing.T) {
	t.Parallel()
	f, err := Load(filepath.Join("..", "examples", "static", "outrider.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Public == nil || f.Consul == nil || len(f.Upstreams) < 2 || len(f.Authorization.Rules) == 0 ||
		f.Telemetry.AccessLog == nil || f.Identity.SPIFFE == nil {
		t.Errorf("the example leaves a section out: %+v", f)
	}
}

// TestErrorOrder checks that decoding and validation errors come together,
// in file order, and that a value that failed to decode is not reported a
// second time by validation.
func TestErrorOrder(t *testing.T) {
	t.Parallel()
	src := `service: web
identity:
  spiffe: {}
upstreams:
  - name: a
    bind: 127.0.0.1
    endpoints: [{address: 10.0.0.1:1, spiffe_id: spiffe://x/a}]
  - name: b
    bind: [127.0.0.1:1]
    endpoint: []
admin:
  bind: nowhere
`
	_, err := Parse("o.yaml", []byte(src))
	want := `config: o.yaml:6: upstreams[0].bind: "127.0.0.1" is not host:port
config: o.yaml:9: upstreams[1].bind: want a string, got a list
config: o.yaml:10: upstreams[1].endpoint: unknown key (did you mean "endpoints"?)
config: o.yaml:12: admin.bind: "nowhere" is not host:port`
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

// TestValidateInCode checks Validate on a File built in code: defaults are
// not applied, and errors name the key path without a file or line.
func TestValidateInCode(t *testing.T) {
	t.Parallel()
	f := &File{
		Service:  "web",
		Identity: Identity{SPIFFE: &SPIFFEIdentity{}},
		Upstreams: []Upstream{{
			Name: "api", Bind: "127.0.0.1", Protocol: TCP, ConnectTimeout: time.Second,
			LoadBalancer: LoadBalancer{Policy: RoundRobin},
			Endpoints:    []Endpoint{{Address: "10.0.0.1:20000", SPIFFEID: spiffeid.RequireFromString("spiffe://x/api"), Weight: 1}},
		}},
		Authorization: Authorization{Default: Deny},
		Admin:         Admin{Bind: "-"},
	}
	err := f.Validate()
	want := `config: upstreams[0].bind: "127.0.0.1" is not host:port`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	f.Upstreams[0].Bind = "127.0.0.1:9191"
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	f.applyDefaults() // no file: zero values are defaulted
	if f.Public != nil || f.Upstreams[0].Endpoints[0].Weight != 1 {
		t.Errorf("applyDefaults: %+v", f)
	}
}

// TestWrittenZeroIsKept checks that a value written as zero is reported,
// not replaced by the default.
func TestWrittenZeroIsKept(t *testing.T) {
	t.Parallel()
	src := `service: web
identity: {spiffe: }
public:
  bind: :20000
  local_service: 127.0.0.1:8080
  protocol:
  handshake_timeout: 0s
  max_header_bytes: 0
`
	_, err := Parse("o.yaml", []byte(src))
	want := `config: o.yaml:7: public.handshake_timeout: 0s: want a positive duration
config: o.yaml:8: public.max_header_bytes: 0 is not between 1024 and 1048576`
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

// TestAliasBudget checks that aliases cannot expand a small file into an
// unbounded configuration.
func TestAliasBudget(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("service: web\nidentity: {spiffe: {}}\neps: &eps [")
	for i := range 2000 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "{address: '10.0.0.1:%d', spiffe_id: 'spiffe://x/a'}", i%60000+1)
	}
	b.WriteString("]\nupstreams:\n")
	b.WriteString("  - &u {name: a, bind: '127.0.0.1:1', endpoints: *eps}\n")
	for range 1000 {
		b.WriteString("  - *u\n")
	}
	start := time.Now()
	_, err := Parse("bomb.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "aliases expand the document too much") {
		t.Errorf("got %v, want an alias expansion error", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("Parse took %v", d)
	}
}

func TestExpectedID(t *testing.T) {
	t.Parallel()
	inst := Instance{
		Service: "api", Namespace: "prod", Datacenter: "dc2", Node: "n1", Partition: "default",
		Meta: map[string]string{"spiffe_id": "spiffe://meta.org/api", "team": "core", "bad": "not an id"},
	}
	tests := []struct {
		name string
		c    ConsulDiscovery
		inst Instance
		want string // SPIFFE ID, or "error: " and a substring
	}{
		{"template", ConsulDiscovery{SPIFFEID: "spiffe://example.org/ns/{{.Namespace}}/sa/{{.Service}}"}, inst, "spiffe://example.org/ns/prod/sa/api"},
		{"all fields", ConsulDiscovery{SPIFFEID: "spiffe://{{.Datacenter}}.example.org/{{.Partition}}/{{.Node}}/{{.Meta.team}}"}, inst, "spiffe://dc2.example.org/default/n1/core"},
		{"meta wins", ConsulDiscovery{SPIFFEID: "spiffe://example.org/x", SPIFFEIDMeta: "spiffe_id"}, inst, "spiffe://meta.org/api"},
		{"meta absent falls back to template", ConsulDiscovery{SPIFFEID: "spiffe://example.org/x", SPIFFEIDMeta: "other"}, inst, "spiffe://example.org/x"},
		{"meta only", ConsulDiscovery{SPIFFEIDMeta: "spiffe_id"}, inst, "spiffe://meta.org/api"},
		{"meta only absent", ConsulDiscovery{SPIFFEIDMeta: "other"}, inst, "error: " + ErrConsulDefaultID.Error()},
		{"meta empty value", ConsulDiscovery{SPIFFEIDMeta: "spiffe_id"}, Instance{Meta: map[string]string{"spiffe_id": ""}}, "error: " + ErrConsulDefaultID.Error()},
		{"neither", ConsulDiscovery{}, inst, "error: " + ErrConsulDefaultID.Error()},
		{"bad meta", ConsulDiscovery{SPIFFEIDMeta: "bad"}, inst, `error: service meta bad="not an id" is not a SPIFFE ID`},
		{"missing meta key", ConsulDiscovery{SPIFFEID: "spiffe://x/{{.Meta.zone}}"}, inst, `error: map has no entry for key "zone"`},
		{"renders invalid", ConsulDiscovery{SPIFFEID: "spiffe://x/{{.Meta.bad}}"}, inst, `error: rendered "spiffe://x/not an id", not a SPIFFE ID`},
		{"nil meta", ConsulDiscovery{SPIFFEID: "spiffe://x/{{.Meta.zone}}", SPIFFEIDMeta: "id"}, Instance{}, `error: map has no entry for key "zone"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := tt.c.ExpectedID(tt.inst)
			got := id.String()
			if err != nil {
				got = "error: " + err.Error()
			}
			if strings.HasPrefix(tt.want, "error: ") {
				if err == nil || !strings.Contains(got, strings.TrimPrefix(tt.want, "error: ")) {
					t.Errorf("got %q, want %q", got, tt.want)
				}
				if tt.want == "error: "+ErrConsulDefaultID.Error() && !errors.Is(err, ErrConsulDefaultID) {
					t.Errorf("got %v, want ErrConsulDefaultID", err)
				}
				return
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestExpectedIDCompiled checks that a parsed File's discovery renders
// with its cached template, concurrently.
func TestExpectedIDCompiled(t *testing.T) {
	t.Parallel()
	f, err := Parse("o.yaml", []byte(`service: web
identity: {consul: {}}
consul: {}
upstreams:
  - name: api
    bind: 127.0.0.1:9191
    consul: {spiffe_id: "spiffe://example.org/{{.Datacenter}}/{{.Service}}"}
`))
	if err != nil {
		t.Fatal(err)
	}
	c := f.Upstreams[0].Consul
	if c.tmpl == nil || c.Service != "api" {
		t.Fatalf("not compiled or not defaulted: %+v", c)
	}
	changed := *c
	changed.SPIFFEID = "spiffe://changed.org/{{.Service}}"
	if id, err := changed.ExpectedID(Instance{Service: "api"}); err != nil || id.String() != "spiffe://changed.org/api" {
		t.Errorf("after a change in code: %v, %v", id, err)
	}
	done := make(chan error)
	for i := range 8 {
		go func() {
			id, err := c.ExpectedID(Instance{Service: "api", Datacenter: fmt.Sprint("dc", i)})
			if err == nil && id.String() != fmt.Sprintf("spiffe://example.org/dc%d/api", i) {
				err = fmt.Errorf("got %s", id)
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func TestRuleString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		r    Rule
		want string
	}{
		{Rule{Action: Deny, TrustDomain: "example.org", PathPrefix: "/ns/test/"}, "deny trust_domain=example.org path_prefix=/ns/test/"},
		{Rule{Action: Allow, Name: "web", SPIFFEIDPattern: "spiffe://x/ns/*/sa/web"}, "allow spiffe_id_pattern=spiffe://x/ns/*/sa/web"},
		{Rule{Action: Deny, HTTP: &HTTPMatch{PathPrefix: "/admin/", Methods: []string{"DELETE", "PUT"},
			Headers: []HeaderMatch{{Name: "x-a", Present: true}, {Name: "x-b", Exact: "1"}}}},
			"deny http.path_prefix=/admin/ http.methods=DELETE,PUT http.headers=x-a,x-b"},
		{Rule{Action: Allow, SPIFFEID: "spiffe://x/a", HTTP: &HTTPMatch{PathRegex: "/v[0-9]+"},
			JWT: &JWTRequirement{Providers: []JWTProviderRef{{Name: "okta"}, {Name: "local"}}}},
			"allow spiffe_id=spiffe://x/a http.path_regex=/v[0-9]+ jwt=okta,local"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

// TestPolicyGolden parses every testdata/policy/*.yaml and compares the
// defaulted Authorization with its .golden.json.
func TestPolicyGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/policy/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			a, err := LoadPolicy(path)
			if err != nil {
				t.Fatal(err)
			}
			if errs := (&File{}).validatePolicy(a, nil); len(errs) > 0 {
				t.Errorf("validation after LoadPolicy: %v", joinErrors(errs, ""))
			}
			if a.ConsulIntentions {
				t.Error("ConsulIntentions set")
			}
			b, err := json.MarshalIndent(goldenValue(reflect.ValueOf(a).Elem()), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, strings.TrimSuffix(path, ".yaml")+".golden.json", append(b, '\n'))
		})
	}
}

// TestPolicyBad parses every testdata/policy/bad/*.yaml, which must fail,
// and compares the error text with its .err file.
func TestPolicyBad(t *testing.T) {
	checkBadFiles(t, "testdata/policy/bad/*.yaml", func(name string, data []byte) (bool, error) {
		a, err := ParsePolicy(name, data)
		return a != nil, err
	})
}

// TestPolicyDefaults checks the defaults that differ between a policy file
// and outrider.yaml: default is allow in a policy file, deny in
// outrider.yaml, and allow with consul_intentions.
func TestPolicyDefaults(t *testing.T) {
	t.Parallel()
	a, err := ParsePolicy("policy.yaml", []byte("rules: [{deny: {trust_domain: test.org}}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Default != Allow || a.Rules[0].Name != "rule 1" || !*a.PathNormalization.MergeSlashes {
		t.Errorf("policy defaults: %+v", a)
	}
	const head = "service: web\nidentity: {consul: {}}\nconsul: {}\npublic: {bind: ':20000', local_service: '127.0.0.1:8080'}\n"
	for _, tt := range []struct{ authz, want string }{
		{"authorization: {rules: [{deny: {trust_domain: test.org}}]}", Deny},
		{"authorization: {consul_intentions: true, rules: [{deny: {trust_domain: test.org}}]}", Allow},
		{"authorization: {consul_intentions: true, default: deny, rules: [{deny: {trust_domain: test.org}}]}", Deny},
	} {
		f, err := Parse("o.yaml", []byte(head+tt.authz+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if f.Authorization.Default != tt.want {
			t.Errorf("%s: default %q, want %q", tt.authz, f.Authorization.Default, tt.want)
		}
	}
}

// TestExampleL7 checks that the commented L7 and JWT block of the example
// is valid once uncommented.
func TestExampleL7(t *testing.T) {
	t.Parallel()
	example, err := os.ReadFile(filepath.Join("..", "examples", "static", "outrider.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("service: web\nidentity: {spiffe: {}}\npublic: {bind: ':20000', local_service: '127.0.0.1:8080', protocol: http}\nauthorization:\n")
	in := false
	for _, line := range strings.Split(string(example), "\n") {
		if strings.HasPrefix(line, "  # dry_run:") {
			in = true
		}
		if !in {
			continue
		}
		if !strings.HasPrefix(line, "  #") {
			break
		}
		b.WriteString(strings.Replace(line, "# ", "", 1) + "\n")
	}
	if !in {
		t.Fatal("the example has no commented dry_run: line")
	}
	f, err := Parse("example-l7.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	a := f.Authorization
	if !a.DryRun || len(a.Rules) < 3 || a.JWT == nil || len(a.JWTProviders) == 0 || a.Rules[0].HTTP == nil {
		t.Errorf("the L7 block leaves something out: %+v", a)
	}
}

func TestLoadMissing(t *testing.T) {
	t.Parallel()
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.HasPrefix(err.Error(), "config: ") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v", err)
	}
	_, err = LoadPolicy(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.HasPrefix(err.Error(), "config: ") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadPolicy: got %v", err)
	}
}

// TestEdgeLimits: the public listener's edge limits are read, defaulted
// and checked, each bad value reported with its key and line.
func TestEdgeLimits(t *testing.T) {
	t.Parallel()
	head := "service: web\nidentity: {spiffe: }\npublic:\n  bind: :20000\n  local_service: 127.0.0.1:8080\n"
	f, err := Parse("o.yaml", []byte(head+"  idle_timeout: 2m\n  body_idle_timeout: 5m\n  max_interim_responses: 3\n  max_concurrent_streams: 250\n  initial_stream_window_size: 100000\n  initial_connection_window_size: 3145728\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p := f.Public; p.IdleTimeout != 2*time.Minute || p.BodyIdleTimeout != 5*time.Minute || p.MaxInterimResponses != 3 || p.MaxConcurrentStreams != 250 ||
		p.InitialStreamWindowSize != 100000 || p.InitialConnectionWindowSize != 3<<20 {
		t.Errorf("read %+v", p)
	}
	f, err = Parse("o.yaml", []byte(head))
	if err != nil {
		t.Fatal(err)
	}
	if p := f.Public; p.IdleTimeout != 90*time.Second || p.BodyIdleTimeout != time.Minute || p.MaxInterimResponses != 10 || p.MaxConcurrentStreams != 1000 ||
		p.InitialStreamWindowSize != 1<<20 || p.InitialConnectionWindowSize != 1<<20 {
		t.Errorf("defaults %+v", p)
	}
	tests := []struct{ lines, want string }{
		{"  body_idle_timeout: 0s\n", "config: o.yaml:6: public.body_idle_timeout: 0s: want a positive duration"},
		{"  body_idle_timeout: -1s\n", "config: o.yaml:6: public.body_idle_timeout: -1s: want a positive duration"},
		{"  body_idle_timeout: 60\n", "config: o.yaml:6: public.body_idle_timeout: "},
		{"  body_idle_timeout: 99999999999h\n", "config: o.yaml:6: public.body_idle_timeout: "},
		{"  idle_timeout: 0s\n", "config: o.yaml:6: public.idle_timeout: 0s: want a positive duration"},
		{"  idle_timeout: soon\n", "config: o.yaml:6: public.idle_timeout: "},
		{"  max_interim_responses: 0\n", "config: o.yaml:6: public.max_interim_responses: 0 is not between 1 and 1000"},
		{"  max_interim_responses: 5000\n", "config: o.yaml:6: public.max_interim_responses: 5000 is not between 1 and 1000"},
		{"  max_interim_responses: many\n", "config: o.yaml:6: public.max_interim_responses: "},
		{"  max_concurrent_streams: -3\n", "config: o.yaml:6: public.max_concurrent_streams: -3 is not between 1 and 100000"},
		{"  max_concurrent_streams: 4294967296\n", "config: o.yaml:6: public.max_concurrent_streams: 4294967296 is "},
		{"  max_concurrent_streams: [3]\n", "config: o.yaml:6: public.max_concurrent_streams: "},
		{"  initial_stream_window_size: 65534\n", "config: o.yaml:6: public.initial_stream_window_size: 65534 is not between 65535 and 2147483647"},
		{"  initial_connection_window_size: 2147483648\n", "config: o.yaml:6: public.initial_connection_window_size: 2147483648 is "},
		{"  initial_connection_window_size: 0\n", "config: o.yaml:6: public.initial_connection_window_size: 0 is not between 65535 and 2147483647"},
	}
	for _, tt := range tests {
		_, err := Parse("o.yaml", []byte(head+tt.lines))
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: got %v, want one error starting %q", tt.lines, err, tt.want)
		}
	}
}
