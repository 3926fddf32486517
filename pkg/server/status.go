package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// writeStatus answers with err as a Kubernetes Status: an
// *apierrors.StatusError keeps its code and reason, anything else is a 500.
func (s *Server) writeStatus(w http.ResponseWriter, err error) {
	st := apierrors.APIStatus(nil)
	if as, ok := err.(apierrors.APIStatus); ok {
		st = as
	} else {
		st = apierrors.NewInternalError(err)
	}
	status := st.Status()
	status.Kind, status.APIVersion = "Status", "v1"
	// Selector parsers quote the caller's bytes raw; a message must stay
	// valid text whatever was sent.
	status.Message = strings.ToValidUTF8(status.Message, "\uFFFD")
	code := int(status.Code)
	if code == 0 {
		code = http.StatusInternalServerError
	}
	b, merr := json.Marshal(status)
	if merr != nil {
		s.log.Error("encoding a Status", "err", merr)
		http.Error(w, status.Message, code)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func notFound(path string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusNotFound, Reason: metav1.StatusReasonNotFound,
		Message: fmt.Sprintf("the server could not find the requested resource: %s is not a path krm serves", path),
		Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: metav1.CauseTypeUnexpectedServerResponse, Message: "404 page not found"}}},
	}}
}

// notCached answers a path of a resource the agent does not watch.
func (s *Server) notCached(gvr schema.GroupVersionResource) error {
	var names []string
	for _, st := range s.backend.Resources().Resources {
		names = append(names, st.Resource+groupSuffix(st.Group))
	}
	watched := strings.Join(names, ", ")
	if watched == "" {
		watched = "none"
	}
	what := gvr.Resource + groupSuffix(gvr.Group)
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusNotFound, Reason: metav1.StatusReasonNotFound,
		Message: fmt.Sprintf("the server could not find the requested resource: krm does not cache %s (%s); it caches %s. Add it to the agent's --resources, or ask the API server",
			what, gvr.GroupVersion().String(), watched),
		Details: &metav1.StatusDetails{Group: gvr.Group, Kind: gvr.Resource},
	}}
}

func groupSuffix(group string) string {
	if group == "" {
		return ""
	}
	return "." + group
}

// methodNotAllowed answers a write: krm is read-only.
func (s *Server) methodNotAllowed(r *http.Request, resource string, collection bool) error {
	verb := map[string]string{
		http.MethodPost: "create", http.MethodPut: "update", http.MethodPatch: "patch", http.MethodDelete: "delete",
	}[r.Method]
	if r.Method == http.MethodDelete && collection {
		verb = "deletecollection"
	}
	if verb == "" {
		verb = strings.ToLower(r.Method)
	}
	what := r.URL.Path
	if resource != "" {
		what = resource
	}
	to := "the cluster's API server"
	if s.opts.APIServer != "" {
		to += " (" + s.opts.APIServer + ")"
	}
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusMethodNotAllowed, Reason: metav1.StatusReasonMethodNotAllowed,
		Message: fmt.Sprintf("krm is a read-only cache: %s of %s is not allowed here; send writes to %s", verb, what, to),
		Details: &metav1.StatusDetails{Kind: resource},
	}}
}

func badRequest(format string, args ...any) error {
	return apierrors.NewBadRequest(fmt.Sprintf(format, args...))
}

// tooLarge is kube-apiserver's answer to a resourceVersion newer than it
// has caught up with after waiting.
func tooLarge(requested, current uint64) error {
	err := apierrors.NewTimeoutError(fmt.Sprintf("Too large resource version: %d, current: %d", requested, current), 1)
	err.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: metav1.CauseTypeResourceVersionTooLarge, Message: "Too large resource version"}}
	return err
}

// tooOld is the watch cache's answer to a watch from a resourceVersion older
// than its history.
func tooOld(requested, oldest uint64) error {
	return apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", requested, oldest))
}
