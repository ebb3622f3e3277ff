package consul

import (
	"errors"
	"net/http"
	"sync/atomic"

	"github.com/hashicorp/consul/api"
)

// NewClient is api.NewClient with a hook on the client's transport that
// lets a Watch honor Retry-After: consul/api turns a non-200 answer into an
// api.StatusError that keeps the code and body but not the headers, so the
// hook copies the Retry-After of an answer that is not a 200 into the
// query's context, where the Watch reads it. A client made by
// api.NewClient works with every Watch, but without that hint (a 429 is
// then retried with the ordinary backoff).
//
// cfg is used as api.NewClient uses it; its HttpClient's transport is
// wrapped (after api.NewClient has built it, TLS and unix sockets included).
func NewClient(cfg *api.Config) (*api.Client, error) {
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	// api.NewClient stores a copy of *cfg, so cfg.HttpClient is the very
	// *http.Client the new client sends with.
	if cfg.HttpClient == nil {
		return nil, errors.New("consul: api.NewClient left no HTTP client to hook")
	}
	next := cfg.HttpClient.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	if _, ok := next.(retryAfterTransport); !ok {
		cfg.HttpClient.Transport = retryAfterTransport{next: next}
	}
	return client, nil
}

// retryAfterKey is the context key of a query's *retryAfterSink.
type retryAfterKey struct{}

// retryAfterSink receives the Retry-After header of one query's answer.
type retryAfterSink struct{ v atomic.Pointer[string] }

// retryAfterTransport copies Retry-After from answers other than 200 into
// the request context's sink, when it has one.
type retryAfterTransport struct{ next http.RoundTripper }

func (t retryAfterTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err == nil && resp.StatusCode != http.StatusOK {
		if sink, ok := req.Context().Value(retryAfterKey{}).(*retryAfterSink); ok {
			if v := resp.Header.Get("Retry-After"); v != "" {
				sink.v.Store(&v)
			}
		}
	}
	return resp, err
}
