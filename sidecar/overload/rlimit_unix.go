//go:build unix

package overload

import (
	"math"
	"syscall"
)

// fileLimit is the soft limit on open files (Go raises it to the hard
// limit at start), 0 when unknown or unlimited.
func fileLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 || rl.Cur >= math.MaxInt32 {
		return 0
	}
	return int(rl.Cur)
}
