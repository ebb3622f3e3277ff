// Package inject adds an Outrider sidecar to workloads described in
// deployment files: Kubernetes manifests (package inject/kube, also used by
// the admission webhook in inject/webhook) and Compose files (package
// inject/compose). Package inject/manifest picks one for a file.
//
// This package holds what both share: which workloads are injected, the
// sidecar derived from a workload's annotations (Kubernetes pod template
// annotations, Compose service labels), and the command line of the
// injected `outrider run`.
//
// # Which workloads
//
// A workload opts in with the annotation outrider.io/inject: "true", or with
// consul-k8s's consul.hashicorp.com/connect-inject: "true" (a drop-in alias).
// When both are present, outrider.io/inject wins, so "false" there opts out
// a workload that consul-k8s would inject. Values are read like
// strconv.ParseBool; anything else is an error.
//
// # The sidecar
//
// The sidecar registers the application and itself in Consul (`outrider run
// -register`, see the README), so nothing else has to:
//
//	outrider.io/service        the Consul service name; alias consul.hashicorp.com/connect-service.
//	                           Default: the workload's name (Compose service name, Kubernetes
//	                           app.kubernetes.io/name or app label, else the object's name).
//	outrider.io/service-port   the application's port, a number or (Kubernetes) a containerPort
//	                           name; alias consul.hashicorp.com/connect-service-port. Default: the
//	                           first containerPort, or the first Compose expose/ports entry. A
//	                           workload with none is an error.
//	outrider.io/upstreams      comma-separated -upstream values, [bind-ip:]name[@dc]:local-port.
//	                           Alias consul.hashicorp.com/connect-service-upstreams, whose syntax
//	                           is name:local-port[:dc].
//	outrider.io/public-port    the sidecar's public mTLS port (default Options.PublicPort, 20000).
//	outrider.io/admin-port     the admin port, bound to 127.0.0.1 (default 19000).
//	outrider.io/log-level      -log-level of the sidecar.
//	outrider.io/image          the sidecar image (default Options.Image).
//
// Each outrider.io key wins over its consul.hashicorp.com alias. Errors are
// FieldErrors naming the annotation; the format packages wrap them in an
// Error that adds the document, the object and the line.
//
// # Idempotence
//
// A workload that already has a sidecar (a container, or a Compose service,
// named after Outrider) is left alone, whatever its annotations say, and a
// file in which nothing changes is returned byte for byte. Injecting an
// injected file therefore returns it unchanged: inject(inject(x)) ==
// inject(x). Injected workloads are marked outrider.io/status: injected.
//
// Everything here is pure and safe for concurrent use.
package inject
