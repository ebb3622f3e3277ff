package certs

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Run watches the certificate files and reloads them on change, until ctx
// ends; call it once, on a goroutine the caller owns and waits for. It
// watches the directories that hold the files (and the directories their
// symlinks point into), so in-place writes, atomic renames and the
// Kubernetes Secret volume swap (a "..data" symlink renamed over) are all
// seen. Events are debounced, then every pair is reloaded (see Reload);
// every poll interval it reloads anyway, for missed events. Run returns
// nil when ctx ends, or an error if the watch cannot be set up; on return
// the Store keeps serving its last certificates and stops reporting its
// expiry gauges.
func (s *Store) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("certs: Run called twice")
	}
	if s.metrics != nil {
		defer s.metrics.unregister(s)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("certs: watching the certificate files: %w", err)
	}
	defer w.Close()
	for _, dir := range s.watchDirs() {
		if err := w.Add(dir); err != nil {
			return fmt.Errorf("certs: watching %s: %w", dir, err)
		}
	}
	// Files may have changed between New and the watch being set up.
	_ = s.Reload()

	debounce := time.NewTimer(s.debounce)
	debounce.Stop()
	defer debounce.Stop()
	poll := time.NewTicker(s.poll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			debounce.Reset(s.debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			s.log.Warn("certs: file watch", "error", err)
		case <-debounce.C:
			_ = s.Reload() // logged and counted by Reload
		case <-poll.C:
			_ = s.Reload()
		}
	}
}

// watchDirs are the directories of every configured file, and of the
// targets of those that are symlinks (certbot's live/ links into
// archive/; a Kubernetes link's target sits in the same directory).
func (s *Store) watchDirs() []string {
	var files []string
	for _, p := range s.cfg.Certificates {
		files = append(files, p.CertFile, p.KeyFile)
	}
	if ca := s.cfg.ClientAuth; ca != nil {
		files = append(files, ca.CAFile)
	}
	var dirs []string
	for _, f := range files {
		dirs = append(dirs, filepath.Dir(filepath.Clean(f)))
		if real, err := filepath.EvalSymlinks(f); err == nil {
			dirs = append(dirs, filepath.Dir(real))
		}
	}
	slices.Sort(dirs)
	return slices.Compact(dirs)
}
