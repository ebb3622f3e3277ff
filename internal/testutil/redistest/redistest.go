// Package redistest starts a private redis-server (Debian's package) for
// a test, on a Unix socket in a temporary directory.
package redistest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Binary is where Debian installs redis-server.
const Binary = "/usr/bin/redis-server"

// Start runs redis-server for the test and returns its socket path; the
// server stops when the test ends. It skips the test only when the binary
// is missing and OUTRIDER_REQUIRE_REDIS is unset (make test sets it).
func Start(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		if os.Getenv("OUTRIDER_REQUIRE_REDIS") == "" {
			t.Skip("redis-server not installed (set OUTRIDER_REQUIRE_REDIS to make this a failure)")
		}
		t.Fatalf("OUTRIDER_REQUIRE_REDIS is set but %s is missing: %v", Binary, err)
	}
	dir, err := os.MkdirTemp("", "outrider-redis")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "redis.sock")
	cmd := exec.Command(Binary, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no",
		"--dir", dir, "--enable-debug-command", "local")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		os.RemoveAll(dir)
	})
	for i := 0; ; i++ {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := c.Read(buf)
			c.Close()
			if string(buf[:n]) == "+PONG\r\n" {
				return sock
			}
		}
		if i == 500 {
			t.Fatal("redis-server did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
