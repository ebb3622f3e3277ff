package health_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every probe goroutine, transport and server is gone once each test has
// closed its Checker.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
