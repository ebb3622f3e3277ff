package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// WantFileModes checks the permission bits of files in dir: want maps a
// file name to its mode.
func WantFileModes(t testing.TB, dir string, want map[string]os.FileMode) {
	t.Helper()
	for name, mode := range want {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
}
