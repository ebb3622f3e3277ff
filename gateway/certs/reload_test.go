package certs

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// runStore starts s.Run and stops it (waiting for it) at cleanup. It
// returns once the watch is set up: Run's first reload is counted in m,
// the Metrics s was built with.
func runStore(t *testing.T, s *Store, m *Metrics) {
	t.Helper()
	before := reloadCount(m)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	eventually(t, "Run watching", func() bool { return reloadCount(m) > before })
}

// syncBuffer is a log sink safe for the Run goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestHotReloadInPlace(t *testing.T) {
	f := newFixture(t)
	m := NewMetrics(nil)
	s, err := New(f.cfg, WithMetrics(m, "l"), WithDebounce(10*time.Millisecond), WithPollInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	runStore(t, s, m)
	addr := serveTLS(t, s.TLSConfig())
	if got := servedSerial(t, addr, "a.example.com"); got != f.exact {
		t.Fatalf("before: %s", got)
	}
	// Overwrite both files of the exact pair (key first, as an operator
	// copying files would: the pair is mismatched in between).
	c, k, renewed := f.ca.leaf(t, leafOpts{}, "a.example.com")
	writePair(t, f.dir, "exact", c, k)
	eventually(t, "renewed certificate served", func() bool {
		return servedSerial(t, addr, "a.example.com") == renewed
	})
	if got := servedSerial(t, addr, "b.example.com"); got != f.wildcard {
		t.Errorf("other pair changed: %s", got)
	}
}

// TestHotReloadKubernetesSecret swaps a Secret volume the way the kubelet
// does: the files are symlinks through "..data", itself a symlink to a
// timestamped directory, and an update renames a new "..data" over it.
func TestHotReloadKubernetesSecret(t *testing.T) {
	ca, vol := newCA(t, "test CA"), t.TempDir()
	publish := func(gen string, certPEM, keyPEM []byte) {
		t.Helper()
		d := filepath.Join(vol, gen)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		writePair(t, d, "tls", certPEM, keyPEM)
		tmp := filepath.Join(vol, "..data_tmp")
		if err := os.Symlink(gen, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(vol, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	c, k, first := ca.leaf(t, leafOpts{}, "k8s.example.com")
	publish("..2024_01_01_00_00_00.1", c, k)
	for _, n := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", n), filepath.Join(vol, n)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{Certificates: []Certificate{{CertFile: filepath.Join(vol, "tls.crt"), KeyFile: filepath.Join(vol, "tls.key")}}}
	m := NewMetrics(nil)
	s, err := New(cfg, WithMetrics(m, "l"), WithDebounce(10*time.Millisecond), WithPollInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	runStore(t, s, m)
	addr := serveTLS(t, s.TLSConfig())
	if got := servedSerial(t, addr, "k8s.example.com"); got != first {
		t.Fatalf("before: %s, want %s", got, first)
	}
	c, k, second := ca.leaf(t, leafOpts{}, "k8s.example.com")
	publish("..2024_01_02_00_00_00.2", c, k)
	if err := os.RemoveAll(filepath.Join(vol, "..2024_01_01_00_00_00.1")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "certificate of the new Secret generation served", func() bool {
		return servedSerial(t, addr, "k8s.example.com") == second
	})
	// A second swap is seen too (the watch survived the first).
	c, k, third := ca.leaf(t, leafOpts{}, "k8s.example.com")
	publish("..2024_01_03_00_00_00.3", c, k)
	eventually(t, "third generation served", func() bool {
		return servedSerial(t, addr, "k8s.example.com") == third
	})
}

func TestBrokenReplacementKeepsOld(t *testing.T) {
	f := newFixture(t)
	var logs syncBuffer
	m := NewMetrics(nil)
	s, err := New(f.cfg, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), WithMetrics(m, "l"),
		WithDebounce(10*time.Millisecond), WithPollInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, s.TLSConfig())

	// The exact pair is renewed while the wildcard pair's certificate is
	// replaced by garbage: the renewal is served, the wildcard keeps its
	// previous certificate.
	c, k, renewed := f.ca.leaf(t, leafOpts{}, "a.example.com")
	writePair(t, f.dir, "exact", c, k)
	if err := os.WriteFile(f.cfg.Certificates[2].CertFile, []byte("-----BEGIN CERTIFICATE-----\ntruncated"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = s.Reload()
	if err == nil || !strings.Contains(err.Error(), "certificates[2]: ") || !strings.Contains(err.Error(), "wildcard.crt") {
		t.Fatalf("Reload error %v, want one naming certificates[2] and its file", err)
	}
	if got := servedSerial(t, addr, "a.example.com"); got != renewed {
		t.Errorf("renewed pair: serial %s, want %s", got, renewed)
	}
	if got := servedSerial(t, addr, "b.example.com"); got != f.wildcard {
		t.Errorf("broken pair: serial %s, want the previous %s", got, f.wildcard)
	}
	if le := s.Certificates()[2].LastError; !strings.Contains(le, "wildcard.crt") {
		t.Errorf("LastError %q", le)
	}
	if !strings.Contains(logs.String(), "keeping the previous certificate") || !strings.Contains(logs.String(), "wildcard.crt") {
		t.Errorf("log does not name the file: %s", logs.String())
	}

	// A missing key file, seen by the watcher, keeps it too; a fixed pair
	// is then picked up and the error cleared.
	runStore(t, s, m)
	if err := os.Remove(f.cfg.Certificates[2].KeyFile); err != nil {
		t.Fatal(err)
	}
	c, k, fixed := f.ca.leaf(t, leafOpts{}, "*.example.com")
	writePair(t, f.dir, "wildcard", c, k)
	eventually(t, "fixed pair served", func() bool {
		return servedSerial(t, addr, "b.example.com") == fixed
	})
	eventually(t, "error cleared", func() bool { return s.Certificates()[2].LastError == "" })
}

func TestRunStopsWithoutLeak(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f := newFixture(t)
	m := NewMetrics(nil)
	s, err := New(f.cfg, WithMetrics(m, "l"), WithPollInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	// Run is running once it has polled at least once.
	eventually(t, "polling", func() bool {
		return metricCount(m, "unchanged") > 1
	})
	if err := s.Run(context.Background()); err == nil {
		t.Error("second Run: no error")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if n := len(m.expiry.stores); n != 0 {
		t.Errorf("store still reported by the expiry gauge after Run returned (%d)", n)
	}
}

func metricCount(m *Metrics, outcome string) float64 {
	reg := newGatherer(m)
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, mm := range mf.GetMetric() {
			for _, l := range mm.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return mm.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// reloadCount is the number of reloads m counted, all outcomes.
func reloadCount(m *Metrics) float64 {
	return metricCount(m, "changed") + metricCount(m, "unchanged") + metricCount(m, "error")
}
