package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"

	"github.com/outrider-mesh/outrider/inject"
	"github.com/outrider-mesh/outrider/inject/kube"
)

// maxBody bounds an AdmissionReview; the API server's objects are at most
// a few MiB (etcd's default request limit is 1.5 MiB).
const maxBody = 8 << 20

// Handler answers AdmissionReviews. It is safe for concurrent use.
type Handler struct {
	Options inject.Options
	Log     *slog.Logger
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		http.Error(w, "webhook: want Content-Type application/json", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, "webhook: reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	var review AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		http.Error(w, "webhook: cannot decode an AdmissionReview: "+err.Error(), http.StatusBadRequest)
		return
	}
	if review.APIVersion != admissionAPIVersion || review.Kind != admissionKind || review.Request == nil {
		http.Error(w, fmt.Sprintf("webhook: want an %s %s with a request, got apiVersion %q kind %q",
			admissionAPIVersion, admissionKind, review.APIVersion, review.Kind), http.StatusBadRequest)
		return
	}
	out, err := json.Marshal(AdmissionReview{APIVersion: admissionAPIVersion, Kind: admissionKind, Response: h.review(review.Request)})
	if err != nil { // only plain values: a bug
		http.Error(w, "webhook: encoding the response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

// review decides one request.
func (h *Handler) review(req *Request) *Response {
	resp := &Response{UID: req.UID, Allowed: true}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.Operation != "CREATE" {
		return resp
	}
	ops, err := kube.PodPatch(req.Object, h.Options)
	if err != nil {
		h.Log.Warn("denied a pod that asks for a sidecar but cannot get one", "namespace", req.Namespace, "uid", req.UID, "error", err)
		resp.Allowed = false
		resp.Result = &Status{Message: "outrider: " + err.Error(), Reason: "BadRequest", Code: http.StatusBadRequest}
		var located *inject.Error
		if !errors.As(err, &located) {
			resp.Result.Message = "outrider: cannot inject the sidecar: " + err.Error()
		}
		return resp
	}
	if len(ops) == 0 {
		return resp
	}
	patch, err := json.Marshal(ops)
	if err != nil { // only plain values: a bug
		resp.Allowed = false
		resp.Result = &Status{Message: "outrider: encoding the patch: " + err.Error(), Code: http.StatusInternalServerError}
		return resp
	}
	pt := patchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	h.Log.Info("injected the sidecar", "namespace", req.Namespace, "uid", req.UID, "dry_run", req.DryRun != nil && *req.DryRun)
	return resp
}
