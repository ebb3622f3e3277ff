package testutil

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// CPUTime is the process's user and system CPU time in nanoseconds, for
// benchmarks that report CPU per operation. A benchmark's client and
// servers usually run in the same process: compare the figures of cases
// measured side by side, not one figure with a separate process's.
func CPUTime() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// Syscalls is the process's read and write system calls so far (syscr and
// syscw of /proc/self/io; 0, 0 where that is not available), for
// benchmarks that report system calls per operation alongside CPU.
func Syscalls() (reads, writes int64) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, 0
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return reads, writes
}
