package spiffesource

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outrider-mesh/outrider/internal/backoff"
	"github.com/outrider-mesh/outrider/mtls"
)

// Name is the Source of this identity's Status.
const Name = "spiffe-workload-api"

// Source is the identity served by the SPIFFE Workload API. See the package
// documentation for its contract.
type Source struct {
	addr       string
	hint       string
	log        *slog.Logger
	minBackoff time.Duration
	maxBackoff time.Duration

	store   *mtls.Store
	running atomic.Bool
}

var _ mtls.Identity = (*Source)(nil)

// Option configures a Source.
type Option func(*Source)

// WithAddress sets the Workload API address, a URI such as
// unix:///run/spire/agent.sock or tcp://127.0.0.1:8081. The default is the
// SPIFFE_ENDPOINT_SOCKET environment variable, read by New.
func WithAddress(addr string) Option { return func(s *Source) { s.addr = addr } }

// WithLogger sets the logger; the default discards. Records carry the
// attribute identity=spiffe-workload-api.
func WithLogger(l *slog.Logger) Option {
	return func(s *Source) {
		if l != nil {
			s.log = l
		}
	}
}

// WithBackoff sets the delay before the first retry (lo) and the longest
// delay (hi); each delay doubles up to hi and is then jittered to between
// half and all of it. The default is 250ms to 30s. It also bounds the gRPC
// client's own reconnection delays, so that an agent that comes back is
// reached within hi.
func WithBackoff(lo, hi time.Duration) Option {
	return func(s *Source) {
		if lo > 0 {
			s.minBackoff = lo
		}
		if hi > 0 {
			s.maxBackoff = hi
		}
	}
}

// WithSVIDHint makes the Source use the first SVID whose hint (set by the
// operator on the SPIRE registration entry) is hint, instead of the first
// SVID. A response without such an SVID is rejected.
func WithSVIDHint(hint string) Option { return func(s *Source) { s.hint = hint } }

// New returns a Source configured by opts. Nothing is dialed until Run.
func New(opts ...Option) *Source {
	s := &Source{
		addr:       os.Getenv(workloadapi.SocketEnv),
		log:        slog.New(slog.DiscardHandler),
		minBackoff: 250 * time.Millisecond,
		maxBackoff: 30 * time.Second,
	}
	for _, o := range opts {
		o(s)
	}
	s.maxBackoff = max(s.maxBackoff, s.minBackoff)
	s.log = s.log.With("identity", Name)
	s.store = mtls.NewStore(Name, s.addr, s.log)
	return s
}

// Run follows the Workload API until ctx is done, then returns ctx.Err().
// It returns at once an error for a missing or malformed address.
func (s *Source) Run(ctx context.Context) error {
	if s.addr == "" {
		return fmt.Errorf("spiffesource: no SPIFFE Workload API address: set %s (e.g. unix:///run/spire/agent.sock) or configure the address", workloadapi.SocketEnv)
	}
	if err := workloadapi.ValidateAddress(s.addr); err != nil {
		return fmt.Errorf("spiffesource: SPIFFE Workload API address %q: %w", s.addr, err)
	}
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("spiffesource: Run is already running")
	}
	defer s.running.Store(false)

	w := &watcher{s: s, ctx: ctx}
	client, err := workloadapi.New(ctx,
		workloadapi.WithAddr(s.addr),
		workloadapi.WithBackoffStrategy(w),
		workloadapi.WithDialOptions(grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: grpcbackoff.Config{
				BaseDelay:  s.minBackoff,
				Multiplier: 2,
				Jitter:     0.2,
				MaxDelay:   s.maxBackoff,
			},
			MinConnectTimeout: 20 * time.Second,
		})))
	if err != nil {
		// Dialing does not block: only an unusable address fails here.
		return fmt.Errorf("spiffesource: SPIFFE Workload API client for %s: %w", s.addr, err)
	}
	defer func() {
		if err := client.Close(); err != nil {
			s.log.Debug("closing the SPIFFE Workload API client", "address", s.addr, "error", err)
		}
	}()
	for {
		// WatchX509Context retries on its own (with w as its backoff) and
		// returns when ctx is done or when the server rejected the request
		// as invalid, which w has logged already.
		err := client.WatchX509Context(ctx, w)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.log.Debug("SPIFFE Workload API watch ended; starting a new one", "address", s.addr, "error", err)
		if !backoff.Sleep(ctx, w.Next()) {
			return ctx.Err()
		}
	}
}

// Ready is closed once a first SVID and its trust domain's bundle are held.
func (s *Source) Ready() <-chan struct{} { return s.store.Ready() }

// Status describes the held identity and the last failure, for the admin
// port.
func (s *Source) Status() mtls.IdentityStatus { return s.store.Status() }

// GetX509SVID implements x509svid.Source: the SVID held, or
// mtls.ErrNotReady.
func (s *Source) GetX509SVID() (*x509svid.SVID, error) { return s.store.GetX509SVID() }

// GetX509BundleForTrustDomain implements x509bundle.Source: the bundle of
// td from the latest accepted update. For a trust domain without one the
// error contains `no X.509 bundle for trust domain "<td>"`; before the first
// update it is mtls.ErrNotReady.
func (s *Source) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.store.GetX509BundleForTrustDomain(td)
}

// Certificate implements mtls.Source: the SVID held as a TLS certificate.
func (s *Source) Certificate() (*tls.Certificate, error) { return s.store.Certificate() }

// update applies one parsed Workload API response.
func (s *Source) update(c *workloadapi.X509Context) {
	svid, err := s.pick(c)
	if err == nil {
		_, err = s.store.Update(svid, c.Bundles.Bundles())
	}
	if err != nil {
		s.reject(err)
	}
}

// pick chooses the SVID of a response: the first, or the first with the
// configured hint.
func (s *Source) pick(c *workloadapi.X509Context) (*x509svid.SVID, error) {
	if len(c.SVIDs) == 0 {
		return nil, errors.New("no SVID in the response")
	}
	if s.hint == "" {
		return c.DefaultSVID(), nil
	}
	for _, svid := range c.SVIDs {
		if svid.Hint == s.hint {
			return svid, nil
		}
	}
	return nil, fmt.Errorf("no SVID with hint %q among the %d in the response", s.hint, len(c.SVIDs))
}

// reject records and logs a response that was not applied.
func (s *Source) reject(err error) {
	err = fmt.Errorf("spiffesource: Workload API update rejected: %w", err)
	s.log.Error("rejected an update from the SPIFFE Workload API; keeping the current identity",
		"address", s.addr, "error", err)
	s.store.Fail(err) // after the log record: whoever sees it in Status can count on the record
}

// watcher receives the watch's events and chooses its retry delays: it is
// both the X509ContextWatcher and the Backoff handed to the go-spiffe
// client. The client calls it on the goroutine running WatchX509Context
// (Run's), one call at a time, so its fields need no lock.
//
// On a broken or refused stream the client calls OnX509ContextWatchError
// and then Next for the delay before it retries; the delay is chosen (and
// logged) in the former. After every response received it calls Reset.
type watcher struct {
	s   *Source
	ctx context.Context

	attempt   int           // consecutive failed attempts, 0 while connected
	delay     time.Duration // chosen by the last failure; returned by Next
	downSince time.Time     // when the current run of failures began
	connected bool          // a response has been received once
}

var (
	_ workloadapi.X509ContextWatcher = (*watcher)(nil)
	_ workloadapi.BackoffStrategy    = (*watcher)(nil)
	_ workloadapi.Backoff            = (*watcher)(nil)
)

// OnX509ContextUpdate implements workloadapi.X509ContextWatcher.
func (w *watcher) OnX509ContextUpdate(c *workloadapi.X509Context) { w.s.update(c) }

// OnX509ContextWatchError implements workloadapi.X509ContextWatcher. err is
// either a stream error (a gRPC status, or io.EOF when the server ended the
// stream) or, for a response that did not parse, any other error.
func (w *watcher) OnX509ContextWatchError(err error) {
	if w.ctx.Err() != nil {
		return // Run is returning; the error is the cancellation
	}
	if _, isStatus := status.FromError(err); !isStatus && !errors.Is(err, io.EOF) {
		w.s.reject(err)
		return
	}
	w.attempt++
	if w.attempt == 1 {
		w.downSince = time.Now()
	}
	w.delay = backoff.Delay(w.s.minBackoff, w.s.maxBackoff, w.attempt)

	var msg string
	if code := status.Code(err); code == codes.Unavailable || code == codes.DeadlineExceeded || errors.Is(err, io.EOF) {
		msg = "cannot reach the SPIFFE Workload API; retrying"
		err = fmt.Errorf("spiffesource: cannot reach the SPIFFE Workload API at %s: %w", w.s.addr, err)
	} else { // PermissionDenied (workload not registered), InvalidArgument...
		msg = "the SPIFFE Workload API refused to serve an X.509 SVID; retrying"
		err = fmt.Errorf("spiffesource: the SPIFFE Workload API at %s refused the X.509 SVID watch: %w", w.s.addr, err)
	}
	attrs := []any{"address", w.s.addr, "attempt", w.attempt, "retry_in", w.delay.Round(time.Millisecond), "error", err}
	if svid, e := w.s.store.GetX509SVID(); e == nil {
		attrs = append(attrs, "keeping_svid", svid.ID.String(), "svid_not_after", svid.Certificates[0].NotAfter)
	}
	w.s.log.Warn(msg, attrs...)
	w.s.store.Fail(err) // after the log record, as in reject
}

// NewBackoff implements workloadapi.BackoffStrategy. The client asks for a
// backoff at each WatchX509Context call; the same one is returned, so that
// attempts are counted across them.
func (w *watcher) NewBackoff() workloadapi.Backoff { return w }

// Next implements workloadapi.Backoff: the delay chosen by the failure just
// reported.
func (w *watcher) Next() time.Duration {
	if w.delay == 0 { // a retry without a reported failure
		w.attempt++
		w.delay = backoff.Delay(w.s.minBackoff, w.s.maxBackoff, w.attempt)
	}
	d := w.delay
	w.delay = 0
	return d
}

// Reset implements workloadapi.Backoff: a response arrived, so the agent is
// reachable again.
func (w *watcher) Reset() {
	if w.attempt > 0 {
		msg := "connected to the SPIFFE Workload API"
		if w.connected {
			msg = "reconnected to the SPIFFE Workload API"
		}
		w.s.log.Info(msg, "address", w.s.addr, "after_attempts", w.attempt,
			"down_for", time.Since(w.downSince).Round(time.Millisecond))
	}
	w.attempt, w.delay, w.connected = 0, 0, true
}
