package sidecar

import (
	"errors"
	"log/slog"
	"net"
	"time"
)

// serve accepts on ln until ln is closed, running handle for each
// connection on its own goroutine, tracked by conns (which closes the
// connection when handle returns). Temporary accept errors (such as running
// out of file descriptors) back off instead of spinning.
func serve(ln net.Listener, conns *tracker, log *slog.Logger, handle func(net.Conn)) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = acceptBackoff(delay)
			log.Warn("accept failed; backing off", "listener", ln.Addr().String(), "retry_in", delay, "error", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		release := conns.add(c)
		go func() {
			defer release()
			handle(c)
		}()
	}
}
