package testutil

import (
	"syscall"
	"testing"
)

// DeadPort returns a loopback TCP port on which connections are refused
// for the rest of the test: a socket is bound to it but never listens, so
// no other test (or Consul agent) can be handed the same port meanwhile,
// as can happen with a port that was only briefly reserved.
func DeadPort(t testing.TB) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("testutil: socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("testutil: bind: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("testutil: getsockname: %v", err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}
