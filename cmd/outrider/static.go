package main

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/config"
	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/discovery/consul"
	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/mtls/filesource"
	"github.com/outrider-mesh/outrider/mtls/spiffesource"
	"github.com/outrider-mesh/outrider/policy"
	"github.com/outrider-mesh/outrider/policy/jwtauth"
	"github.com/outrider-mesh/outrider/policy/pathnorm"
	"github.com/outrider-mesh/outrider/sidecar"
	"github.com/outrider-mesh/outrider/sidecar/balance"
)

// static is what a configuration file (outrider run -config) turns into:
// the sidecar's Config and the parts the Consul-native mode gets from
// Consul.
type static struct {
	cfg      sidecar.Config
	identity mtls.Identity // nil: Consul's Connect CA (the sidecar makes it)
	policy   policy.Policy // nil: Consul intentions
	local    *policy.Rules // rules layered over the intentions, or nil
	jwt      *jwtauth.Verifier
	norm     pathnorm.Options
	client   *api.Client // nil when nothing needs Consul
	consul   string      // the agent's address, for logs
	tokenSet bool
	// reload re-reads file identities (SIGHUP); nil for other sources.
	reload func()
}

// fromFile builds the static setup of f. It makes no connection: the
// sidecar's Run reaches Consul and the identity source, with retries.
func fromFile(f *config.File, log *slog.Logger) (*static, error) {
	s := &static{cfg: sidecar.Config{Service: f.Service, ProxyID: f.Service + "-sidecar-proxy"}}
	if f.Consul != nil {
		client, addr, tokenSet, err := consulClient(f.Consul)
		if err != nil {
			return nil, err
		}
		s.client, s.consul, s.tokenSet = client, addr, tokenSet
	}

	switch id := f.Identity; {
	case id.SPIFFE != nil:
		addr := cmp.Or(id.SPIFFE.Socket, os.Getenv("SPIFFE_ENDPOINT_SOCKET"))
		if addr == "" {
			return nil, errors.New("identity.spiffe.socket: not set, and SPIFFE_ENDPOINT_SOCKET is empty")
		}
		opts := []spiffesource.Option{spiffesource.WithAddress(addr), spiffesource.WithLogger(log)}
		if id.SPIFFE.Hint != "" {
			opts = append(opts, spiffesource.WithSVIDHint(id.SPIFFE.Hint))
		}
		s.identity = spiffesource.New(opts...)
	case id.Files != nil:
		bundles := make(map[string][]string, len(id.Files.Bundles))
		for td, paths := range id.Files.Bundles {
			bundles[td] = paths
		}
		src := filesource.New(filesource.Config{CertFile: id.Files.Cert, KeyFile: id.Files.Key, Bundles: bundles},
			filesource.WithLogger(log))
		s.identity, s.reload = src, src.Reload
	}

	lp, err := compilePolicy(&f.Authorization, "authorization.", log)
	if err != nil {
		return nil, err
	}
	s.jwt, s.norm = lp.jwt, f.Authorization.PathNormalization.Options()
	switch a := f.Authorization; {
	case !a.ConsulIntentions:
		s.policy = lp.rules
	case len(a.Rules) > 0 || a.JWT != nil:
		// Rules on top of the intentions: both must allow.
		s.local = lp.rules
	}

	if p := f.Public; p != nil {
		s.cfg.Public = sidecar.PublicListener{
			BindAddress: p.Bind, LocalService: p.LocalService, Protocol: sidecar.Protocol(p.Protocol),
			LocalConnectTimeout: p.LocalConnectTimeout, HandshakeTimeout: p.HandshakeTimeout,
			LocalRequestTimeout: p.LocalRequestTimeout, MaxHeaderBytes: p.MaxHeaderBytes,
			MaxHeaders: p.MaxHeaders,
			HTTPLimits: sidecar.HTTPLimits{IdleTimeout: p.IdleTimeout, BodyIdleTimeout: p.BodyIdleTimeout,
				MaxInterim: p.MaxInterimResponses, MaxConcurrentStreams: p.MaxConcurrentStreams,
				InitialStreamWindowSize: p.InitialStreamWindowSize, InitialConnectionWindowSize: p.InitialConnectionWindowSize},
		}
		if p.Gateway != nil {
			s.cfg.Public.Gateway = *p.Gateway
		}
	}
	for i, u := range f.Upstreams {
		up := sidecar.Upstream{
			DestinationName: u.Name, BindAddress: u.Bind, Protocol: sidecar.Protocol(u.Protocol),
			ConnectTimeout: u.ConnectTimeout, LoadBalancer: loadBalancer(u.LoadBalancer),
		}
		for _, e := range u.Endpoints {
			up.Endpoints = append(up.Endpoints, discovery.Endpoint{Address: e.Address, Identity: e.SPIFFEID, Weight: max(e.Weight, 1)})
		}
		if c := u.Consul; c != nil {
			if s.client == nil {
				return nil, fmt.Errorf("upstreams[%d].consul: needs the consul section", i)
			}
			up.DestinationName = cmp.Or(c.Service, u.Name)
			up.Datacenter = cmp.Or(c.Datacenter, f.Consul.Datacenter)
			up.Namespace = c.Namespace
			if c.SPIFFEID != "" || c.SPIFFEIDMeta != "" {
				up.Identities = expectedIDs(c)
			}
		}
		s.cfg.Upstreams = append(s.cfg.Upstreams, up)
	}
	// Ingress routes name upstreams by their name in the file; the
	// sidecar knows them by destination.
	for _, l := range f.Ingress {
		l.Routes = slices.Clone(l.Routes)
		for j, r := range l.Routes {
			if k := slices.IndexFunc(f.Upstreams, func(u config.Upstream) bool { return u.Name == r.Upstream }); k >= 0 {
				l.Routes[j].Upstream = s.cfg.Upstreams[k].DestinationName
			}
		}
		s.cfg.Ingress = append(s.cfg.Ingress, l)
	}
	return s, nil
}

// expectedIDs is the mixed mode's IdentityFunc: the instance's meta or the
// template, else Consul's format in the sidecar's trust domain.
func expectedIDs(c *config.ConsulDiscovery) consul.IdentityFunc {
	return func(in consul.Instance) (spiffeid.ID, error) {
		id, err := c.ExpectedID(config.Instance{Service: in.Service, Namespace: in.Namespace, Datacenter: in.Datacenter,
			Node: in.Node, Partition: in.Partition, Meta: in.Meta})
		if errors.Is(err, config.ErrConsulDefaultID) {
			return spiffeid.ID{}, fmt.Errorf("instance has no %s service meta and no spiffe_id template is set", c.SPIFFEIDMeta)
		}
		return id, err
	}
}

// loadBalancer converts the file's policy; nil keeps the protocol's
// default (round robin at L4, least request at L7).
func loadBalancer(lb config.LoadBalancer) *balance.Config {
	if lb.Policy == "" {
		return nil
	}
	c := &balance.Config{Policy: balance.Policy(lb.Policy)}
	switch {
	case lb.HashHeader != "":
		c.HashPolicies = []balance.HashPolicy{{Field: balance.FieldHeader, FieldValue: strings.ToLower(lb.HashHeader)}}
	case lb.HashCookie != nil:
		hp := balance.HashPolicy{Field: balance.FieldCookie, FieldValue: lb.HashCookie.Name}
		if lb.HashCookie.TTL > 0 {
			hp.Cookie = &balance.CookieConfig{TTL: lb.HashCookie.TTL, Path: lb.HashCookie.Path}
		}
		c.HashPolicies = []balance.HashPolicy{hp}
	case lb.HashSourceIP:
		c.HashPolicies = []balance.HashPolicy{{SourceIP: true}}
	}
	return c
}

// consulClient makes the Consul client of the file's consul section; empty
// keys keep the CONSUL_HTTP_* environment's values.
func consulClient(c *config.Consul) (*api.Client, string, bool, error) {
	cfg := api.DefaultConfig()
	if c.Address != "" {
		cfg.Address = c.Address
	}
	if c.TokenFile != "" {
		cfg.TokenFile, cfg.Token = c.TokenFile, ""
	}
	if t := c.TLS; t != nil {
		cfg.TLSConfig = api.TLSConfig{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, Address: t.ServerName}
		if !strings.HasPrefix(cfg.Address, "unix://") {
			cfg.Scheme = "https"
		}
	}
	client, err := consul.NewClient(cfg)
	if err != nil {
		return nil, "", false, fmt.Errorf("consul: %w", err)
	}
	return client, cmp.Or(cfg.Address, "127.0.0.1:8500"), cfg.Token != "" || cfg.TokenFile != "", nil
}
