package sidecar

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a sidecar starts (listeners, workers, watches, event
// loops, HTTP/2 servers and transports, tracing) is gone once the tests
// have stopped their sidecars.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
