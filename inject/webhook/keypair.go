package webhook

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// pollInterval re-reads the files even without a file event (a missed
// event, a file system that sends none).
const pollInterval = time.Minute

// KeyPair is the serving certificate, reloaded from its files. Its
// methods are safe for concurrent use.
type KeyPair struct {
	certFile, keyFile string
	log               *slog.Logger
	cur               atomic.Pointer[tls.Certificate]
}

// LoadKeyPair reads a PEM certificate chain and its key.
func LoadKeyPair(certFile, keyFile string, log *slog.Logger) (*KeyPair, error) {
	k := &KeyPair{certFile: certFile, keyFile: keyFile, log: log}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// GetCertificate is tls.Config.GetCertificate: the latest good pair.
func (k *KeyPair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.cur.Load(), nil
}

func (k *KeyPair) reload() error {
	c, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("webhook: loading %s and %s: %w", k.certFile, k.keyFile, err)
	}
	if old := k.cur.Swap(&c); old != nil && old.Leaf != nil && c.Leaf != nil && !old.Leaf.Equal(c.Leaf) {
		k.log.Info("serving a new certificate", "not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339), "serial", c.Leaf.SerialNumber)
	}
	return nil
}

// Watch reloads the pair whenever something changes in the directories of
// its files (Kubernetes swaps a Secret volume's files through a symlink,
// so the directory is watched, not the files), and every pollInterval. A
// pair that does not load (a half-written update) is logged and the
// previous one kept. Watch blocks until ctx ends.
func (k *KeyPair) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("webhook: watching the certificate: %w", err)
	}
	defer w.Close()
	for _, dir := range []string{filepath.Dir(k.certFile), filepath.Dir(k.keyFile)} {
		if err := w.Add(dir); err != nil {
			return fmt.Errorf("webhook: watching %s: %w", dir, err)
		}
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.Errors:
			k.log.Warn("certificate watch", "error", err)
			continue
		case <-w.Events:
		case <-tick.C:
		}
		if err := k.reload(); err != nil {
			k.log.Warn("keeping the previous certificate", "error", err)
		}
	}
}
