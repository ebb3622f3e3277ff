package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/outrider-mesh/outrider/inject"
	"github.com/outrider-mesh/outrider/inject/manifest"
	"github.com/outrider-mesh/outrider/inject/webhook"
)

// defaultImage is the sidecar image of this binary's version.
func defaultImage() string { return "ghcr.io/outrider-mesh/outrider:" + version }

// injectOptionFlags declares the flags `outrider inject` and `outrider
// webhook` share into o.
func injectOptionFlags(fs *flag.FlagSet, o *inject.Options) {
	fs.StringVar(&o.Image, "image", defaultImage(), "sidecar image (a workload's outrider.io/image annotation wins)")
	fs.StringVar(&o.ConsulAddr, "consul-addr", "", "the sidecar's CONSUL_HTTP_ADDR (default: $(HOST_IP):8500 on Kubernetes, a client agent per node; consul:8500 in Compose)")
	fs.StringVar(&o.TokenSecret, "token-secret", "", "Kubernetes: name/key of the Secret holding the sidecar's Consul ACL token (CONSUL_HTTP_TOKEN)")
	fs.IntVar(&o.PublicPort, "public-port", inject.DefaultPublicPort, "the sidecar's public mTLS port (annotation outrider.io/public-port wins)")
	fs.IntVar(&o.AdminPort, "admin-port", inject.DefaultAdminPort, "the sidecar's admin port on 127.0.0.1 (annotation outrider.io/admin-port wins)")
	fs.StringVar(&o.LogLevel, "log-level", "", "the sidecar's -log-level (default: outrider run's; annotation outrider.io/log-level wins)")
	fs.DurationVar(&o.ShutdownGracePeriod, "shutdown-grace-period", 0, "the sidecar's -shutdown-grace-period (default: outrider run's, 10s)")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", 0, "the sidecar's -drain-timeout (default: outrider run's, 15s)")
	fs.DurationVar(&o.DrainDelay, "drain-delay", 0, "the sidecar's -drain-delay (default: outrider run's, 5s); terminationGracePeriodSeconds is raised to cover it, the grace period and the drain timeout")
	fs.StringVar(&o.CPURequest, "cpu-request", "50m", "Kubernetes: the sidecar's CPU request (empty: none)")
	fs.StringVar(&o.MemoryRequest, "memory-request", "64Mi", "Kubernetes: the sidecar's memory request (empty: none)")
	fs.StringVar(&o.CPULimit, "cpu-limit", "", "Kubernetes: the sidecar's CPU limit (default: none)")
	fs.StringVar(&o.MemoryLimit, "memory-limit", "256Mi", "Kubernetes: the sidecar's memory limit (empty: none)")
	fs.BoolVar(&o.NativeSidecar, "native-sidecar", false, "Kubernetes 1.29+: inject a native sidecar (an init container with restartPolicy Always) that starts before the application; Jobs always get one")
}

// subcommandFlagSet is an empty flag set that prints usage, then the
// flags, on stderr.
func subcommandFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage+"\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// parseSubcommand parses args into fs and reports the exit code when the
// command must stop: 0 for -h, 2 for bad flags or arguments.
func parseSubcommand(fs *flag.FlagSet, args []string, stderr io.Writer) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, true
		}
		return exitUsage, true
	}
	if fs.NArg() > 0 {
		fs.Usage()
		fmt.Fprintf(stderr, "%s: unexpected arguments: %s\n", fs.Name(), strings.Join(fs.Args(), " "))
		return exitUsage, true
	}
	return 0, false
}

// injectFlags are the flags of `outrider inject`.
type injectFlags struct {
	o             inject.Options
	in, out, form string
}

func injectFlagSet(f *injectFlags, stderr io.Writer) *flag.FlagSet {
	fs := subcommandFlagSet("outrider inject", "Usage: outrider inject [-f FILE|-] [-o FILE|-] [-format auto|compose|kubernetes] [flags]\n\n"+
		"Adds an Outrider sidecar to every workload annotated outrider.io/inject: \"true\" (Kubernetes pod\n"+
		"templates) or labelled so (Compose services). Injecting twice changes nothing.\n", stderr)
	fs.StringVar(&f.in, "f", "-", "the file to read; - for stdin")
	fs.StringVar(&f.out, "o", "-", "the file to write; - for stdout")
	fs.StringVar(&f.form, "format", "auto", "auto (Compose when the file has a top-level services mapping), compose or kubernetes")
	injectOptionFlags(fs, &f.o)
	return fs
}

// injectCmd implements `outrider inject`: it reads a Compose file or a
// Kubernetes manifest and writes it with the sidecars added.
func injectCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var f injectFlags
	fs := injectFlagSet(&f, stderr)
	if code, stop := parseSubcommand(fs, args, stderr); stop {
		return code
	}
	o, in, out := f.o, f.in, f.out
	format, err := manifest.ParseFormat(f.form)
	if err == nil {
		err = o.Validate()
	}
	if err != nil {
		fmt.Fprintln(stderr, "outrider inject:", err)
		return exitUsage
	}
	name := in
	var data []byte
	if in == "-" {
		name = "<stdin>"
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(in)
	}
	if err != nil {
		fmt.Fprintln(stderr, "outrider inject:", err)
		return exitFail
	}
	result, err := manifest.Inject(data, format, o)
	if err != nil {
		fmt.Fprintf(stderr, "outrider inject: %s: %v\n", name, err)
		return exitFail
	}
	if out == "-" {
		_, err = stdout.Write(result)
	} else {
		err = os.WriteFile(out, result, 0o644)
	}
	if err != nil {
		fmt.Fprintln(stderr, "outrider inject:", err)
		return exitFail
	}
	return exitOK
}

// webhookFlags are the flags of `outrider webhook`.
type webhookFlags struct {
	o                           inject.Options
	listen, cert, key, logLevel string
}

func webhookFlagSet(f *webhookFlags, stderr io.Writer) *flag.FlagSet {
	fs := subcommandFlagSet("outrider webhook", "Usage: outrider webhook -tls-cert FILE -tls-key FILE [-listen :8443] [flags]\n\n"+
		"A Kubernetes mutating admission webhook (admission.k8s.io/v1) that injects the sidecar into\n"+
		"annotated Pods. See examples/kubernetes.\n", stderr)
	fs.StringVar(&f.listen, "listen", ":8443", "host:port to serve HTTPS on (POST /mutate, GET /healthz)")
	fs.StringVar(&f.cert, "tls-cert", "", "PEM certificate chain, reloaded when it changes (required)")
	fs.StringVar(&f.key, "tls-key", "", "PEM private key, reloaded when it changes (required)")
	fs.StringVar(&f.logLevel, "webhook-log-level", "info", "the webhook's own log level: debug, info, warn or error")
	injectOptionFlags(fs, &f.o)
	return fs
}

// webhookCmd implements `outrider webhook`: the mutating admission
// webhook, until ctx ends (SIGTERM).
func webhookCmd(ctx context.Context, args []string, stderr io.Writer) int {
	var f webhookFlags
	fs := webhookFlagSet(&f, stderr)
	if code, stop := parseSubcommand(fs, args, stderr); stop {
		return code
	}
	o, cert, key := f.o, f.cert, f.key
	log, err := newLogger(f.logLevel, "json", new(slog.LevelVar), stderr)
	if err == nil {
		err = o.Validate()
	}
	if err == nil && (cert == "" || key == "") {
		err = errors.New("-tls-cert and -tls-key are required")
	}
	if err != nil {
		fmt.Fprintln(stderr, "outrider webhook:", err)
		return exitUsage
	}
	certs, err := webhook.LoadKeyPair(cert, key, log)
	if err != nil {
		fmt.Fprintln(stderr, "outrider webhook:", err)
		return exitFail
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		fmt.Fprintln(stderr, "outrider webhook:", err)
		return exitFail
	}
	log.Info("serving the injection webhook", "listen", ln.Addr().String(), "image", o.Image, "version", version)
	s := &webhook.Server{Handler: &webhook.Handler{Options: o, Log: log}, Certs: certs, Log: log}
	if err := s.Serve(ctx, ln); err != nil {
		log.Error("webhook stopped", "error", err)
		return exitFail
	}
	log.Info("webhook stopped")
	return exitOK
}
