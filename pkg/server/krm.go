package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/krm-project/krm/pkg/api"
	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/render"
)

// krmKinds are krm.io/v1alpha1's resources, as discovery lists them: all
// cluster-scoped, read with get and list.
var krmKinds = []api.ResourceInfo{
	{Name: krmv1alpha1.ResourceAgentStatuses, Group: krmv1alpha1.GroupName, Version: "v1alpha1", Resource: krmv1alpha1.ResourceAgentStatuses, Kind: "AgentStatus"},
	{Name: krmv1alpha1.ResourceResourceStatuses, Group: krmv1alpha1.GroupName, Version: "v1alpha1", Resource: krmv1alpha1.ResourceResourceStatuses, Kind: "ResourceStatus"},
	{Name: krmv1alpha1.ResourceDriftReports, Group: krmv1alpha1.GroupName, Version: "v1alpha1", Resource: krmv1alpha1.ResourceDriftReports, Kind: "DriftReport"},
	{Name: krmv1alpha1.ResourceDelayReports, Group: krmv1alpha1.GroupName, Version: "v1alpha1", Resource: krmv1alpha1.ResourceDelayReports, Kind: "DelayReport"},
	{Name: krmv1alpha1.ResourceRevisions, Group: krmv1alpha1.GroupName, Version: "v1alpha1", Resource: krmv1alpha1.ResourceRevisions, Kind: "Revision"},
}

var krmVerbs = metav1.Verbs{"get", "list"}

// krmWatchVerbs are resourcestatuses' verbs: the web view's overview
// follows them with a watch.
var krmWatchVerbs = metav1.Verbs{"get", "list", "watch"}

// orEmpty is "/"+name, or "" without a name.
func orEmpty(name string) string {
	if name == "" {
		return ""
	}
	return "/" + name
}

func krmTypeMeta(kind string) metav1.TypeMeta {
	return metav1.TypeMeta{Kind: kind, APIVersion: krmv1alpha1.SchemeGroupVersion.String()}
}

// krmPath serves /apis/krm.io/v1alpha1/{resource}[/{name}].
func (s *Server) krmPath(w http.ResponseWriter, r *http.Request, ver string, rest []string) {
	if ver != krmv1alpha1.SchemeGroupVersion.Version {
		s.writeStatus(w, notFound(r.URL.Path))
		return
	}
	if len(rest) == 0 || len(rest) > 2 || rest[0] == "namespaces" || rest[0] == "watch" {
		if len(rest) > 0 && (rest[0] == "namespaces" || rest[0] == "watch") {
			s.writeStatus(w, badRequest("krm.io/v1alpha1 objects are cluster-scoped and are read with get and list (resourcestatuses also with watch=true), not at the /watch/ or /namespaces/ paths"))
			return
		}
		s.writeStatus(w, notFound(r.URL.Path))
		return
	}
	resource, name := rest[0], ""
	if len(rest) == 2 {
		name = rest[1]
	}
	if !s.readOnly(w, r, resource+"."+krmv1alpha1.GroupName) {
		return
	}
	if watch := r.URL.Query().Get("watch"); watch == "true" || watch == "1" {
		if resource != krmv1alpha1.ResourceResourceStatuses || name != "" {
			s.writeStatus(w, badRequest("of krm.io/v1alpha1's objects only the resourcestatuses collection is watched; %s are read with get and list", resource+orEmpty(name)))
			return
		}
		f, acceptable := negotiate(r.Header.Values("Accept"))
		if !acceptable || f == formatMetadata {
			s.writeStatus(w, notAcceptable(r.Header.Values("Accept")))
			return
		}
		label(w, "watch", resource)
		s.serveStatusWatch(w, r, f)
		return
	}
	gr := schema.GroupResource{Group: krmv1alpha1.GroupName, Resource: resource}
	var obj any
	var err error
	switch resource {
	case krmv1alpha1.ResourceAgentStatuses:
		obj, err = s.agentStatuses(name)
	case krmv1alpha1.ResourceResourceStatuses:
		obj, err = s.resourceStatuses(name)
	case krmv1alpha1.ResourceDriftReports:
		obj, err = s.driftReports(name)
	case krmv1alpha1.ResourceDelayReports:
		obj, err = s.delayReports(r, name)
	case krmv1alpha1.ResourceRevisions:
		obj, err = s.revisions(r, name)
	default:
		err = s.notCached(gr.WithVersion(krmv1alpha1.SchemeGroupVersion.Version))
	}
	if errors.Is(err, errNoSuchObject) {
		err = apierrors.NewNotFound(gr, name)
	}
	if err != nil {
		s.writeStatus(w, err)
		return
	}
	f, acceptable := negotiate(r.Header.Values("Accept"))
	if !acceptable {
		s.writeStatus(w, notAcceptable(r.Header.Values("Accept")))
		return
	}
	if f == formatTable {
		table, err := s.krmTable(obj, r.URL.Query().Get("includeObject"))
		if err != nil {
			s.writeStatus(w, err)
			return
		}
		s.writeJSON(w, table)
		return
	}
	s.writeJSON(w, obj)
}

// krmTable renders krm.io objects as kubectl get shows them: resource
// statuses with `kubectl krm status`'s columns, the others with a few of
// their own.
func (s *Server) krmTable(obj any, includeObject string) (*metav1.Table, error) {
	now := s.now()
	var t *metav1.Table
	var objects []runtime.Object
	name := metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name", Description: "The object's name."}
	col := func(n, desc string) metav1.TableColumnDefinition {
		return metav1.TableColumnDefinition{Name: n, Type: "string", Description: desc}
	}
	switch o := obj.(type) {
	case *krmv1alpha1.ResourceStatus:
		return s.krmTable(&krmv1alpha1.ResourceStatusList{Items: []krmv1alpha1.ResourceStatus{*o}}, includeObject)
	case *krmv1alpha1.ResourceStatusList:
		t = (&render.StatusPrinter{Agent: s.agentStatus().Status, Now: s.now}).Table(o)
		for i := range o.Items {
			objects = append(objects, &o.Items[i])
		}
	case *krmv1alpha1.AgentStatus:
		return s.krmTable(&krmv1alpha1.AgentStatusList{Items: []krmv1alpha1.AgentStatus{*o}}, includeObject)
	case *krmv1alpha1.AgentStatusList:
		t = &metav1.Table{ColumnDefinitions: []metav1.TableColumnDefinition{name, col("Version", "The agent's version."),
			col("Cluster", "The cluster it caches."), col("Store", "Where frames are kept."), col("Role", "leader or follower, with leader election."), col("Ready", "Whether it serves every resource.")}}
		for i, a := range o.Items {
			store := a.Status.Store.Kind
			if store != "" && !a.Status.Store.Healthy {
				store += " (degraded)"
			}
			t.Rows = append(t.Rows, metav1.TableRow{Cells: []any{a.Name, a.Status.AgentVersion, a.Status.Cluster, store, orNone(a.Status.Role), strconv.FormatBool(a.Status.Ready)}})
			objects = append(objects, &o.Items[i])
		}
	case *krmv1alpha1.DriftReport:
		return s.krmTable(&krmv1alpha1.DriftReportList{Items: []krmv1alpha1.DriftReport{*o}}, includeObject)
	case *krmv1alpha1.DriftReportList:
		t = &metav1.Table{ColumnDefinitions: []metav1.TableColumnDefinition{name, col("Verified", "How long ago the last LIST landed."),
			col("Ledger", "Missed events the LISTs found, kept."), col("Unverified", "Objects changed since the last LIST.")}}
		for i, d := range o.Items {
			verified := "<never>"
			if !d.Status.VerifiedAt.IsZero() {
				verified = duration.HumanDuration(now.Sub(d.Status.VerifiedAt))
			}
			t.Rows = append(t.Rows, metav1.TableRow{Cells: []any{d.Name, verified, strconv.Itoa(len(d.Status.Ledger)), strconv.Itoa(len(d.Status.Unverified))}})
			objects = append(objects, &o.Items[i])
		}
	case *krmv1alpha1.DelayReport:
		return s.krmTable(&krmv1alpha1.DelayReportList{Items: []krmv1alpha1.DelayReport{*o}}, includeObject)
	case *krmv1alpha1.DelayReportList:
		t = &metav1.Table{ColumnDefinitions: []metav1.TableColumnDefinition{name, col("Source", "memory or influxdb."),
			col("Samples", "Delay samples in the range."), col("Since", "Start of the range.")}}
		for i, d := range o.Items {
			var n int64
			for _, st := range d.Status.Stats {
				n += st.Count
			}
			t.Rows = append(t.Rows, metav1.TableRow{Cells: []any{d.Name, d.Status.Source, strconv.FormatInt(n, 10), d.Status.Since.UTC().Format(time.RFC3339)}})
			objects = append(objects, &o.Items[i])
		}
	case *krmv1alpha1.RevisionList:
		t = revisionTable(o, now)
		for i := range o.Items {
			objects = append(objects, &o.Items[i])
		}
	default:
		return nil, fmt.Errorf("no table for %T", obj)
	}
	t.TypeMeta = metav1.TypeMeta{Kind: "Table", APIVersion: "meta.k8s.io/v1"}
	for i := range t.Rows {
		// RawExtension encodes only its Raw bytes.
		var obj any
		switch metav1.IncludeObjectPolicy(includeObject) {
		case metav1.IncludeNone:
		case metav1.IncludeObject:
			obj = objects[i]
		default:
			acc, err := meta.Accessor(objects[i])
			if err != nil {
				return nil, err
			}
			obj = &metav1.PartialObjectMetadata{
				TypeMeta:   metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"},
				ObjectMeta: metav1.ObjectMeta{Name: acc.GetName()},
			}
		}
		t.Rows[i].Object = runtime.RawExtension{}
		if obj != nil {
			raw, err := json.Marshal(obj)
			if err != nil {
				return nil, err
			}
			t.Rows[i].Object.Raw = raw
		}
	}
	return t, nil
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

var errNoSuchObject = errors.New("no such object")

func (s *Server) agentStatus() krmv1alpha1.AgentStatus {
	list := s.backend.Resources()
	ready, why := s.backend.Ready()
	return krmv1alpha1.AgentStatus{
		TypeMeta:   krmTypeMeta("AgentStatus"),
		ObjectMeta: metav1.ObjectMeta{Name: krmv1alpha1.AgentName},
		Status: krmv1alpha1.AgentState{
			AgentVersion: s.opts.AgentVersion, Cluster: list.Cluster, Store: list.Store,
			Role: list.Role, Leader: list.Leader, Ready: ready, ReadyMessage: why,
		},
	}
}

func (s *Server) agentStatuses(name string) (any, error) {
	st := s.agentStatus()
	if name != "" {
		if name != krmv1alpha1.AgentName {
			return nil, errNoSuchObject
		}
		return &st, nil
	}
	st.TypeMeta = metav1.TypeMeta{}
	return &krmv1alpha1.AgentStatusList{TypeMeta: krmTypeMeta("AgentStatusList"), Items: []krmv1alpha1.AgentStatus{st}}, nil
}

func resourceStatus(st api.ResourceStatus) krmv1alpha1.ResourceStatus {
	return krmv1alpha1.ResourceStatus{TypeMeta: krmTypeMeta("ResourceStatus"), ObjectMeta: metav1.ObjectMeta{Name: st.Name}, Status: st}
}

func (s *Server) resourceStatuses(name string) (any, error) {
	if name != "" {
		res, ok := s.backend.Resource(name)
		if !ok {
			return nil, errNoSuchObject
		}
		st := resourceStatus(res.Status())
		return &st, nil
	}
	list := &krmv1alpha1.ResourceStatusList{TypeMeta: krmTypeMeta("ResourceStatusList"), Items: []krmv1alpha1.ResourceStatus{}}
	for _, st := range s.backend.Resources().Resources {
		item := resourceStatus(st)
		item.TypeMeta = metav1.TypeMeta{}
		list.Items = append(list.Items, item)
	}
	return list, nil
}

func driftReport(res api.Resource) krmv1alpha1.DriftReport {
	d := res.Drift()
	if d.Ledger == nil {
		d.Ledger = []krmv1alpha1.DriftEntry{}
	}
	if d.Unverified == nil {
		d.Unverified = []krmv1alpha1.UnverifiedChange{}
	}
	return krmv1alpha1.DriftReport{TypeMeta: krmTypeMeta("DriftReport"), ObjectMeta: metav1.ObjectMeta{Name: res.Info().Name}, Status: d}
}

func (s *Server) driftReports(name string) (any, error) {
	if name != "" {
		res, ok := s.backend.Resource(name)
		if !ok {
			return nil, errNoSuchObject
		}
		d := driftReport(res)
		return &d, nil
	}
	list := &krmv1alpha1.DriftReportList{TypeMeta: krmTypeMeta("DriftReportList"), Items: []krmv1alpha1.DriftReport{}}
	for _, st := range s.backend.Resources().Resources {
		if res, ok := s.backend.Resource(st.Name); ok {
			item := driftReport(res)
			item.TypeMeta = metav1.TypeMeta{}
			list.Items = append(list.Items, item)
		}
	}
	return list, nil
}

// delayReports answers one resource's stream delay, or the canary probe's
// ("probe"), or every resource's, over ?since= (default 1h), for ?event=
// ADDED or DELETED (default both), in ?step= buckets (default about 60).
func (s *Server) delayReports(r *http.Request, name string) (any, error) {
	if s.opts.Delay == nil {
		return nil, apierrors.NewNotFound(schema.GroupResource{Group: krmv1alpha1.GroupName, Resource: krmv1alpha1.ResourceDelayReports},
			name+" (this agent does not measure stream delay)")
	}
	q, err := parseDelayParams(r.URL.Query(), s.now())
	if err != nil {
		return nil, err
	}
	var names []string
	switch {
	case name == api.ProbeResource:
		names = []string{name}
	case name != "":
		res, ok := s.backend.Resource(name)
		if !ok {
			return nil, errNoSuchObject
		}
		names = []string{res.Info().Name}
	default:
		for _, st := range s.backend.Resources().Resources {
			names = append(names, st.Name)
		}
		names = append(names, api.ProbeResource)
	}
	list := &krmv1alpha1.DelayReportList{TypeMeta: krmTypeMeta("DelayReportList"), Items: []krmv1alpha1.DelayReport{}}
	for _, n := range names {
		q.Resource = n
		rep, err := s.opts.Delay.Delay(r.Context(), q)
		if err != nil {
			return nil, apierrors.NewServiceUnavailable("reading delay statistics: " + err.Error())
		}
		item := krmv1alpha1.DelayReport{ObjectMeta: metav1.ObjectMeta{Name: n}, Status: *rep}
		if name != "" {
			item.TypeMeta = krmTypeMeta("DelayReport")
			return &item, nil
		}
		list.Items = append(list.Items, item)
	}
	return list, nil
}

// maxDelayRange bounds ?since=, so a typo cannot ask for years of points.
const maxDelayRange = 31 * 24 * time.Hour

func parseDelayParams(v url.Values, now time.Time) (api.DelayQuery, error) {
	q := api.DelayQuery{Since: now.Add(-time.Hour)}
	if val := v.Get("event"); val != "" {
		if val != "ADDED" && val != "DELETED" {
			return q, badRequest("event %q is not ADDED or DELETED", val)
		}
		q.Event = val
	}
	if val := v.Get("since"); val != "" {
		d, err := time.ParseDuration(val)
		if err != nil || d <= 0 {
			return q, badRequest("since %q is not a positive duration such as 15m or 1h", val)
		}
		if d > maxDelayRange {
			return q, badRequest("since %s is longer than %s", val, maxDelayRange)
		}
		q.Since = now.Add(-d)
	}
	if val := v.Get("step"); val != "" {
		d, err := time.ParseDuration(val)
		if err != nil || d <= 0 {
			return q, badRequest("step %q is not a positive duration such as 1m", val)
		}
		q.Step = d
	}
	if q.Step == 0 {
		q.Step = autoStep(now.Sub(q.Since))
	}
	if now.Sub(q.Since)/q.Step > 10000 {
		return q, badRequest("step %s over %s makes more than 10000 points; use a larger step", q.Step, now.Sub(q.Since).Round(time.Second))
	}
	return q, nil
}

// autoStep picks a bucket width that gives about 60 points.
func autoStep(r time.Duration) time.Duration {
	for _, s := range []time.Duration{time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute,
		5 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour, 6 * time.Hour} {
		if r/s <= 60 {
			return s
		}
	}
	return 24 * time.Hour
}
