package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/config"
	"github.com/outrider-mesh/outrider/discovery/consul"
	"github.com/outrider-mesh/outrider/internal/confval"
	"github.com/outrider-mesh/outrider/policy/jwtauth"
	"github.com/outrider-mesh/outrider/policy/pathnorm"
	"github.com/outrider-mesh/outrider/sidecar"
	"github.com/outrider-mesh/outrider/sidecar/overload"
	"github.com/outrider-mesh/outrider/telemetry/accesslog"
	"github.com/outrider-mesh/outrider/telemetry/tracing"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `Usage: outrider <command> [flags]

Commands:
  run       run as a Consul Connect sidecar
  wait      wait until a sidecar is ready (for application entrypoints and health checks)
  cert      a development SPIFFE CA: create a CA, issue SVIDs (not for production)
  inject    add Outrider sidecars to a Kubernetes manifest or a Compose file
  webhook   a Kubernetes admission webhook that injects sidecars into Pods
  version   print the version

Run 'outrider run -h' for the flags of run.
`

// Exit codes: 0 success, 1 runtime failure, 2 usage error.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// Main runs the CLI with args (without the program name) and returns the
// process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return runCmd(ctx, args[1:], stderr)
	case "wait":
		return waitCmd(ctx, args[1:], stdout, stderr)
	case "cert":
		return certCommand(args[1:], stdout, stderr)
	case "inject":
		return injectCmd(args[1:], os.Stdin, stdout, stderr)
	case "webhook":
		return webhookCmd(ctx, args[1:], stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, versionString())
		return exitOK
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "outrider: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

func versionString() string {
	rev := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = s.Value[:12]
			}
		}
	}
	return fmt.Sprintf("outrider %s (commit %s, %s, %s/%s)", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// runFlags are the flags of `outrider run`.
type runFlags struct {
	sidecarFor   string
	proxyID      string
	configFile   string
	set          map[string]bool // flags given on the command line
	adminBind    string
	drainTimeout time.Duration
	drainDelay   time.Duration
	logLevel     string
	logFormat    string
	httpAddr     string
	token        string
	concurrency  int
	dataPath     string
	grace        time.Duration
	postQuantum  bool

	policyFile string

	// Telemetry.
	otlpEndpoint    string
	traceSampling   float64
	accessLog       string
	accessLogFormat string
	accessLogSample float64
	pprof           bool
	overload        overload.Config // flags; non-zero fields win over the file's

	// Self-registration (-register).
	register    bool
	serviceName string
	servicePort int
	serviceAddr string
	publicPort  int
	publicAddr  string
	upstreams   []api.Upstream
}

func parseRun(args []string, stderr io.Writer) (runFlags, error) {
	var f runFlags
	fs := runFlagSet(&f, stderr)
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	return f, f.validate(fs)
}

// runFlagSet declares the flags of `outrider run` into f.
func runFlagSet(f *runFlags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("outrider run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.sidecarFor, "sidecar-for", os.Getenv("CONNECT_SIDECAR_FOR"),
		"ID of the service instance to be the sidecar for (env CONNECT_SIDECAR_FOR)")
	fs.StringVar(&f.proxyID, "proxy-id", os.Getenv("CONNECT_PROXY_ID"),
		"ID of the connect-proxy service registration to serve (env CONNECT_PROXY_ID)")
	fs.StringVar(&f.configFile, "config", os.Getenv("OUTRIDER_CONFIG"),
		"static mode: run from this configuration file (outrider.yaml; see config/CONFIG.md) instead of a Consul registration (env OUTRIDER_CONFIG)")
	fs.StringVar(&f.policyFile, "policy", os.Getenv("OUTRIDER_POLICY"),
		"local authorization rules and JWT providers layered over Consul's intentions (a YAML file; see config/CONFIG.md); SIGHUP re-reads it (env OUTRIDER_POLICY)")
	fs.StringVar(&f.adminBind, "admin-bind", "127.0.0.1:19000", "host:port of the admin endpoints (/ready, /config_dump); - to disable")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", 15*time.Second, "how long shutdown waits for open connections")
	fs.DurationVar(&f.drainDelay, "drain-delay", 5*time.Second,
		"on shutdown, keep every listener serving this long while the instance leaves Consul's routing (maintenance mode; deregistration with -register), /ready answering 503, before closing them; cut short when the application stops listening (0: close at once)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&f.httpAddr, "http-addr", "", "Consul agent HTTP address (default: CONSUL_HTTP_ADDR or 127.0.0.1:8500)")
	fs.IntVar(&f.concurrency, "concurrency", 0,
		"OS threads running Go code (GOMAXPROCS); default 1, or $GOMAXPROCS when set. One thread per sidecar avoids cross-thread wake-ups and measured the lowest CPU per request (bench/README.md)")
	fs.StringVar(&f.dataPath, "data-path", cmp.Or(os.Getenv("OUTRIDER_DATA_PATH"), "loop"),
		"how established streams are relayed: loop (epoll event loops, Linux) or goroutines (two per connection) (env OUTRIDER_DATA_PATH)")
	fs.DurationVar(&f.grace, "shutdown-grace-period", 10*time.Second,
		"on shutdown, keep upstream listeners open after the public one closed until the application stops listening or this long has passed (0: close at once)")
	fs.BoolVar(&f.postQuantum, "tls-post-quantum", false,
		"prefer the X25519MLKEM768 post-quantum hybrid key exchange on mesh links (about 25% more CPU per full handshake)")
	fs.StringVar(&f.otlpEndpoint, "otlp-endpoint", "",
		"OTLP collector for traces, e.g. http://127.0.0.1:4317 (default: OTEL_EXPORTER_OTLP_ENDPOINT; the other OTEL_* variables apply)")
	fs.Float64Var(&f.traceSampling, "trace-sampling", -1,
		"fraction of new traces to sample, 0 to 1 (parent-based: a sampled caller is always followed; default: OTEL_TRACES_SAMPLER, else 1)")
	fs.StringVar(&f.accessLog, "access-log", "", "write an access log line per request (per connection at L4): - for stdout, or a file path (default: off)")
	fs.StringVar(&f.accessLogFormat, "access-log-format", "json", "json or text")
	fs.Float64Var(&f.accessLogSample, "access-log-sampling", 1, "fraction of successful requests logged, 0 to 1; 0 logs errors only (errors are always logged)")
	fs.BoolVar(&f.pprof, "enable-pprof", false, "serve Go's profiler under /debug/pprof/ on the admin port")
	fs.IntVar(&f.overload.MaxConnections, "max-connections", 0,
		"client connections open at once, every listener together; more are closed at accept (default: 90% of the open-files limit; -1: none)")
	fs.IntVar(&f.overload.MaxRequests, "max-requests", 0, "HTTP requests in flight; more are answered 503 (default 10000; -1: none)")
	fs.Func("max-memory", "memory budget, e.g. 512MiB: requests shed from 95%, connections refused from 98% (default: GOMEMLIMIT, else 90% of the cgroup limit, else 2GiB; -1: none)",
		func(s string) error {
			n, err := confval.ParseByteSize(s)
			f.overload.MaxMemory = n
			return err
		})
	fs.BoolVar(&f.register, "register", false,
		"register the sidecar (and, with -service-name and -service-port, the application) in Consul, and deregister on exit; needs -sidecar-for and -public-port")
	fs.StringVar(&f.serviceName, "service-name", "", "with -register: register the application under this name, with the -sidecar-for value as its ID")
	fs.IntVar(&f.servicePort, "service-port", 0, "with -register: the application's port")
	fs.StringVar(&f.serviceAddr, "service-address", "", "with -register: the application's address (default: the node's)")
	fs.IntVar(&f.publicPort, "public-port", 0, "with -register: the sidecar's public mTLS port")
	fs.StringVar(&f.publicAddr, "public-address", "", "with -register: the address other sidecars dial (default: the node's)")
	fs.Func("upstream", "with -register: an upstream, [bind-ip:]name[@dc]:local-port (repeatable)", func(s string) error {
		u, err := consul.ParseUpstream(s)
		if err != nil {
			return err
		}
		f.upstreams = append(f.upstreams, u)
		return nil
	})
	fs.StringVar(&f.token, "token", "", "Consul ACL token (default: CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: outrider run (-sidecar-for <service-id> | -proxy-id <proxy-id> | -config <outrider.yaml>) [flags]\n\n"+
			"The Consul client honours CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN(_FILE), CONSUL_HTTP_SSL,\n"+
			"CONSUL_CACERT, CONSUL_CAPATH, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME,\n"+
			"CONSUL_HTTP_SSL_VERIFY and CONSUL_HTTP_AUTH like the consul CLI.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// validate checks the parsed flags together; fs prints the usage.
func (f *runFlags) validate(fs *flag.FlagSet) error {
	if f.drainDelay < 0 {
		return fmt.Errorf("-drain-delay: want 0 or more, got %s", f.drainDelay)
	}
	if f.dataPath != "loop" && f.dataPath != "goroutines" {
		fs.Usage()
		return fmt.Errorf("-data-path: want loop or goroutines, got %q", f.dataPath)
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if f.policyFile != "" && f.configFile != "" {
		return errors.New("-policy: with -config, write the rules in the file's authorization section")
	}
	switch {
	case f.configFile != "" && (f.sidecarFor != "" || f.proxyID != "" || f.register):
		return errors.New("-config excludes -sidecar-for, -proxy-id and -register: the file declares the sidecar")
	case f.configFile != "":
		return nil
	case f.sidecarFor == "" && f.proxyID == "":
		fs.Usage()
		return errors.New("one of -sidecar-for, -proxy-id or -config is required")
	case f.sidecarFor != "" && f.proxyID != "":
		fs.Usage()
		return errors.New("-sidecar-for and -proxy-id are exclusive")
	case f.register && f.sidecarFor == "":
		return errors.New("-register needs -sidecar-for <application service ID>")
	case f.register && (f.publicPort <= 0 || f.publicPort > 65535):
		return errors.New("-register needs -public-port (1-65535)")
	case f.register && (f.serviceName == "") != (f.servicePort == 0):
		return errors.New("-service-name and -service-port go together (to register the application too)")
	case !f.register && (f.serviceName != "" || f.servicePort != 0 || f.publicPort != 0 || len(f.upstreams) > 0):
		return errors.New("-service-name, -service-port, -public-port and -upstream need -register")
	}
	return nil
}

// concurrency resolves the -concurrency flag: an explicit value wins, then
// the GOMAXPROCS environment variable, then 1.
func concurrency(flagValue int, env string) (int, error) {
	switch {
	case flagValue < 0:
		return 0, fmt.Errorf("-concurrency: want a positive number, got %d", flagValue)
	case flagValue > 0:
		return flagValue, nil
	case env != "":
		n, err := strconv.Atoi(env)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("GOMAXPROCS=%q: want a positive number", env)
		}
		return n, nil
	}
	return 1, nil
}

// register performs -register, retrying while Consul cannot be reached.
func register(ctx context.Context, client *api.Client, f runFlags, log *slog.Logger) (string, func(context.Context) error, error) {
	r := consul.Registration{
		ServiceID:     f.sidecarFor,
		PublicAddress: f.publicAddr,
		PublicPort:    f.publicPort,
		Upstreams:     f.upstreams,
	}
	if f.serviceName != "" {
		r.Service = &api.AgentServiceRegistration{ID: f.sidecarFor, Name: f.serviceName, Port: f.servicePort, Address: f.serviceAddr}
	}
	for attempt := 1; ; attempt++ {
		proxyID, deregister, err := consul.Register(ctx, client, r)
		if err == nil {
			log.Info("registered in Consul", "proxy_id", proxyID, "service_id", f.sidecarFor, "upstreams", len(f.upstreams))
			return proxyID, deregister, nil
		}
		if errors.Is(err, consul.ErrNoSidecar) || errors.Is(err, consul.ErrRejected) || ctx.Err() != nil {
			return "", nil, err
		}
		delay := consul.Backoff(250*time.Millisecond, 30*time.Second, attempt)
		log.Warn("cannot register in Consul; retrying", "attempt", attempt, "retry_in", delay.Round(time.Millisecond), "error", err)
		select {
		case <-ctx.Done():
			return "", nil, ctx.Err()
		case <-time.After(delay):
		}
	}
}

// newLogger returns the process logger; its level lives in lv, which the
// admin API can change at run time.
func newLogger(level, format string, lv *slog.LevelVar, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	lv.Set(l)
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format: want text or json, got %q", format)
}

func runCmd(ctx context.Context, args []string, stderr io.Writer) int {
	f, err := parseRun(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "outrider run:", err)
		return exitUsage
	}
	level := new(slog.LevelVar)
	log, err := newLogger(f.logLevel, f.logFormat, level, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "outrider run:", err)
		return exitUsage
	}
	var file *config.File
	if f.configFile != "" {
		if file, err = config.Load(f.configFile); err != nil {
			fmt.Fprintln(stderr, "outrider run:", err)
			return exitUsage
		}
		f.fromFile(file)
	}
	traceCfg, err := tracing.FromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "outrider run:", err)
		return exitUsage
	}
	if file != nil && file.Telemetry.OTLPProtocol != "" && os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") == "" {
		traceCfg.Protocol = file.Telemetry.OTLPProtocol
	}
	if f.otlpEndpoint != "" {
		traceCfg.Endpoint, traceCfg.Enabled = f.otlpEndpoint, true
	}
	if f.traceSampling >= 0 {
		if f.traceSampling > 1 {
			fmt.Fprintln(stderr, "outrider run: -trace-sampling: want a fraction between 0 and 1, got", f.traceSampling)
			return exitUsage
		}
		traceCfg.Sampler, traceCfg.SamplerArg = "parentbased_traceidratio", f.traceSampling
	}
	access, err := accesslog.New(accesslog.Config{
		Enabled: f.accessLog != "", Path: f.accessLog, Format: f.accessLogFormat, SampleRate: f.accessLogSample,
		ErrorsOnly: f.accessLogSample == 0,
	}, os.Stdout)
	if err != nil {
		fmt.Fprintln(stderr, "outrider run: -access-log:", err)
		return exitUsage
	}
	defer access.Close()
	// SIGHUP reopens the access log file (logrotate's copytruncate is not
	// needed) and re-reads file identities.
	var onHUP []func()
	if f.accessLog != "" && f.accessLog != "-" {
		onHUP = append(onHUP, func() {
			if err := access.Reopen(); err != nil {
				log.Error("reopening the access log failed", "path", f.accessLog, "error", err)
			}
		})
	}
	threads, err := concurrency(f.concurrency, os.Getenv("GOMAXPROCS"))
	if err != nil {
		fmt.Fprintln(stderr, "outrider run:", err)
		return exitUsage
	}
	runtime.GOMAXPROCS(threads)
	cfg := api.DefaultConfig() // reads CONSUL_HTTP_* and CONSUL_* TLS variables
	if f.httpAddr != "" {
		cfg.Address = f.httpAddr
	}
	if f.token != "" {
		cfg.Token = f.token
	}
	var client *api.Client
	var st *static
	if file != nil {
		if st, err = fromFile(file, log); err != nil {
			fmt.Fprintf(stderr, "outrider run: %s: %v\n", f.configFile, err)
			return exitUsage
		}
		client = st.client
		if st.reload != nil {
			onHUP = append(onHUP, st.reload)
		}
	} else if client, err = consul.NewClient(cfg); err != nil {
		fmt.Fprintln(stderr, "outrider run: consul client:", err)
		return exitFail
	}
	var local *localPolicy
	var norm pathnorm.Options
	var started *config.Authorization // what SIGHUP compares a re-read file with
	if f.policyFile != "" {
		a, err := config.LoadPolicy(f.policyFile)
		if err == nil {
			local, err = compilePolicy(a, "", log)
		}
		if err != nil {
			fmt.Fprintf(stderr, "outrider run: -policy %s: %v\n", f.policyFile, err)
			return exitUsage
		}
		norm, started = a.PathNormalization.Options(), a
	}
	ov, err := overloadManager(f.overload, file, log)
	if err != nil {
		fmt.Fprintln(stderr, "outrider run:", err)
		return exitUsage
	}
	opts := sidecar.Options{
		Overload:      ov,
		SidecarFor:    f.sidecarFor,
		ProxyID:       f.proxyID,
		AdminBind:     f.adminBind,
		DrainTimeout:  f.drainTimeout,
		DrainDelay:    f.drainDelay,
		Logger:        log,
		ConsulAddress: cmp.Or(cfg.Address, "127.0.0.1:8500"),
		TokenSet:      cfg.Token != "" || cfg.TokenFile != "",
		Version:       version,
		EventLoop:     f.dataPath == "loop" && runtime.GOOS == "linux",

		ShutdownGracePeriod: f.grace,
		PostQuantum:         f.postQuantum,

		TraceConfig: &traceCfg,
		AccessLog:   access,
		LogLevel:    level,
		Pprof:       f.pprof,
	}
	if st != nil {
		opts.Config, opts.Identity, opts.Policy = &st.cfg, st.identity, st.policy
		opts.ConsulAddress, opts.TokenSet = st.consul, st.tokenSet
		opts.LocalPolicy, opts.JWT, opts.PathNormalization = st.local, st.jwt, st.norm
	}
	if local != nil {
		opts.LocalPolicy, opts.JWT, opts.PathNormalization = local.rules, local.jwt, norm
	}
	// A registration made by someone else leaves the routing through
	// Consul's maintenance mode; a self-registered one is deregistered.
	opts.Maintenance = file == nil && !f.register
	if f.register {
		proxyID, deregister, err := register(ctx, client, f, log)
		if err != nil {
			log.Error("outrider stopped", "error", err)
			return exitFail
		}
		opts.SidecarFor, opts.ProxyID = "", proxyID
		var once sync.Once
		opts.OnShutdown = func() {
			once.Do(func() {
				dctx, cancel := context.WithTimeout(context.Background(), sidecar.LeaveTimeout)
				defer cancel()
				if err := deregister(dctx); err != nil {
					log.Error("deregistration failed", "error", err)
					return
				}
				log.Info("deregistered from Consul", "proxy_id", proxyID)
			})
		}
		defer opts.OnShutdown() // also when Run fails before its shutdown
	}
	sc, err := sidecar.New(client, opts)
	if err != nil {
		fmt.Fprintln(stderr, "outrider run:", err)
		return exitUsage
	}
	if f.policyFile != "" || file != nil {
		if file != nil {
			started = &file.Authorization
		}
		onHUP = append(onHUP, func() { reloadPolicy(f, sc, opts.JWT, started, log) })
	}
	if len(onHUP) > 0 {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer func() { signal.Stop(hup); close(hup) }()
		go func() {
			for range hup {
				log.Info("SIGHUP: reopening the access log and re-reading identity files and authorization rules")
				for _, fn := range onHUP {
					fn()
				}
			}
		}()
	}
	if file != nil {
		log.Info("outrider starting", "version", version, "concurrency", threads, "config", f.configFile, "service", file.Service)
	} else {
		log.Info("outrider starting", "version", version, "concurrency", threads, "sidecar_for", f.sidecarFor, "proxy_id", f.proxyID, "consul", cfg.Address)
	}
	if err := sc.Run(ctx); err != nil {
		log.Error("outrider stopped", "error", err)
		return exitFail
	}
	log.Info("outrider stopped")
	return exitOK
}

// reloadPolicy re-reads the authorization rules (the -policy file, or the
// -config file's authorization section) and swaps them in; a file that
// does not load or compile keeps the rules in force. JWT providers are
// read at start only: their key files are re-read, a provider list that
// gains a provider refuses the reload, and other changes to the providers
// or to path_normalization are kept for the next start, with a warning.
func reloadPolicy(f runFlags, sc *sidecar.Sidecar, running *jwtauth.Verifier, started *config.Authorization, log *slog.Logger) {
	path, at := f.policyFile, ""
	var a *config.Authorization
	var err error
	if path != "" {
		a, err = config.LoadPolicy(path)
	} else {
		path, at = f.configFile, "authorization."
		var file *config.File
		if file, err = config.Load(path); err == nil {
			a = &file.Authorization
		}
	}
	var lp *localPolicy
	if err == nil {
		lp, err = compilePolicy(a, at, log)
	}
	if err == nil {
		for _, name := range lp.rules.Providers() {
			if running == nil {
				err = fmt.Errorf("provider %q: jwt_providers were added; restart to load them", name)
				break
			}
			if _, ok := running.Provider(name); !ok {
				err = fmt.Errorf("provider %q is not one of the running jwt_providers; restart to load new providers", name)
				break
			}
		}
	}
	if err != nil {
		log.Error("authorization rules not reloaded; keeping the rules in force", "file", path, "error", err)
		return
	}
	if !reflect.DeepEqual(a.PathNormalization, started.PathNormalization) {
		log.Warn("path_normalization changed; it applies at the next start, the current one stays in force", "file", path)
	}
	if !reflect.DeepEqual(a.JWTProviders, started.JWTProviders) {
		log.Warn("jwt_providers changed; the running providers are kept until the next start (their key files are re-read)", "file", path)
	}
	if running != nil {
		running.Reload()
	}
	switch {
	case f.policyFile != "":
		sc.StoreLocalPolicy(lp.rules)
	case !a.ConsulIntentions:
		sc.StorePolicy(lp.rules)
	case len(a.Rules) > 0 || a.JWT != nil:
		sc.StoreLocalPolicy(lp.rules)
	default:
		sc.StoreLocalPolicy(nil)
	}
}

// fromFile takes the admin and telemetry settings of a configuration file
// where the command line did not set them.
func (f *runFlags) fromFile(file *config.File) {
	if !f.set["admin-bind"] {
		f.adminBind = file.Admin.Bind
	}
	t := file.Telemetry
	if !f.set["otlp-endpoint"] && t.OTLPEndpoint != "" && os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" &&
		os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		f.otlpEndpoint = t.OTLPEndpoint
	}
	if !f.set["trace-sampling"] && t.TraceSampling != nil && os.Getenv("OTEL_TRACES_SAMPLER") == "" {
		f.traceSampling = *t.TraceSampling
	}
	if a := t.AccessLog; a != nil && !f.set["access-log"] {
		f.accessLog = a.Path
		if !f.set["access-log-format"] && a.Format != "" {
			f.accessLogFormat = a.Format
		}
		if !f.set["access-log-sampling"] && a.Sampling != nil {
			f.accessLogSample = *a.Sampling
		}
	}
}

// overloadManager builds the process's overload manager from the flags,
// over the file's overload section, and makes its memory budget the
// runtime's soft memory limit unless GOMEMLIMIT set one.
func overloadManager(flags overload.Config, file *config.File, log *slog.Logger) (*overload.Manager, error) {
	var cfg overload.Config
	if file != nil {
		cfg = file.Overload
	}
	cfg.MaxConnections = cmp.Or(flags.MaxConnections, cfg.MaxConnections)
	cfg.MaxRequests = cmp.Or(flags.MaxRequests, cfg.MaxRequests)
	cfg.MaxMemory = cmp.Or(flags.MaxMemory, cfg.MaxMemory)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("overload: %w", err)
	}
	b := cfg.Resolve(debug.SetMemoryLimit(-1))
	if b.MaxMemory > 0 && b.MemorySource != "GOMEMLIMIT" {
		debug.SetMemoryLimit(b.MaxMemory)
	}
	log.Info("overload budget", "max_connections", b.MaxConnections, "max_requests", b.MaxRequests,
		"max_memory", b.MaxMemory, "memory_source", b.MemorySource, "shed_at", b.ShedAt, "refuse_at", b.RefuseAt)
	return overload.New(b), nil
}
