// Command outrider is a service-mesh sidecar proxy for Consul Connect.
//
//	outrider run -sidecar-for <service-id>   serve as that instance's sidecar
//	outrider inject -f app.yaml              add sidecars to a manifest or Compose file
//	outrider webhook -tls-cert F -tls-key F  inject sidecars into Pods as they are created
//	outrider version                         print the version
//
// On SIGTERM or SIGINT, `outrider run` first takes the instance out of
// Consul's routing: with -register it deregisters; otherwise (the
// registration is someone else's) it puts its proxy service in Consul
// maintenance mode, reason "outrider: draining (pid N)", which the next
// sidecar for that proxy lifts once it is ready (a maintenance mode with
// any other reason, an operator's, is never lifted). It keeps every
// listener serving for -drain-delay (5s; /ready answers 503), then closes
// them and drains for up to -drain-timeout, and exits 0. Calls to Consul
// during shutdown give up after 2s. See the README's Shutdown section.
package main

import (
	"context"
	"github.com/redis/go-redis/v9"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// go-redis logs every failed dial on its own; the rate limiter
	// reports Redis failures itself, rate-limited.
	redis.SetLogger(quietRedis{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}
