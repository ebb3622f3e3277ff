// Package webhook is a Kubernetes mutating admission webhook that injects
// the Outrider sidecar into Pods as they are created (`outrider webhook`).
//
// The API server POSTs an AdmissionReview (admission.k8s.io/v1) to
// /mutate; Handler answers with the request's uid, allowed: true and,
// for an opted-in Pod, a JSONPatch built by kube.PodPatch: the same
// container `outrider inject` writes into a manifest. A Pod that is not
// opted in, or already has its sidecar, or any other kind or operation, is
// allowed without a patch. A body that is not an AdmissionReview gets 400.
//
// A Pod that is opted in but cannot be injected (a bad upstream, no port)
// is denied (allowed: false, with the reason). That, together with
// failurePolicy: Fail in the MutatingWebhookConfiguration, is the
// fail-safe choice: a workload that asked for the mesh never runs without
// its sidecar, where it would be unreachable through the mesh and could
// not reach its upstreams, failing in ways that are hard to trace. A
// denied Pod shows the reason in its ReplicaSet's events, and the
// controller retries, so it starts once the annotation or the webhook is
// fixed. The example configuration limits the webhook to labelled
// namespaces and never sends it its own pods, so Fail cannot stop the
// cluster or the webhook itself from starting.
//
// Server serves TLS 1.2 and later with a KeyPair that is reloaded when its
// files change (cert-manager or a Secret update), GET /healthz for the
// kubelet, and shuts down gracefully when its context ends.
//
// The AdmissionReview types are the fields of k8s.io/api/admission/v1
// (types.go) the webhook reads and writes, with the same JSON names; the
// module does not depend on k8s.io/api.
package webhook
