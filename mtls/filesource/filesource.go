package filesource

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/outrider-mesh/outrider/internal/backoff"
	"github.com/outrider-mesh/outrider/mtls"
)

// Name is the Source of this identity's Status.
const Name = "files"

// debounce is how long after the last file event the files are read.
const debounce = 100 * time.Millisecond

// Config names the files of the identity (identity.files in the sidecar's
// configuration).
type Config struct {
	// CertFile (cert) is the SVID's certificate chain, PEM, leaf first.
	CertFile string `json:"cert"`
	// KeyFile (key) is the SVID's private key, PEM, unencrypted: PKCS#8
	// ("PRIVATE KEY"), SEC1 ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE
	// KEY"). It may be the same file as CertFile.
	KeyFile string `json:"key"`
	// Bundles (bundles) maps a trust domain name ("example.org") to the
	// files of its X.509 bundle; the authorities of a trust domain's files
	// are merged. Each file is PEM CA certificates, or a SPIFFE bundle
	// (JWKS) in JSON, told apart by content: JSON starts with '{'. The
	// SVID's own trust domain must be listed; every other one is federated.
	Bundles map[string][]string `json:"bundles"`
}

// Validate reports every missing or malformed field, naming it
// (identity.files.cert, .key, .bundles).
func (c Config) Validate() error {
	var errs []error
	if c.CertFile == "" {
		errs = append(errs, errors.New("identity.files.cert: required"))
	}
	if c.KeyFile == "" {
		errs = append(errs, errors.New("identity.files.key: required"))
	}
	if len(c.Bundles) == 0 {
		errs = append(errs, errors.New("identity.files.bundles: required (at least the bundle of the SVID's trust domain)"))
	}
	for _, name := range slices.Sorted(maps.Keys(c.Bundles)) {
		if _, err := spiffeid.TrustDomainFromString(name); err != nil {
			errs = append(errs, fmt.Errorf("identity.files.bundles: %q is not a trust domain name: %w", name, err))
			continue
		}
		files := c.Bundles[name]
		if len(files) == 0 {
			errs = append(errs, fmt.Errorf("identity.files.bundles[%q]: required: one or more files", name))
		}
		for i, f := range files {
			if f == "" {
				errs = append(errs, fmt.Errorf("identity.files.bundles[%q][%d]: empty file name", name, i))
			}
		}
	}
	return errors.Join(errs...)
}

// Source is the identity read from files. See the package documentation
// for its contract.
type Source struct {
	cfg        Config
	log        *slog.Logger
	poll       time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
	watch      bool // follow file events; tests turn it off to isolate Reload and polling

	store   *mtls.Store
	reload  chan struct{} // capacity 1: a pending Reload
	running atomic.Bool
}

var _ mtls.Identity = (*Source)(nil)

// Option configures a Source.
type Option func(*Source)

// WithLogger sets the logger; the default discards. Records carry the
// attribute identity=files.
func WithLogger(l *slog.Logger) Option {
	return func(s *Source) {
		if l != nil {
			s.log = l
		}
	}
}

// WithPollInterval sets how often the files are read even without a file
// event (default 1 minute).
func WithPollInterval(d time.Duration) Option {
	return func(s *Source) {
		if d > 0 {
			s.poll = d
		}
	}
}

// WithBackoff sets the delays between attempts after a failed load: lo
// first, doubling up to hi, each jittered to between half and all of it
// (default 250ms to 30s).
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

// New returns a Source for the files in cfg. Nothing is read until Run,
// which also validates cfg.
func New(cfg Config, opts ...Option) *Source {
	s := &Source{
		cfg:        cfg,
		log:        slog.New(slog.DiscardHandler),
		poll:       time.Minute,
		minBackoff: 250 * time.Millisecond,
		maxBackoff: 30 * time.Second,
		watch:      true,
		reload:     make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(s)
	}
	s.maxBackoff = max(s.maxBackoff, s.minBackoff)
	s.log = s.log.With("identity", Name)
	s.store = mtls.NewStore(Name, cfg.CertFile, s.log)
	return s
}

// Reload asks Run to read the files again, parsing them even if they look
// unchanged. It does not block and does not wait for the load; a Reload
// made while Run is not running is served when it starts.
func (s *Source) Reload() {
	select {
	case s.reload <- struct{}{}:
	default: // one is pending already
	}
}

// Ready is closed once an SVID and its trust domain's bundle are loaded.
func (s *Source) Ready() <-chan struct{} { return s.store.Ready() }

// Status describes the loaded identity and the last failure, for the admin
// port.
func (s *Source) Status() mtls.IdentityStatus { return s.store.Status() }

// GetX509SVID implements x509svid.Source: the SVID loaded, or
// mtls.ErrNotReady.
func (s *Source) GetX509SVID() (*x509svid.SVID, error) { return s.store.GetX509SVID() }

// GetX509BundleForTrustDomain implements x509bundle.Source. For a trust
// domain without a bundle the error contains `no X.509 bundle for trust
// domain "<td>"`; before the first load it is mtls.ErrNotReady.
func (s *Source) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.store.GetX509BundleForTrustDomain(td)
}

// Certificate implements mtls.Source: the SVID loaded as a TLS certificate.
func (s *Source) Certificate() (*tls.Certificate, error) { return s.store.Certificate() }

// Run loads the files and reloads them until ctx is done; it then returns
// ctx.Err(). An invalid Config is returned at once.
func (s *Source) Run(ctx context.Context) error {
	if err := s.cfg.Validate(); err != nil {
		return fmt.Errorf("filesource: %w", err)
	}
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("filesource: Run is already running")
	}
	defer s.running.Store(false)

	l := newLoader(s)
	defer l.retry.Stop()
	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	if s.watch {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			s.log.Warn("cannot watch the identity files; reading them every poll interval only",
				"poll_interval", s.poll, "error", err)
		} else {
			defer w.Close()
			l.watcher, events, watchErrs = w, w.Events, w.Errors
		}
	}
	l.watchDirs()
	l.load(false)

	poll := time.NewTicker(s.poll)
	defer poll.Stop()
	settle := stoppedTimer()
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if l.relevant(ev) {
				settle.Reset(debounce)
			}
		case err, ok := <-watchErrs:
			if !ok {
				watchErrs = nil
				continue
			}
			// An overflow loses events: read the files to be sure.
			s.log.Warn("file watch error; reading the identity files again", "error", err)
			settle.Reset(debounce)
		case <-settle.C:
			l.load(false)
		case <-l.retry.C:
			l.watchDirs()
			l.load(false)
		case <-poll.C:
			l.watchDirs()
			l.load(false)
		case <-s.reload:
			l.load(true)
		}
	}
}

// bundleFile is one bundle file of a trust domain.
type bundleFile struct {
	td   spiffeid.TrustDomain
	path string
}

// loader reads and applies the files. It belongs to Run's goroutine.
type loader struct {
	s       *Source
	bundles []bundleFile               // by trust domain, then in configured order
	names   map[string]map[string]bool // directory -> base names of the files in it
	watcher *fsnotify.Watcher          // nil: no file events
	watched map[string]string          // directory -> last error adding its watch ("" once added)

	last     *contents // what the previous attempt read (nil: none, or it failed to read)
	failures int       // consecutive failed loads
	logged   string    // the failure last logged at ERROR
	retry    *time.Timer
}

// contents is what one attempt read from the files.
type contents struct {
	cert, key []byte
	bundles   [][]byte // in loader.bundles order
}

func (c *contents) equal(o *contents) bool {
	return o != nil && bytes.Equal(c.cert, o.cert) && bytes.Equal(c.key, o.key) &&
		slices.EqualFunc(c.bundles, o.bundles, bytes.Equal)
}

func newLoader(s *Source) *loader {
	l := &loader{s: s, names: map[string]map[string]bool{}, watched: map[string]string{}, retry: stoppedTimer()}
	for _, name := range slices.Sorted(maps.Keys(s.cfg.Bundles)) {
		td := spiffeid.RequireTrustDomainFromString(name) // Validate checked it
		for _, f := range s.cfg.Bundles[name] {
			l.bundles = append(l.bundles, bundleFile{td: td, path: f})
		}
	}
	paths := []string{s.cfg.CertFile, s.cfg.KeyFile}
	for _, b := range l.bundles {
		paths = append(paths, b.path)
	}
	for _, p := range paths {
		dir, base := filepath.Split(filepath.Clean(p))
		dir = filepath.Clean(dir)
		if l.names[dir] == nil {
			l.names[dir] = map[string]bool{}
		}
		l.names[dir][base] = true
	}
	return l
}

// watchDirs adds a watch on every directory holding a file that is not
// watched yet (at start, or because it was missing or removed since).
func (l *loader) watchDirs() {
	if l.watcher == nil {
		return
	}
	current := make(map[string]bool)
	for _, d := range l.watcher.WatchList() {
		current[d] = true
	}
	for dir := range l.names {
		if current[dir] {
			continue
		}
		err := l.watcher.Add(dir)
		switch {
		case err == nil:
			l.watched[dir] = ""
			l.s.log.Debug("watching a directory of identity files", "dir", dir)
		case l.watched[dir] != err.Error():
			l.watched[dir] = err.Error()
			l.s.log.Warn("cannot watch a directory of identity files; it is polled", "dir", dir,
				"poll_interval", l.s.poll, "error", err)
		}
	}
}

// relevant reports whether ev may have changed one of the files: an event
// on one of them, on a Kubernetes atomic-writer entry ("..data" and its
// timestamped directories), or on a watched directory itself. Mere mode
// changes are not.
func (l *loader) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	name := filepath.Clean(ev.Name)
	if _, ok := l.names[name]; ok {
		return true
	}
	dir, base := filepath.Split(name)
	return l.names[filepath.Clean(dir)][base] || strings.HasPrefix(base, "..")
}

// read reads every file.
func (l *loader) read() (*contents, error) {
	c := &contents{bundles: make([][]byte, len(l.bundles))}
	var err error
	if c.cert, err = os.ReadFile(l.s.cfg.CertFile); err != nil {
		return nil, &fileError{file: l.s.cfg.CertFile, err: err}
	}
	if c.key, err = os.ReadFile(l.s.cfg.KeyFile); err != nil {
		return nil, &fileError{file: l.s.cfg.KeyFile, err: err}
	}
	for i, b := range l.bundles {
		if c.bundles[i], err = os.ReadFile(b.path); err != nil {
			return nil, &fileError{file: b.path, err: err}
		}
	}
	return c, nil
}

// load reads the files and publishes the identity they hold. Unless forced
// (Reload), files identical to the previous attempt's are not parsed again.
func (l *loader) load(forced bool) {
	c, err := l.read()
	if err == nil {
		if !forced && c.equal(l.last) {
			if l.failures > 0 { // still failing: keep reading at the backoff pace
				l.failures++
				l.scheduleRetry()
			}
			return
		}
		l.last = c
		err = l.apply(c, forced)
	} else {
		l.last = nil
	}
	if err != nil {
		l.fail(err, forced)
		return
	}
	l.failures, l.logged = 0, ""
	l.retry.Stop()
}

// apply parses c and publishes it.
func (l *loader) apply(c *contents, forced bool) error {
	cfg := l.s.cfg
	svid, err := parseSVID(cfg.CertFile, c.cert, cfg.KeyFile, c.key)
	if err != nil {
		return err
	}
	bundles, err := buildBundles(l.bundles, c.bundles)
	if err != nil {
		return err
	}
	td := svid.ID.TrustDomain()
	if !slices.ContainsFunc(l.bundles, func(b bundleFile) bool { return b.td == td }) {
		return fileErr(cfg.CertFile, "no bundle for the SVID's trust domain %q (SVID %s): identity.files.bundles lists only %v",
			td, svid.ID, slices.Sorted(maps.Keys(cfg.Bundles)))
	}
	changed, err := l.s.store.Update(svid, bundles)
	if err != nil {
		return fmt.Errorf("filesource: %w", err)
	}
	if forced && !changed {
		l.s.log.Info("identity files reloaded; unchanged", "cert", cfg.CertFile)
	}
	return nil
}

// fail logs a failed load, records it for Status, and schedules the next
// attempt. The log record is written before Status shows the failure, so
// that whoever sees it in Status (the admin port, a test) finds it logged.
func (l *loader) fail(err error, forced bool) {
	attrs := []any{"error", err}
	var fe *fileError
	if errors.As(err, &fe) {
		attrs = append([]any{"file", fe.file}, attrs...)
	}
	if svid, err := l.s.store.GetX509SVID(); err == nil {
		attrs = append(attrs, "keeping_svid", svid.ID.String(), "svid_not_after", svid.Certificates[0].NotAfter)
	}
	l.failures++
	attrs = append(attrs, "attempt", l.failures)
	msg := "cannot load the identity files"
	if forced || err.Error() != l.logged {
		l.s.log.Error(msg, attrs...)
		l.logged = err.Error()
	} else {
		l.s.log.Debug(msg, attrs...)
	}
	l.s.store.Fail(err)
	l.scheduleRetry()
}

func (l *loader) scheduleRetry() {
	l.retry.Reset(backoff.Delay(l.s.minBackoff, l.s.maxBackoff, l.failures))
}

// stoppedTimer returns a timer that fires only once Reset.
func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}
