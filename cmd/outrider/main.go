// Command outrider is a service-mesh sidecar proxy for Consul Connect.
//
//	outrider run -sidecar-for <service-id>   serve as that instance's sidecar
//	outrider version                         print the version
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
