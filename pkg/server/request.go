package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metainternalversionscheme "k8s.io/apimachinery/pkg/apis/meta/internalversion/scheme"
	metainternalversionvalidation "k8s.io/apimachinery/pkg/apis/meta/internalversion/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/krm-project/krm/pkg/api"
	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/store"
)

// request is one parsed read of a resource path.
type request struct {
	info      api.ResourceInfo
	res       api.Resource
	namespace string
	name      string
	watch     bool
	opts      metainternalversion.ListOptions
	labels    labels.Selector
	fields    fields.Selector
	// rv is opts.ResourceVersion parsed; 0 when "" or "0".
	rv            uint64
	format        format
	includeObject metav1.IncludeObjectPolicy
	// view and maxStaleness are krm's own parameters: which view to read
	// (aggregated by default) and how old its last LIST may be.
	view         store.Source
	maxStaleness time.Duration
	// at is krm's at parameter: a LIST of the view as it was then, from
	// history; zero for now.
	at time.Time
}

// resourcePath routes /api/... and /apis/... below the discovery roots.
func (s *Server) resourcePath(w http.ResponseWriter, r *http.Request) {
	segs := strings.Split(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/"), "/")
	if slices.Contains(segs, "") {
		s.writeStatus(w, notFound(r.URL.Path))
		return
	}
	var group, ver string
	var rest []string
	if segs[0] == "api" {
		ver, rest = segs[1], segs[2:]
	} else {
		if len(segs) == 2 {
			label(w, "discovery", "")
			if s.readOnly(w, r, "") {
				s.group(w, segs[1])
			}
			return
		}
		group, ver, rest = segs[1], segs[2], segs[3:]
	}
	if len(rest) == 0 {
		label(w, "discovery", "")
		if s.readOnly(w, r, "") {
			s.resourceList(w, group, ver)
		}
		return
	}
	if group == krmv1alpha1.GroupName {
		label(w, "krm", "")
		s.krmPath(w, r, ver, rest)
		return
	}
	rp, ok := splitResourcePath(rest)
	if !ok {
		s.writeStatus(w, notFound(r.URL.Path))
		return
	}
	watchPath, namespace, resource, name, sub := rp.watch, rp.namespace, rp.resource, rp.name, rp.sub
	gvr := schema.GroupVersionResource{Group: group, Version: ver, Resource: resource}
	res, ok := s.lookup(gvr)
	if !ok {
		label(w, "list", "unknown")
		if !s.readOnly(w, r, resource) {
			return
		}
		if gvr == namespacesGVR && namespace == "" && name != "" && sub == "" && !watchPath && r.URL.Query().Get("watch") == "" {
			s.namespaceStub(w, name)
			return
		}
		s.writeStatus(w, s.notCached(gvr))
		return
	}
	info := res.Info()
	label(w, "list", info.Name)
	if !s.readOnlyAt(w, r, info.Resource+groupSuffix(info.Group), name == "") {
		return
	}
	if sub != "" {
		s.writeStatus(w, &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusNotFound, Reason: metav1.StatusReasonNotFound,
			Message: fmt.Sprintf("the server could not find the requested resource: krm serves %s but not its %s subresource; ask the API server", info.Resource, sub),
		}})
		return
	}
	if namespace != "" && !info.Namespaced {
		s.writeStatus(w, notFound(r.URL.Path))
		return
	}
	req, err := s.parse(r, res, info, namespace, name, watchPath)
	if err != nil {
		s.writeStatus(w, err)
		return
	}
	switch {
	case req.watch:
		label(w, "watch", info.Name)
		s.serveWatch(w, r, req)
	case name != "":
		label(w, "get", info.Name)
		s.serveGet(w, r, req)
	default:
		s.serveList(w, r, req)
	}
}

// pathParts is a resource path below /api/{version} or
// /apis/{group}/{version}, split into its parts.
type pathParts struct {
	watch                          bool
	namespace, resource, name, sub string
}

// splitResourcePath splits rest, the segments below the version, as
// kube-apiserver's routes do: [watch/][namespaces/{ns}/]{resource}[/{name}[/{sub}]].
// The secure listener authorizes what this returns, and the handlers serve
// it, so both read a path one way.
func splitResourcePath(rest []string) (pathParts, bool) {
	var p pathParts
	if len(rest) > 0 && rest[0] == "watch" {
		p.watch, rest = true, rest[1:]
	}
	switch {
	case len(rest) >= 3 && rest[0] == "namespaces":
		p.namespace, p.resource = rest[1], rest[2]
		rest = rest[3:]
	case len(rest) >= 1:
		p.resource, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		p.name, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		p.sub, rest = rest[0], rest[1:]
	}
	return p, p.resource != "" && len(rest) == 0
}

// lookup finds the cached resource at gvr.
func (s *Server) lookup(gvr schema.GroupVersionResource) (api.Resource, bool) {
	name := gvr.Resource + groupSuffix(gvr.Group)
	if res, ok := s.backend.Resource(name); ok && matches(res.Info(), gvr) {
		return res, true
	}
	for _, st := range s.backend.Resources().Resources {
		if matches(st.ResourceInfo, gvr) {
			return s.backend.Resource(st.Name)
		}
	}
	return nil, false
}

func matches(info api.ResourceInfo, gvr schema.GroupVersionResource) bool {
	return info.Group == gvr.Group && info.Version == gvr.Version && info.Resource == gvr.Resource
}

// parse reads the query as kube-apiserver does, with its own decoding and
// validation of ListOptions, so the same requests are refused the same way.
func (s *Server) parse(r *http.Request, res api.Resource, info api.ResourceInfo, namespace, name string, watchPath bool) (*request, error) {
	q := r.URL.Query()
	req := &request{info: info, res: res, namespace: namespace, name: name, view: store.Aggregated}
	if namespace != "" {
		if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
			return nil, badRequest("namespace %q is not a valid namespace name: %s", namespace, strings.Join(errs, "; "))
		}
	}
	if err := metainternalversionscheme.ParameterCodec.DecodeParameters(q, metav1.SchemeGroupVersion, &req.opts); err != nil {
		return nil, badRequest("%v", err)
	}
	if watchPath {
		req.opts.Watch = true
	}
	req.watch = req.opts.Watch
	if name != "" && req.watch {
		// A watch of one object is a watch of its name, as kube-apiserver
		// turns it into.
		byName := fields.OneTermEqualSelector("metadata.name", name)
		if req.opts.FieldSelector == nil || req.opts.FieldSelector.Empty() {
			req.opts.FieldSelector = byName
		} else {
			req.opts.FieldSelector = fields.AndSelectors(req.opts.FieldSelector, byName)
		}
	}
	if errs := metainternalversionvalidation.ValidateListOptions(&req.opts, true); len(errs) > 0 {
		return nil, apierrors.NewInvalid(schema.GroupKind{Group: metav1.GroupName, Kind: "ListOptions"}, "", errs)
	}
	req.labels, req.fields = labels.Everything(), fields.Everything()
	if req.opts.LabelSelector != nil {
		req.labels = req.opts.LabelSelector
	}
	if req.opts.FieldSelector != nil {
		req.fields = req.opts.FieldSelector
		supported := append([]string{"metadata.name", "metadata.namespace"}, info.SelectableFields...)
		for _, term := range req.fields.Requirements() {
			if slices.Contains(supported, term.Field) {
				continue
			}
			// kube-apiserver's two wordings: kinds with fields of their
			// own convert labels by hand, the others by default.
			if len(info.SelectableFields) == 0 {
				return nil, badRequest("%q is not a known field selector: only %q, %q", term.Field, "metadata.name", "metadata.namespace")
			}
			return nil, badRequest("field label not supported: %s", term.Field)
		}
	}
	if v := req.opts.ResourceVersion; v != "" && v != "0" {
		rv, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, badRequest("invalid resource version %q: resourceVersions are integers here (etcd revisions)", v)
		}
		req.rv = rv
	}
	if v := q.Get("view"); v != "" {
		view, err := store.ParseSource(v)
		if err != nil {
			return nil, badRequest("invalid view: %v", err)
		}
		req.view = view
	}
	if v := q.Get("at"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, badRequest("at must be an RFC 3339 time such as 2026-12-06T11:00:00Z, not %q", v)
		}
		req.at = t
	}
	if v := q.Get("maxStaleness"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, badRequest("maxStaleness must be a positive Go duration such as 30s or 5m, not %q", v)
		}
		req.maxStaleness = d
	}
	if t := req.opts.TimeoutSeconds; t != nil && *t < 0 {
		// kube-apiserver ends such a watch at once; a negative timeout is
		// a mistake worth saying so.
		return nil, badRequest("timeoutSeconds must not be negative, got %d", *t)
	}
	var acceptable bool
	if req.format, acceptable = negotiate(r.Header.Values("Accept")); !acceptable {
		return nil, notAcceptable(r.Header.Values("Accept"))
	}
	req.includeObject = metav1.IncludeMetadata
	if v := q.Get("includeObject"); v != "" {
		switch p := metav1.IncludeObjectPolicy(v); p {
		case metav1.IncludeNone, metav1.IncludeMetadata, metav1.IncludeObject:
			req.includeObject = p
		default:
			return nil, badRequest("includeObject must be None, Metadata or Object, not %q", v)
		}
	}
	return req, nil
}

// selects reports whether row is in the request's namespace and selection.
func (req *request) selects(row *store.Row) bool {
	if req.namespace != "" && row.Namespace != req.namespace {
		return false
	}
	return req.labels.Matches(labels.Set(row.Labels)) && req.fields.Matches(rowFields{row})
}

func (req *request) filtered() bool { return !req.labels.Empty() || !req.fields.Empty() }

// rowFields gives a row's selectable fields without building a map per row.
type rowFields struct{ row *store.Row }

func (f rowFields) Has(field string) bool {
	switch field {
	case "metadata.name", "metadata.namespace":
		return true
	}
	_, ok := f.row.Fields[field]
	return ok
}

func (f rowFields) Get(field string) string {
	switch field {
	case "metadata.name":
		return f.row.Name
	case "metadata.namespace":
		return f.row.Namespace
	}
	return f.row.Fields[field]
}

// snapshotAtLeast returns the view's snapshot once it has reached rv,
// waiting as kube-apiserver's watch cache does, then 504.
func (s *Server) snapshotAtLeast(ctx context.Context, req *request, rv uint64) (*api.Snapshot, error) {
	snap := req.res.Snapshot(req.view)
	if snap.Header.ResourceVersion >= rv {
		return snap, nil
	}
	deadline := time.NewTimer(s.opts.WaitForResourceVersion)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return nil, tooLarge(rv, snap.Header.ResourceVersion)
		case <-tick.C:
			if snap = req.res.Snapshot(req.view); snap.Header.ResourceVersion >= rv {
				return snap, nil
			}
		}
	}
}

// admit answers err when a snapshot could not be had; else it sets snap's
// freshness headers and refuses it when it is older than maxStaleness. It
// reports whether the request goes on.
func (s *Server) admit(w http.ResponseWriter, req *request, snap *api.Snapshot, err error) bool {
	if err == nil && snap.Unavailable != "" {
		err = apierrors.NewServiceUnavailable(snap.Unavailable + "; `kubectl krm status` shows each resource's state")
	}
	if err == nil {
		s.setFreshness(w, snap)
		err = s.checkStaleness(req, snap)
	}
	if err != nil {
		s.writeStatus(w, err)
		return false
	}
	return true
}

// checkStaleness refuses a snapshot verified longer than maxStaleness ago.
func (s *Server) checkStaleness(req *request, snap *api.Snapshot) error {
	if req.maxStaleness <= 0 {
		return nil
	}
	at := snap.Header.VerifiedAt
	if at.IsZero() {
		return apierrors.NewServiceUnavailable(fmt.Sprintf("%s have not been verified yet, so maxStaleness=%s cannot be met", req.info.Name, req.maxStaleness))
	}
	if age := s.now().Sub(at); age > req.maxStaleness {
		return apierrors.NewServiceUnavailable(fmt.Sprintf("%s were last verified %s ago, older than maxStaleness=%s", req.info.Name, age.Round(time.Millisecond), req.maxStaleness))
	}
	return nil
}

// setFreshness sets krm's headers that say how fresh snap is.
func (s *Server) setFreshness(w http.ResponseWriter, snap *api.Snapshot) {
	h := w.Header()
	if !snap.Header.VerifiedAt.IsZero() {
		h.Set(api.HeaderVerifiedAt, snap.Header.VerifiedAt.UTC().Format(time.RFC3339Nano))
	}
	h.Set(api.HeaderResourceVersion, store.FormatResourceVersion(snap.Header.ResourceVersion))
	h.Set(api.HeaderVerifiedResourceVersion, store.FormatResourceVersion(snap.VerifiedResourceVersion))
	if snap.Stale {
		h.Set(api.HeaderStale, "true")
	}
	switch {
	case !snap.StreamConnected:
		h.Set(api.HeaderStreamLag, "disconnected")
	case !snap.LastStreamAt.IsZero():
		lag := max(s.now().Sub(snap.LastStreamAt), 0)
		h.Set(api.HeaderStreamLag, lag.Round(time.Millisecond).String())
	}
}

var namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

// synthesizedAnnotation marks the Namespace namespaceStub makes up.
const synthesizedAnnotation = "krm.io/synthesized"

// namespaceStub answers GET /api/v1/namespaces/{name} when krm does not
// cache namespaces. kubectl asks it after a 404 for an object in a namespace
// other than default, to tell "no such namespace" from "no such object";
// a 404 here would make it report the namespace missing whether or not it
// exists. krm cannot know, so it answers a Namespace that has nothing but
// its name, marked as made up, and kubectl reports the object not found,
// which is true either way.
func (s *Server) namespaceStub(w http.ResponseWriter, name string) {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		s.writeStatus(w, apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, name))
		return
	}
	s.writeJSON(w, map[string]any{
		"kind": "Namespace", "apiVersion": "v1",
		"metadata": map[string]any{"name": name, "annotations": map[string]string{
			synthesizedAnnotation: "krm does not cache namespaces; this stands in for one so that clients checking a namespace get on; ask the API server for the namespace itself",
		}},
	})
}
