package testutil

import "syscall"

// CPUTime is the process's user and system CPU time in nanoseconds, for
// benchmarks that report CPU per operation. A benchmark's client and
// servers usually run in the same process: compare the figures of cases
// measured side by side, not one figure with a separate process's.
func CPUTime() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
