package server

import (
	"errors"
	"net/http"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/krm-project/krm/pkg/api"
	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/history"
)

// revisionsPath is where an object's history is listed.
const revisionsPath = "/apis/" + krmv1alpha1.GroupName + "/v1alpha1/" + krmv1alpha1.ResourceRevisions

// revisionAttributes is what reading an object's history is authorized as:
// get on the object itself, so history never shows what a get would refuse.
// A resource the agent does not cache is authorized under the name as
// given; the handler then answers 404.
func (s *Server) revisionAttributes(r *http.Request, u user.Info) authorizer.AttributesRecord {
	q := r.URL.Query()
	a := authorizer.AttributesRecord{User: u, Verb: "get", ResourceRequest: true, Path: r.URL.Path,
		Namespace: q.Get("namespace"), Name: q.Get("name")}
	name := q.Get("resource")
	if res, ok := s.backend.Resource(name); ok {
		info := res.Info()
		a.APIGroup, a.APIVersion, a.Resource = info.Group, info.Version, info.Resource
	} else {
		a.Resource, a.APIGroup, _ = strings.Cut(name, ".")
	}
	return a
}

// revisions answers GET revisions?resource=&namespace=&name=[&since=].
func (s *Server) revisions(r *http.Request, name string) (any, error) {
	if name != "" {
		return nil, badRequest("revisions are listed, not read by name: GET %s?resource=<plural[.group]>&namespace=<namespace>&name=<name>", revisionsPath)
	}
	q := r.URL.Query()
	resource, namespace, object := q.Get("resource"), q.Get("namespace"), q.Get("name")
	if resource == "" || object == "" {
		return nil, badRequest("revisions needs the parameters resource (e.g. pods or deployments.apps) and name, and namespace for a namespaced object")
	}
	if errs := path.IsValidPathSegmentName(object); len(errs) > 0 {
		return nil, badRequest("invalid name %q: %s", object, strings.Join(errs, ", "))
	}
	res, ok := s.backend.Resource(resource)
	if !ok {
		gr := schema.ParseGroupResource(resource)
		return nil, s.notCached(gr.WithVersion(""))
	}
	info := res.Info()
	switch {
	case info.Namespaced && namespace == "":
		return nil, badRequest("%s are namespaced: give the object's namespace", info.Name)
	case !info.Namespaced && namespace != "":
		return nil, badRequest("%s are cluster-scoped: leave namespace out", info.Name)
	}
	var since time.Time
	if v := q.Get("since"); v != "" {
		t, err := parseSince(v, s.now())
		if err != nil {
			return nil, err
		}
		since = t
	}
	var log *history.Log
	if h, ok := res.(api.Historian); ok {
		log = h.History()
	}
	if log == nil {
		return nil, apierrors.NewNotFound(krmv1alpha1.Resource(krmv1alpha1.ResourceRevisions), api.ErrHistoryOff.Error())
	}
	items, err := log.History(namespace, object, since)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	if items == nil {
		items = []krmv1alpha1.Revision{}
	}
	return &krmv1alpha1.RevisionList{TypeMeta: krmTypeMeta("RevisionList"), Items: items}, nil
}

// parseSince reads a Go duration before now or an RFC 3339 time.
func parseSince(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		if d < 0 {
			return time.Time{}, badRequest("since must not be negative, got %s", v)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, badRequest("since must be a Go duration such as 10m or an RFC 3339 time such as 2026-12-06T11:00:00Z, not %q", v)
	}
	return t, nil
}

// historySnapshot answers a LIST from history: at time at (krm's at
// parameter), or at resourceVersion rv (resourceVersionMatch=Exact).
// History that does not reach it is kube-apiserver's 410 Gone.
func historySnapshot(res api.Resource, at time.Time, rv uint64) (*api.Snapshot, error) {
	h, ok := res.(api.Historian)
	if !ok {
		return nil, apierrors.NewResourceExpired("The resourceVersion for the provided list is too old.")
	}
	snap, err := h.HistorySnapshot(at, rv)
	var tooOld *history.TooOldError
	switch {
	case errors.Is(err, api.ErrHistoryOff):
		if at.IsZero() {
			return nil, apierrors.NewResourceExpired("The resourceVersion for the provided list is too old.")
		}
		return nil, apierrors.NewNotFound(krmv1alpha1.Resource(krmv1alpha1.ResourceRevisions), err.Error())
	case errors.As(err, &tooOld):
		if at.IsZero() {
			return nil, apierrors.NewResourceExpired("The resourceVersion for the provided list is too old: " + tooOld.Error() + ".")
		}
		return nil, apierrors.NewResourceExpired("The time for the provided list is too old: " + tooOld.Error() + ".")
	case err != nil:
		return nil, apierrors.NewInternalError(err)
	}
	return snap, nil
}

// revisionTable is kubectl get's table of revisions.
func revisionTable(o *krmv1alpha1.RevisionList, now time.Time) *metav1.Table {
	col := func(n, desc string) metav1.TableColumnDefinition {
		return metav1.TableColumnDefinition{Name: n, Type: "string", Description: desc}
	}
	t := &metav1.Table{ColumnDefinitions: []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name", Description: "uid-resourceVersion."},
		col("Revision", "Ordinal in the kept history."), col("ResourceVersion", "The object's resourceVersion."),
		col("Event", "ADDED, MODIFIED or DELETED."), col("Source", "watch, or list for a LIST's repair."),
		col("Changed", "Field paths changed against the previous revision.")}}
	for _, r := range o.Items {
		t.Rows = append(t.Rows, metav1.TableRow{Cells: []any{r.Name, r.Revision, r.ResourceVersion, r.Event, r.Source, strings.Join(r.Changed, ", ")}})
	}
	return t
}
