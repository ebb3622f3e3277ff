package inject

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/discovery/consul"
)

// Annotation (Kubernetes) and label (Compose) keys read by the injector.
const (
	AnnotationInject      = "outrider.io/inject"
	AnnotationService     = "outrider.io/service"
	AnnotationServicePort = "outrider.io/service-port"
	AnnotationUpstreams   = "outrider.io/upstreams"
	AnnotationPublicPort  = "outrider.io/public-port"
	AnnotationAdminPort   = "outrider.io/admin-port"
	AnnotationLogLevel    = "outrider.io/log-level"
	AnnotationImage       = "outrider.io/image"

	// AnnotationStatus marks an injected workload, with the value
	// StatusInjected.
	AnnotationStatus = "outrider.io/status"
	StatusInjected   = "injected"

	// consul-k8s's names for the same settings, read as aliases.
	ConsulInject      = "consul.hashicorp.com/connect-inject"
	ConsulService     = "consul.hashicorp.com/connect-service"
	ConsulServicePort = "consul.hashicorp.com/connect-service-port"
	ConsulUpstreams   = "consul.hashicorp.com/connect-service-upstreams"
)

// SidecarName is the name of the injected container; a Compose sidecar is
// the application's service name followed by "-" SidecarName.
const SidecarName = "outrider"

// Defaults of Options.
const (
	DefaultPublicPort          = 20000
	DefaultAdminPort           = 19000
	DefaultShutdownGracePeriod = 10 * time.Second // outrider run's -shutdown-grace-period
	DefaultDrainTimeout        = 15 * time.Second // outrider run's -drain-timeout
	DefaultDrainDelay          = 5 * time.Second  // outrider run's -drain-delay
	// LeaveTimeout is outrider run's bound on its deregistration at
	// shutdown (sidecar.LeaveTimeout).
	LeaveTimeout = 2 * time.Second
)

// BinaryPath is where the image holds the outrider binary (see Dockerfile).
const BinaryPath = "/usr/local/bin/outrider"

// Options are the injector's settings, the same for every workload of a
// file (command-line flags). The zero value of a field means its default.
type Options struct {
	// Image is the sidecar image unless a workload names its own
	// (outrider.io/image). Required.
	Image string
	// ConsulAddr is the sidecar's CONSUL_HTTP_ADDR. Default: per format,
	// "$(HOST_IP):8500" on Kubernetes (a Consul client agent on each node),
	// "consul:8500" in Compose.
	ConsulAddr string
	// TokenSecret, "name/key", is the Kubernetes Secret holding the
	// sidecar's Consul ACL token (CONSUL_HTTP_TOKEN). Default: no token.
	TokenSecret string
	// PublicPort and AdminPort are the defaults of the annotations of the
	// same name.
	PublicPort int
	AdminPort  int
	// LogLevel is the sidecar's -log-level unless a workload sets its own;
	// empty leaves outrider run's default.
	LogLevel string
	// ShutdownGracePeriod, DrainTimeout and DrainDelay are passed to
	// outrider run when set; Kubernetes' terminationGracePeriodSeconds is
	// raised to cover the longest shutdown they allow (ShutdownTime).
	ShutdownGracePeriod time.Duration
	DrainTimeout        time.Duration
	DrainDelay          time.Duration
	// Resources of the Kubernetes container, as Kubernetes quantities;
	// empty fields are left out.
	CPURequest, MemoryRequest, CPULimit, MemoryLimit string
	// NativeSidecar puts the Kubernetes sidecar in initContainers with
	// restartPolicy: Always (Kubernetes 1.29 and later): it starts, and is
	// ready, before the application, and stops after it. Jobs always get
	// one, since a regular container that never exits keeps a Job from
	// completing.
	NativeSidecar bool
}

var quantity = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$`)

// Validate checks o and names the bad field.
func (o Options) Validate() error {
	if o.Image == "" {
		return errors.New("inject: an image is required")
	}
	if o.TokenSecret != "" {
		name, key, ok := strings.Cut(o.TokenSecret, "/")
		if !ok || name == "" || key == "" {
			return fmt.Errorf("inject: token secret %q: want name/key", o.TokenSecret)
		}
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"public port", o.PublicPort}, {"admin port", o.AdminPort}} {
		if p.v < 0 || p.v > 65535 {
			return fmt.Errorf("inject: %s %d is not a port", p.name, p.v)
		}
	}
	if o.LogLevel != "" {
		if err := checkLogLevel(o.LogLevel); err != nil {
			return fmt.Errorf("inject: log level: %w", err)
		}
	}
	if o.ShutdownGracePeriod < 0 || o.DrainTimeout < 0 || o.DrainDelay < 0 {
		return errors.New("inject: shutdown grace period, drain timeout and drain delay must not be negative")
	}
	for _, q := range []struct{ name, v string }{
		{"cpu request", o.CPURequest}, {"memory request", o.MemoryRequest},
		{"cpu limit", o.CPULimit}, {"memory limit", o.MemoryLimit},
	} {
		if q.v != "" && !quantity.MatchString(q.v) {
			return fmt.Errorf("inject: %s %q is not a Kubernetes quantity (e.g. 50m, 64Mi)", q.name, q.v)
		}
	}
	return nil
}

// ShutdownTime is how long the sidecar may take to stop after SIGTERM: the
// drain delay (which its deregistration, bounded by LeaveTimeout, is part
// of), the shutdown grace period and the drain timeout, one after the
// other; 30s by default.
func (o Options) ShutdownTime() time.Duration {
	return max(LeaveTimeout, cmp.Or(o.DrainDelay, DefaultDrainDelay)) +
		cmp.Or(o.ShutdownGracePeriod, DefaultShutdownGracePeriod) + cmp.Or(o.DrainTimeout, DefaultDrainTimeout)
}

// Workload is what a format package knows of one workload.
type Workload struct {
	// Annotations are the pod template annotations or Compose labels.
	Annotations map[string]string
	// Name is the default service name.
	Name string
	// Ports are the application's ports, in file order; the first is the
	// default service port.
	Ports []Port
}

// Port is a port a workload declares; Name is empty when it has none.
type Port struct {
	Name   string
	Number int
}

// Spec is the sidecar of one workload, derived by Options.Spec.
type Spec struct {
	Service     string
	ServicePort int
	PublicPort  int
	AdminPort   int
	Upstreams   []api.Upstream
	LogLevel    string
	Image       string
}

// FieldError is a bad or missing annotation.
type FieldError struct {
	Field string // the annotation key
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErrorf(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// Enabled reports whether annotations opt a workload in.
func Enabled(annotations map[string]string) (bool, error) {
	for _, key := range []string{AnnotationInject, ConsulInject} {
		v, ok := annotations[key]
		if !ok {
			continue
		}
		on, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return false, fieldErrorf(key, "want true or false, got %q", v)
		}
		return on, nil
	}
	return false, nil
}

// lookup returns the value of the first key present.
func lookup(annotations map[string]string, keys ...string) (key, value string, ok bool) {
	for _, k := range keys {
		if v, ok := annotations[k]; ok {
			return k, strings.TrimSpace(v), true
		}
	}
	return "", "", false
}

// Spec derives the sidecar of w. Errors are *FieldError.
func (o Options) Spec(w Workload) (Spec, error) {
	a := w.Annotations
	s := Spec{
		Service:    w.Name,
		PublicPort: cmp.Or(o.PublicPort, DefaultPublicPort),
		AdminPort:  cmp.Or(o.AdminPort, DefaultAdminPort),
		LogLevel:   o.LogLevel,
		Image:      o.Image,
	}
	if key, v, ok := lookup(a, AnnotationService, ConsulService); ok {
		if v == "" {
			return s, fieldErrorf(key, "empty service name")
		}
		s.Service = v
	}
	if s.Service == "" {
		return s, fieldErrorf(AnnotationService, "not set, and the workload has no name to default to")
	}
	if strings.ContainsAny(s.Service, " \t/:@,") {
		return s, fieldErrorf(AnnotationService, "%q is not a valid Consul service name", s.Service)
	}
	key, v, ok := lookup(a, AnnotationServicePort, ConsulServicePort)
	switch {
	case ok:
		p, err := resolvePort(v, w.Ports)
		if err != nil {
			return s, &FieldError{Field: key, Err: err}
		}
		s.ServicePort = p
	case len(w.Ports) > 0:
		s.ServicePort = w.Ports[0].Number
	default:
		return s, fieldErrorf(AnnotationServicePort, "not set, and the workload declares no port to default to")
	}
	var err error
	if key, v, ok := lookup(a, AnnotationUpstreams); ok {
		s.Upstreams, err = ParseUpstreams(v)
		if err != nil {
			return s, &FieldError{Field: key, Err: err}
		}
	} else if key, v, ok := lookup(a, ConsulUpstreams); ok {
		s.Upstreams, err = ParseConsulUpstreams(v)
		if err != nil {
			return s, &FieldError{Field: key, Err: err}
		}
	}
	for _, p := range []struct {
		key string
		dst *int
	}{{AnnotationPublicPort, &s.PublicPort}, {AnnotationAdminPort, &s.AdminPort}} {
		if _, v, ok := lookup(a, p.key); ok {
			if *p.dst, err = portNumber(v); err != nil {
				return s, &FieldError{Field: p.key, Err: err}
			}
		}
	}
	if _, v, ok := lookup(a, AnnotationLogLevel); ok {
		if err := checkLogLevel(v); err != nil {
			return s, &FieldError{Field: AnnotationLogLevel, Err: err}
		}
		s.LogLevel = v
	}
	if _, v, ok := lookup(a, AnnotationImage); ok {
		if v == "" || strings.ContainsAny(v, " \t\n") {
			return s, fieldErrorf(AnnotationImage, "%q is not an image reference", v)
		}
		s.Image = v
	}
	if err := s.checkPorts(); err != nil {
		return s, err
	}
	return s, nil
}

// checkPorts rejects two listeners on one port of the shared network
// namespace; Consul would refuse some of these at registration, the
// kernel the rest at start.
func (s Spec) checkPorts() error {
	used := map[int]string{s.ServicePort: "the service port"}
	claim := func(field string, port int, what string) error {
		if prev, ok := used[port]; ok {
			return fieldErrorf(field, "%s %d is also %s", what, port, prev)
		}
		used[port] = what
		return nil
	}
	if err := claim(AnnotationPublicPort, s.PublicPort, "the public port"); err != nil {
		return err
	}
	if err := claim(AnnotationAdminPort, s.AdminPort, "the admin port"); err != nil {
		return err
	}
	for _, u := range s.Upstreams {
		if err := claim(AnnotationUpstreams, u.LocalBindPort, "the local port of upstream "+u.DestinationName); err != nil {
			return err
		}
	}
	return nil
}

func checkLogLevel(v string) error {
	switch v {
	case "debug", "info", "warn", "error":
		return nil
	}
	return fmt.Errorf("want debug, info, warn or error, got %q", v)
}

func portNumber(v string) (int, error) {
	p, err := strconv.Atoi(v)
	if err != nil || p <= 0 || p > 65535 {
		return 0, fmt.Errorf("%q is not a port (1-65535)", v)
	}
	return p, nil
}

// resolvePort reads a port number or the name of one of ports.
func resolvePort(v string, ports []Port) (int, error) {
	if p, err := portNumber(v); err == nil {
		return p, nil
	} else if _, numErr := strconv.Atoi(v); numErr == nil || v == "" {
		return 0, err
	}
	if i := slices.IndexFunc(ports, func(p Port) bool { return p.Name == v }); i >= 0 {
		return ports[i].Number, nil
	}
	return 0, fmt.Errorf("%q is neither a port number nor the name of a declared port", v)
}

// ParseUpstreams reads outrider.io/upstreams: comma-separated -upstream
// values ([bind-ip:]name[@dc]:local-port).
func ParseUpstreams(v string) ([]api.Upstream, error) {
	return parseList(v, consul.ParseUpstream)
}

// ParseConsulUpstreams reads consul-k8s's
// consul.hashicorp.com/connect-service-upstreams: comma-separated
// name:local-port[:dc]. consul-k8s's other forms (prepared_query:,
// name.namespace.partition, the labeled .svc. form, named ports) need
// Consul Enterprise features or a pod lookup Outrider does not do, and are
// rejected.
func ParseConsulUpstreams(v string) ([]api.Upstream, error) {
	return parseList(v, func(s string) (api.Upstream, error) {
		parts := strings.Split(s, ":")
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		var u api.Upstream
		switch {
		case parts[0] == "prepared_query":
			return u, fmt.Errorf("upstream %q: prepared queries are not supported", s)
		case len(parts) < 2 || len(parts) > 3:
			return u, fmt.Errorf("upstream %q: want name:port[:datacenter]", s)
		case strings.Contains(parts[0], "."):
			return u, fmt.Errorf("upstream %q: namespaces, partitions and peers are not supported; want name:port[:datacenter]", s)
		}
		name := parts[0]
		if len(parts) == 3 && parts[2] != "" {
			name += "@" + parts[2]
		}
		return consul.ParseUpstream(name + ":" + parts[1])
	})
}

func parseList(v string, parse func(string) (api.Upstream, error)) ([]api.Upstream, error) {
	var out []api.Upstream
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		u, err := parse(item)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// FormatUpstream writes u in the -upstream syntax ParseUpstream reads.
func FormatUpstream(u api.Upstream) string {
	s := u.DestinationName
	if u.Datacenter != "" {
		s += "@" + u.Datacenter
	}
	s += ":" + strconv.Itoa(u.LocalBindPort)
	if u.LocalBindAddress != "" {
		s = u.LocalBindAddress + ":" + s
	}
	return s
}

// AdminAddr is the sidecar's -admin-bind: loopback only.
func (s Spec) AdminAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.AdminPort))
}

// Instance is how the sidecar is told about its instance: the service ID
// and the addresses to register. Values may hold references the platform
// expands ($(POD_NAME) on Kubernetes).
type Instance struct {
	ID             string
	ServiceAddress string
	PublicAddress  string
}

// Args is the command line of the sidecar (without the program name):
// outrider run -register with everything Spec and o say.
func (s Spec) Args(in Instance, o Options) []string {
	args := []string{"run", "-register",
		"-sidecar-for", in.ID,
		"-service-name", s.Service,
		"-service-port", strconv.Itoa(s.ServicePort),
	}
	if in.ServiceAddress != "" {
		args = append(args, "-service-address", in.ServiceAddress)
	}
	args = append(args, "-public-port", strconv.Itoa(s.PublicPort))
	if in.PublicAddress != "" {
		args = append(args, "-public-address", in.PublicAddress)
	}
	for _, u := range s.Upstreams {
		args = append(args, "-upstream", FormatUpstream(u))
	}
	if s.AdminPort != DefaultAdminPort {
		args = append(args, "-admin-bind", s.AdminAddr())
	}
	if s.LogLevel != "" {
		args = append(args, "-log-level", s.LogLevel)
	}
	if o.ShutdownGracePeriod != 0 {
		args = append(args, "-shutdown-grace-period", o.ShutdownGracePeriod.String())
	}
	if o.DrainTimeout != 0 {
		args = append(args, "-drain-timeout", o.DrainTimeout.String())
	}
	if o.DrainDelay != 0 {
		args = append(args, "-drain-delay", o.DrainDelay.String())
	}
	return args
}

// Check is the sidecar's health check as an exec command: outrider wait
// checks the admin API once, on loopback. With live it asks /live (the
// process serves) instead of /ready (it can carry traffic).
func (s Spec) Check(live bool) []string {
	cmd := []string{BinaryPath, "wait", "-admin-addr", s.AdminAddr(), "-timeout", "0", "-quiet"}
	if live {
		cmd = append(cmd, "-live")
	}
	return cmd
}
