package balance

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func TestFromConsul(t *testing.T) {
	tests := []struct {
		name string
		lb   *api.LoadBalancer
		want Config
	}{
		{"nil", nil, Config{}},
		{"empty", &api.LoadBalancer{}, Config{}},
		{"round robin", &api.LoadBalancer{Policy: "round_robin"}, Config{Policy: RoundRobin}},
		{"random", &api.LoadBalancer{Policy: "random"}, Config{Policy: Random}},
		{"least request default", &api.LoadBalancer{Policy: "least_request"}, Config{Policy: LeastRequest}},
		{
			"least request choices",
			&api.LoadBalancer{Policy: "least_request", LeastRequestConfig: &api.LeastRequestConfig{ChoiceCount: 5}},
			Config{Policy: LeastRequest, ChoiceCount: 5},
		},
		{
			"ring hash sizes",
			&api.LoadBalancer{Policy: "ring_hash", RingHashConfig: &api.RingHashConfig{MinimumRingSize: 2048, MaximumRingSize: 1 << 20}},
			Config{Policy: RingHash, MinRingSize: 2048, MaxRingSize: 1 << 20},
		},
		{
			"maglev hash policies",
			&api.LoadBalancer{Policy: "maglev", HashPolicies: []api.HashPolicy{
				{Field: "header", FieldValue: "x-user-id"},
				{Field: "cookie", FieldValue: "sid", Terminal: true, CookieConfig: &api.CookieConfig{TTL: time.Hour, Path: "/app"}},
				{Field: "cookie", FieldValue: "s2", CookieConfig: &api.CookieConfig{Session: true}},
				{Field: "query_parameter", FieldValue: "tenant"},
				{SourceIP: true},
			}},
			Config{Policy: Maglev, HashPolicies: []HashPolicy{
				{Field: FieldHeader, FieldValue: "x-user-id"},
				{Field: FieldCookie, FieldValue: "sid", Terminal: true, Cookie: &CookieConfig{TTL: time.Hour, Path: "/app"}},
				{Field: FieldCookie, FieldValue: "s2", Cookie: &CookieConfig{Session: true}},
				{Field: FieldQuery, FieldValue: "tenant"},
				{SourceIP: true},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromConsul(tt.lb)
			if err != nil {
				t.Fatalf("FromConsul: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("FromConsul =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestFromConsulErrors(t *testing.T) {
	hp := func(p ...api.HashPolicy) *api.LoadBalancer {
		return &api.LoadBalancer{Policy: "ring_hash", HashPolicies: p}
	}
	tests := []struct {
		name  string
		lb    *api.LoadBalancer
		field string
		msg   string // the whole message
	}{
		{"unknown policy", &api.LoadBalancer{Policy: "least_conn"}, "LoadBalancer.Policy",
			`balance: LoadBalancer.Policy: unknown policy "least_conn" (want one of "round_robin", "random", "least_request", "ring_hash", "maglev")`},
		{"policy is case sensitive", &api.LoadBalancer{Policy: "Maglev"}, "LoadBalancer.Policy", ""},
		{"ring config on maglev", &api.LoadBalancer{Policy: "maglev", RingHashConfig: &api.RingHashConfig{MinimumRingSize: 10}},
			"LoadBalancer.RingHashConfig", `balance: LoadBalancer.RingHashConfig: set for policy "maglev"; it applies only to "ring_hash"`},
		{"least request config on ring hash", &api.LoadBalancer{Policy: "ring_hash", LeastRequestConfig: &api.LeastRequestConfig{ChoiceCount: 3}},
			"LoadBalancer.LeastRequestConfig", ""},
		{"least request config with default policy", &api.LoadBalancer{LeastRequestConfig: &api.LeastRequestConfig{ChoiceCount: 3}},
			"LoadBalancer.LeastRequestConfig", ""},
		{"one choice", &api.LoadBalancer{Policy: "least_request", LeastRequestConfig: &api.LeastRequestConfig{ChoiceCount: 1}},
			"LoadBalancer.LeastRequestConfig.ChoiceCount", ""},
		{"min ring too large", &api.LoadBalancer{Policy: "ring_hash", RingHashConfig: &api.RingHashConfig{MinimumRingSize: 1 << 24}},
			"LoadBalancer.RingHashConfig.MinimumRingSize", ""},
		{"max ring too large", &api.LoadBalancer{Policy: "ring_hash", RingHashConfig: &api.RingHashConfig{MaximumRingSize: 1 << 24}},
			"LoadBalancer.RingHashConfig.MaximumRingSize", ""},
		{"min above max", &api.LoadBalancer{Policy: "ring_hash", RingHashConfig: &api.RingHashConfig{MinimumRingSize: 4096, MaximumRingSize: 1024}},
			"LoadBalancer.RingHashConfig.MinimumRingSize", "balance: LoadBalancer.RingHashConfig.MinimumRingSize: 4096 is above MaximumRingSize 1024"},
		{"hash policies with default policy", &api.LoadBalancer{HashPolicies: []api.HashPolicy{{SourceIP: true}}},
			"LoadBalancer.HashPolicies", ""},
		{"hash policies with least request", &api.LoadBalancer{Policy: "least_request", HashPolicies: []api.HashPolicy{{SourceIP: true}}},
			"LoadBalancer.HashPolicies", `balance: LoadBalancer.HashPolicies: set for policy "least_request"; hash policies apply only to "ring_hash" and "maglev"`},
		{"unknown field", hp(api.HashPolicy{SourceIP: true}, api.HashPolicy{Field: "hedaer", FieldValue: "x"}),
			"LoadBalancer.HashPolicies[1].Field", `balance: LoadBalancer.HashPolicies[1].Field: unknown field "hedaer" (want "header", "cookie" or "query_parameter")`},
		{"source ip and field", hp(api.HashPolicy{SourceIP: true, Field: "header", FieldValue: "x"}),
			"LoadBalancer.HashPolicies[0].Field", ""},
		{"source ip and field value", hp(api.HashPolicy{SourceIP: true, FieldValue: "x"}),
			"LoadBalancer.HashPolicies[0].FieldValue", ""},
		{"field without value", hp(api.HashPolicy{Field: "cookie"}),
			"LoadBalancer.HashPolicies[0].FieldValue", "balance: LoadBalancer.HashPolicies[0].FieldValue: required: the cookie name to hash"},
		{"value without field", hp(api.HashPolicy{FieldValue: "x-user"}),
			"LoadBalancer.HashPolicies[0].Field", ""},
		{"empty hash policy", hp(api.HashPolicy{Terminal: true}),
			"LoadBalancer.HashPolicies[0]", ""},
		{"cookie config on header", hp(api.HashPolicy{Field: "header", FieldValue: "x", CookieConfig: &api.CookieConfig{TTL: time.Second}}),
			"LoadBalancer.HashPolicies[0].CookieConfig", `balance: LoadBalancer.HashPolicies[0].CookieConfig: set for field "header"; it applies only to "cookie"`},
		{"cookie config on source ip", hp(api.HashPolicy{SourceIP: true, CookieConfig: &api.CookieConfig{Session: true}}),
			"LoadBalancer.HashPolicies[0].CookieConfig", ""},
		{"session with ttl", hp(api.HashPolicy{Field: "cookie", FieldValue: "c", CookieConfig: &api.CookieConfig{Session: true, TTL: time.Minute}}),
			"LoadBalancer.HashPolicies[0].CookieConfig.TTL", ""},
		{"negative ttl", hp(api.HashPolicy{Field: "cookie", FieldValue: "c", CookieConfig: &api.CookieConfig{TTL: -time.Minute}}),
			"LoadBalancer.HashPolicies[0].CookieConfig.TTL", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromConsul(tt.lb)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("FromConsul error = %v, want a *ConfigError", err)
			}
			if ce.Field != tt.field {
				t.Errorf("error field = %q, want %q (%v)", ce.Field, tt.field, err)
			}
			if tt.msg != "" && err.Error() != tt.msg {
				t.Errorf("error =\n%s\nwant\n%s", err, tt.msg)
			}
		})
	}
}

func TestConfigNormalize(t *testing.T) {
	tests := []struct {
		in   Config
		def  Policy
		want Config
	}{
		{Config{}, LeastRequest, Config{Policy: LeastRequest, ChoiceCount: 2, MinRingSize: 1024, MaxRingSize: 8 << 20}},
		{Config{Policy: Maglev}, RoundRobin, Config{Policy: Maglev, ChoiceCount: 2, MinRingSize: 1024, MaxRingSize: 8 << 20}},
		{Config{Policy: "bogus", ChoiceCount: 1}, RoundRobin, Config{Policy: RoundRobin, ChoiceCount: 2, MinRingSize: 1024, MaxRingSize: 8 << 20}},
		{Config{MinRingSize: 4096, MaxRingSize: 100}, RoundRobin, Config{Policy: RoundRobin, ChoiceCount: 2, MinRingSize: 4096, MaxRingSize: 4096}},
		{Config{MinRingSize: 1 << 30, MaxRingSize: 1 << 30, ChoiceCount: 1 << 30}, RoundRobin,
			Config{Policy: RoundRobin, ChoiceCount: 1 << 16, MinRingSize: 8 << 20, MaxRingSize: 8 << 20}},
	}
	for _, tt := range tests {
		if got := tt.in.normalize(tt.def); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%+v.normalize(%s) = %+v, want %+v", tt.in, tt.def, got, tt.want)
		}
	}
}

func TestBalancerConfig(t *testing.T) {
	b := NewBalancer(LeastRequest)
	if got := b.Config().Policy; got != LeastRequest {
		t.Fatalf("Config().Policy before Update = %q, want %q", got, LeastRequest)
	}
	hp := []HashPolicy{{SourceIP: true}}
	b.Update(snap(1, 1), Config{Policy: Maglev, HashPolicies: hp})
	if got := b.Config(); got.Policy != Maglev || !reflect.DeepEqual(got.HashPolicies, hp) {
		t.Fatalf("Config() = %+v", got)
	}
}
