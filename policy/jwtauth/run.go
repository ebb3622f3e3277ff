package jwtauth

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/outrider-mesh/outrider/internal/backoff"
)

// Run fetches every remote key set, then refreshes each every
// CacheDuration (and early when a token names an unknown key), retrying
// failures with backoff and keeping the last good keys. It returns nil
// when ctx ends, after every goroutine it started has ended.
func (v *Verifier) Run(ctx context.Context) error {
	if v.opts.client == nil {
		// Its own transport, so that no idle connection outlives Run.
		t := http.DefaultTransport.(*http.Transport).Clone()
		defer t.CloseIdleConnections()
		v.client = &http.Client{Transport: t}
	}
	var wg sync.WaitGroup
	for _, p := range v.providers {
		if p.KeySet.Remote == nil {
			continue
		}
		wg.Go(func() { v.refresh(ctx, p) })
	}
	wg.Wait()
	return nil
}

func (v *Verifier) refresh(ctx context.Context, p *provider) {
	r := p.KeySet.Remote
	failures := 0
	for {
		err := v.fetch(ctx, p)
		wait := r.CacheDuration
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			p.fail(err)
			wait = backoff.Delay(time.Second, min(r.CacheDuration/2, time.Minute), failures)
			v.opts.log.Error("fetching a JWT key set failed; keeping the previous keys", "provider", p.Name,
				"uri", r.URI, "attempt", failures, "retry_in", wait, "error", err)
		} else {
			if failures > 0 || v.opts.log.Enabled(ctx, -4) {
				v.opts.log.Info("JWT key set fetched", "provider", p.Name, "uri", r.URI)
			}
			failures = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-p.early:
			t.Stop()
		}
	}
}

func (v *Verifier) fetch(ctx context.Context, p *provider) error {
	r := p.KeySet.Remote
	ctx, cancel := context.WithTimeout(ctx, r.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URI, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	client := v.opts.client
	if client == nil {
		client = v.client
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", r.URI, resp.Status)
	}
	doc, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err != nil {
		return err
	}
	return p.install(doc, v.opts.now())
}
