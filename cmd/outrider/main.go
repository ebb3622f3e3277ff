// Command outrider is a service-mesh sidecar proxy for Consul Connect.
//
//	outrider run -sidecar-for <service-id>   serve as that instance's sidecar
//	outrider inject -f app.yaml              add sidecars to a manifest or Compose file
//	outrider webhook -tls-cert F -tls-key F  inject sidecars into Pods as they are created
//	outrider version                         print the version
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
