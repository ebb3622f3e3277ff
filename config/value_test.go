package config

import (
	"strings"
	"testing"

	"github.com/outrider-mesh/outrider/gateway"
)

func TestDecodeValue(t *testing.T) {
	var g gateway.Config
	v := map[string]any{"routes": []any{map[string]any{"name": "api", "match": map[string]any{"path_prefix": "/api/", "methods": []any{"GET"}}}}}
	if err := DecodeValue("Proxy.Config.gateway", v, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Routes) != 1 || g.Routes[0].Match.PathPrefix != "/api/" || g.Routes[0].Name != "api" {
		t.Fatalf("decoded %+v", g)
	}
	bad := map[string]any{
		"trusted_proxy": []any{"10.0.0.0/8"},
		"routes":        []any{map[string]any{"match": map[string]any{"path_regex": "("}}},
	}
	err := DecodeValue("Proxy.Config.gateway", bad, &g)
	if err == nil || !strings.Contains(err.Error(), `Proxy.Config.gateway.trusted_proxy: unknown key`) {
		t.Fatalf("unknown key: %v", err)
	}
	err = DecodeValue("Proxy.Config.gateway", map[string]any{"routes": []any{map[string]any{"match": map[string]any{"path_regex": "("}}, map[string]any{"match": map[string]any{"methods": []any{"get"}}}}}, &gateway.Config{})
	if err == nil || !strings.Contains(err.Error(), "Proxy.Config.gateway.routes[0].match.path_regex: ") || !strings.Contains(err.Error(), "Proxy.Config.gateway.routes[1].match.methods[0]: ") {
		t.Fatalf("validation: %v", err)
	}
}
