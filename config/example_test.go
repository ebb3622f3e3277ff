package config_test

import (
	"errors"
	"fmt"

	"github.com/outrider-mesh/outrider/config"
)

func ExampleParse() {
	f, err := config.Parse("outrider.yaml", []byte(`
service: web
identity:
  spiffe: {}
public:
  bind: 0.0.0.0:20000
  local_service: 127.0.0.1:8080
upstreams:
  - name: api
    bind: 127.0.0.1:9191
    endpoints:
      - {address: "10.0.0.5:20000", spiffe_id: "spiffe://example.org/api"}
authorization:
  rules:
    - allow: {trust_domain: example.org}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	u := f.Upstreams[0]
	fmt.Println(u.Name, u.Bind, u.Protocol, u.ConnectTimeout, u.LoadBalancer.Policy, u.Endpoints[0].SPIFFEID)
	fmt.Println(f.Public.HandshakeTimeout, f.Authorization.Rules[0], "else", f.Authorization.Default)
	// Output:
	// api 127.0.0.1:9191 tcp 5s round_robin spiffe://example.org/api
	// 10s allow trust_domain=example.org else deny
}

func ExampleParse_errors() {
	_, err := config.Parse("outrider.yaml", []byte(`service: web
identity:
  spiffe: {}
upstreams:
  - name: api
    bind: 127.0.0.1
    endpoint: []
`))
	fmt.Println(err)
	// Output:
	// config: outrider.yaml:6: upstreams[0].bind: "127.0.0.1" is not host:port
	// config: outrider.yaml:7: upstreams[0].endpoint: unknown key (did you mean "endpoints"?)
}

func ExampleParsePolicy() {
	a, err := config.ParsePolicy("policy.yaml", []byte(`
rules:
  - deny:
      name: no-admin-delete
      http: {path_prefix: /admin/, methods: [DELETE]}
  - allow:
      http: {methods: [get]}
`))
	fmt.Println(err)
	a, err = config.ParsePolicy("policy.yaml", []byte(`
rules:
  - deny:
      name: no-admin-delete
      http: {path_prefix: /admin/, methods: [DELETE]}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(a.Rules[0].Name, a.Rules[0], "else", a.Default)
	// Output:
	// config: policy.yaml:7: rules[1].allow.http.methods[0]: "get": methods are case-sensitive (RFC 9110); write "GET"
	// no-admin-delete deny http.path_prefix=/admin/ http.methods=DELETE else allow
}

func ExampleConsulDiscovery_ExpectedID() {
	c := &config.ConsulDiscovery{
		SPIFFEID:     "spiffe://example.org/ns/{{.Namespace}}/sa/{{.Service}}",
		SPIFFEIDMeta: "spiffe_id",
	}
	id, _ := c.ExpectedID(config.Instance{Service: "api", Namespace: "prod"})
	fmt.Println(id)
	id, _ = c.ExpectedID(config.Instance{Service: "api", Meta: map[string]string{"spiffe_id": "spiffe://other.org/api"}})
	fmt.Println(id)
	_, err := (&config.ConsulDiscovery{}).ExpectedID(config.Instance{Service: "api"})
	fmt.Println(errors.Is(err, config.ErrConsulDefaultID))
	// Output:
	// spiffe://example.org/ns/prod/sa/api
	// spiffe://other.org/api
	// true
}
