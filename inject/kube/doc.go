// Package kube injects the Outrider sidecar into Kubernetes workloads: the
// pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets,
// Jobs and CronJobs, and Pods, in multi-document manifests and in List
// objects (Inject); and into one Pod as a JSONPatch, for the admission
// webhook (PodPatch). Both go through the same plan, so a manifest
// injected by `outrider inject` and a Pod mutated by the webhook get the
// same container.
//
// The container "outrider" runs `outrider run -register` with the pod's
// name as the service ID and its IP as the service and public address
// (downward API: POD_NAME, POD_IP, HOST_IP), and CONSUL_HTTP_ADDR
// $(HOST_IP):8500 by default: a Consul client agent on each node, as
// consul-k8s's clients run. Probes are exec probes that run `outrider
// wait` in the container, so the admin API stays on 127.0.0.1: an httpGet
// probe is dialled by the kubelet at the pod IP, which would expose
// /config_dump, /logging and the profiler to the cluster network.
// Readiness and startup ask /ready; liveness asks /live, because a
// sidecar that is not ready (Consul unreachable for longer than its
// certificate lives) is not helped by a restart, which would drop the last
// good configuration it keeps serving. The container runs as uid 65532
// with a read-only root file system, no privilege escalation and no
// capabilities.
//
// On shutdown every container of the pod gets SIGTERM at once; the
// sidecar takes up to -drain-delay plus -shutdown-grace-period plus
// -drain-timeout (30s by default) to stop, so
// terminationGracePeriodSeconds is raised to that when it is set lower
// (Kubernetes' default, 30s, covers the defaults).
//
// The types below are the few fields of k8s.io/api/core/v1 the injector
// writes, with the same JSON names; the module does not depend on
// k8s.io/api.
package kube
