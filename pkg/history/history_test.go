package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/store"
)

// deployment returns a deployment's row bytes as the agent writes them
// (encoding/json of a map: sorted keys).
func deployment(t testing.TB, rv uint64, replicas int, labels map[string]string) []byte {
	t.Helper()
	meta := map[string]any{"name": "web", "namespace": "default", "uid": "u1", "resourceVersion": fmt.Sprint(rv),
		"annotations": map[string]any{"app.kubernetes.io/name": "web"}}
	if labels != nil {
		meta["labels"] = labels
	}
	obj := map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
		"spec": map[string]any{"replicas": replicas, "template": map[string]any{"metadata": map[string]any{"creationTimestamp": nil},
			"spec": map[string]any{"containers": []any{map[string]any{"name": "c", "image": "nginx:1", "ports": []any{80.5}}}}}},
		"status": map[string]any{"readyReplicas": replicas},
	}
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDiffRoundTripAndPaths(t *testing.T) {
	older := deployment(t, 10, 1, nil)
	newer := deployment(t, 11, 3, map[string]string{"team": "a", "app.kubernetes.io/part-of": "shop"})
	back, changed, err := Diff(older, newer)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"metadata.labels", "spec.replicas", "status.readyReplicas"}
	if d := cmp.Diff(want, changed); d != "" {
		t.Errorf("changed paths (-want +got):\n%s", d)
	}
	got, err := Apply(newer, back)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(older) {
		t.Errorf("Apply(newer, back) is not older's bytes:\n got %s\nwant %s", got, older)
	}
	if len(back) >= len(older) {
		t.Errorf("the patch (%d bytes) is not smaller than the object (%d)", len(back), len(older))
	}
}

func TestDiffNestedPathsAndArrays(t *testing.T) {
	a := []byte(`{"metadata":{"labels":{"app.kubernetes.io/name":"x"}},"spec":{"containers":[{"image":"a"},{"image":"b"}],"list":[1,2]}}`)
	b := []byte(`{"metadata":{"labels":{"app.kubernetes.io/name":"y"}},"spec":{"containers":[{"image":"a"},{"image":"c"}],"list":[1,2,3]}}`)
	back, changed, err := Diff(a, b)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"metadata.labels['app.kubernetes.io/name']", "spec.containers[1].image", "spec.list"}
	if d := cmp.Diff(want, changed); d != "" {
		t.Errorf("changed paths (-want +got):\n%s", d)
	}
	got, err := Apply(b, back)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(a) {
		t.Errorf("got %s, want %s", got, a)
	}
	if _, err := Apply(b, []byte(`[[["spec","missing","x"],1]]`)); err == nil {
		t.Error("a patch into a missing field applied without an error")
	}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func row(t testing.TB, uid, name string, rv uint64, at time.Time, obj []byte) *store.Row {
	return &store.Row{UID: uid, Namespace: "default", Name: name, ResourceVersion: rv, ObservedAt: at, Object: obj}
}

var t0 = time.Date(2026, 12, 6, 11, 0, 0, 0, time.UTC)

func TestRecordHistoryAndViews(t *testing.T) {
	c := &clock{t: t0}
	l := NewLog(Options{Resource: "deployments.apps", Retention: time.Hour, Now: c.now})
	if _, _, err := l.ViewAt(t0); err == nil {
		t.Fatal("a view before the base was answered")
	}
	other := []byte(`{"metadata":{"name":"old","namespace":"default","resourceVersion":"5"}}`)
	l.Base(Listed{Rows: []*store.Row{row(t, "u0", "old", 5, t0, other)}, RV: 9, At: t0})
	mgr := []krmv1alpha1.ManagerEntry{{Manager: "kubectl-client-side-apply", Operation: "Update"}}
	steps := []struct {
		event    string
		rv       uint64
		replicas int
		labels   map[string]string
	}{{Added, 10, 1, nil}, {Modified, 11, 3, nil}, {Modified, 12, 3, map[string]string{"team": "a"}}, {Deleted, 13, 3, map[string]string{"team": "a"}}}
	for i, s := range steps {
		c.t = t0.Add(time.Duration(i+1) * time.Minute)
		l.Record(Entry{Event: s.event, Source: Watch, Row: row(t, "u1", "web", s.rv, c.t, deployment(t, s.rv, s.replicas, s.labels)), Managers: mgr})
	}
	// A resumed watch's replay changes nothing.
	l.Record(Entry{Event: Modified, Source: Watch, Row: row(t, "u1", "web", 11, c.t, deployment(t, 11, 3, nil))})
	revs, err := l.History("default", "web", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	type summary struct {
		Rev     int
		RV      string
		Event   string
		Changed []string
	}
	var got []summary
	for i, r := range revs {
		got = append(got, summary{r.Revision, r.ResourceVersion, r.Event, r.Changed})
		if string(r.Object) != string(deployment(t, steps[i].rv, steps[i].replicas, steps[i].labels)) {
			t.Errorf("revision %d's object is not the one recorded", r.Revision)
		}
		if r.Name != "u1-"+r.ResourceVersion || r.Source != Watch || len(r.Managers) != 1 {
			t.Errorf("revision %d: name %q source %q managers %v", r.Revision, r.Name, r.Source, r.Managers)
		}
	}
	want := []summary{{1, "10", Added, nil}, {2, "11", Modified, []string{"spec.replicas", "status.readyReplicas"}},
		{3, "12", Modified, []string{"metadata.labels"}}, {4, "13", Deleted, nil}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("history (-want +got):\n%s", d)
	}
	since, _ := l.History("default", "web", t0.Add(150*time.Second))
	if len(since) != 2 || since[0].Revision != 3 {
		t.Errorf("since 2m30s: got %d revisions", len(since))
	}

	names := func(items []Item) string {
		var s []string
		for _, it := range items {
			s = append(s, fmt.Sprintf("%s@%d", it.Name, it.ResourceVersion))
		}
		return strings.Join(s, ",")
	}
	for at, want := range map[time.Duration]string{0: "old@5", 90 * time.Second: "old@5,web@10", 150 * time.Second: "old@5,web@11", 5 * time.Minute: "old@5"} {
		items, _, err := l.ViewAt(t0.Add(at))
		if err != nil {
			t.Fatal(err)
		}
		if got := names(items); got != want {
			t.Errorf("view at +%s: got %s, want %s", at, got, want)
		}
	}
	items, err := l.ViewAtResourceVersion(11)
	if err != nil || names(items) != "old@5,web@11" {
		t.Errorf("view at rv 11: %s, %v", names(items), err)
	}
	if string(items[1].Object) != string(deployment(t, 11, 3, nil)) {
		t.Error("the view at rv 11 holds another object")
	}
	var tooOld *TooOldError
	if _, err := l.ViewAtResourceVersion(8); !errors.As(err, &tooOld) || tooOld.ReachRV != 9 {
		t.Errorf("view at rv 8 before the base at 9: %v", err)
	}
	if _, _, err := l.ViewAt(t0.Add(-time.Second)); !errors.As(err, &tooOld) {
		t.Errorf("view before the base: %v", err)
	}
}

func TestRepair(t *testing.T) {
	c := &clock{t: t0}
	l := NewLog(Options{Resource: "pods", Retention: time.Hour, Now: c.now})
	a := []byte(`{"metadata":{"name":"a"},"v":1}`)
	b := []byte(`{"metadata":{"name":"b"},"v":1}`)
	mgr := []krmv1alpha1.ManagerEntry{{Manager: "kubelet", Operation: "Update"}}
	// Before the base nothing is placed.
	l.Repair([]Entry{{Event: Added, Row: row(t, "ux", "x", 3, t0, a)}})
	l.Base(Listed{Rows: []*store.Row{row(t, "ua", "a", 5, t0, a), row(t, "ub", "b", 6, t0, b)}, RV: 6, At: t0,
		Managers: map[string][]krmv1alpha1.ManagerEntry{"ua": mgr}})
	// A later LIST changes nothing by itself: what it exposes comes as
	// repairs.
	l.Base(Listed{Rows: []*store.Row{row(t, "ua", "a", 9, t0, a)}, RV: 9, At: t0})
	// The watch missed: a modified at 7, b deleted, c added at 8; x was
	// never there.
	a2 := []byte(`{"metadata":{"name":"a"},"v":2}`)
	cc := []byte(`{"metadata":{"name":"c"},"v":1}`)
	c.t = t0.Add(time.Minute)
	l.Repair([]Entry{
		{Event: Modified, Row: row(t, "ua", "a", 7, c.t, a2)},
		{Event: Deleted, Row: &store.Row{UID: "ub", Namespace: "default", Name: "b", ResourceVersion: 9, ObservedAt: c.t, Object: b}},
		{Event: Added, Row: row(t, "uc", "c", 8, c.t, cc), Managers: mgr},
		{Event: Deleted, Row: &store.Row{UID: "ux", Namespace: "default", Name: "x", ResourceVersion: 9, ObservedAt: c.t}},
		// One the log already holds (the watch delivered it): nothing.
		{Event: Modified, Row: row(t, "ua", "a", 7, c.t, a2)},
	})
	type rev struct{ Event, Source, RV, Manager, Object string }
	want := map[string][]rev{
		"a": {{Added, List, "5", "kubelet", string(a)}, {Modified, List, "7", "kubelet", string(a2)}},
		"b": {{Added, List, "6", "", string(b)}, {Deleted, List, "9", "", string(b)}},
		"c": {{Added, List, "8", "kubelet", string(cc)}},
		"x": nil,
	}
	for name, w := range want {
		revs, err := l.History("default", name, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		var got []rev
		for _, r := range revs {
			m := ""
			if len(r.Managers) > 0 {
				m = r.Managers[0].Manager
			}
			got = append(got, rev{r.Event, r.Source, r.ResourceVersion, m, string(r.Object)})
			if (r.Event == Modified || r.Event == Deleted) && !r.ObservedAt.Equal(c.t) {
				t.Errorf("%s's repair observed at %s, want when the LIST landed, %s", name, r.ObservedAt, c.t)
			}
		}
		if d := cmp.Diff(w, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", name, d)
		}
	}
	items, err := l.ViewAtResourceVersion(9)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, it := range items {
		names = append(names, fmt.Sprintf("%s@%d", it.Name, it.ResourceVersion))
	}
	if got := strings.Join(names, ","); got != "a@7,c@8" {
		t.Errorf("view at rv 9 after the repairs: %s, want a@7,c@8", got)
	}
}

func TestTrimKeepsTheStateAtTheCut(t *testing.T) {
	c := &clock{t: t0}
	l := NewLog(Options{Resource: "pods", Retention: 10 * time.Minute, Now: c.now})
	still := []byte(`{"metadata":{"name":"still"}}`)
	l.Base(Listed{Rows: []*store.Row{row(t, "us", "still", 1, t0, still)}, RV: 1, At: t0})
	for i := 1; i <= 30; i++ {
		c.t = t0.Add(time.Duration(i) * time.Minute)
		obj := []byte(fmt.Sprintf(`{"metadata":{"name":"busy"},"n":%d}`, i))
		ev := Modified
		if i == 1 {
			ev = Added
		}
		l.Record(Entry{Event: ev, Source: Watch, Row: row(t, "ub", "busy", uint64(1+i), c.t, obj)})
		gone := []byte(fmt.Sprintf(`{"metadata":{"name":"gone%d"}}`, i))
		l.Record(Entry{Event: Added, Source: Watch, Row: row(t, fmt.Sprint("g", i), fmt.Sprint("gone", i), uint64(100+2*i), c.t, gone)})
		l.Record(Entry{Event: Deleted, Source: Watch, Row: row(t, fmt.Sprint("g", i), fmt.Sprint("gone", i), uint64(101+2*i), c.t, gone)})
	}
	l.Trim()
	reach, _, _ := l.Reach()
	if !reach.Equal(t0.Add(20 * time.Minute)) {
		t.Errorf("reach %s, want the cut at +20m", reach)
	}
	// The unchanged object and busy's state at the cut stay.
	items, _, err := l.ViewAt(reach)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range items {
		got = append(got, it.Name+"="+string(it.Object))
	}
	want := []string{`busy={"metadata":{"name":"busy"},"n":20}`, `still={"metadata":{"name":"still"}}`}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("view at the cut (-want +got):\n%s", d)
	}
	revs, _ := l.History("default", "busy", time.Time{})
	if len(revs) != 11 || revs[0].Revision != 1 || revs[0].ResourceVersion != "21" {
		t.Errorf("busy keeps %d revisions from rv %s, want 11 from 21", len(revs), revs[0].ResourceVersion)
	}
	if revs, _ := l.History("default", "gone5", time.Time{}); len(revs) != 0 {
		t.Errorf("an object deleted before the cut kept %d revisions", len(revs))
	}
	if _, _, err := l.ViewAt(t0.Add(19 * time.Minute)); err == nil {
		t.Error("a view before the cut was answered")
	}
}

func TestByteBound(t *testing.T) {
	c := &clock{t: t0}
	const bound = 20_000
	l := NewLog(Options{Resource: "pods", Retention: time.Hour, MaxBytes: bound, Now: c.now})
	l.Base(Listed{RV: 1, At: t0})
	for i := 1; i <= 2000; i++ {
		c.t = t0.Add(time.Duration(i) * time.Second)
		obj := []byte(fmt.Sprintf(`{"metadata":{"name":"p"},"n":%d,"pad":"%s"}`, i, strings.Repeat("x", i%50)))
		ev := Modified
		if i == 1 {
			ev = Added
		}
		l.Record(Entry{Event: ev, Source: Watch, Row: row(t, "u", "p", uint64(1+i), c.t, obj)})
		if b := l.Bytes(); b > bound {
			t.Fatalf("after %d revisions the log holds %d bytes, over its bound %d", i, b, bound)
		}
	}
	revs, err := l.History("default", "p", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) < 50 || revs[len(revs)-1].ResourceVersion != "2001" {
		t.Errorf("kept %d revisions ending at %s", len(revs), revs[len(revs)-1].ResourceVersion)
	}
	reach, _, _ := l.Reach()
	// The first revision kept is the state at the cut.
	if reach.Before(revs[0].ObservedAt) || !reach.Before(revs[1].ObservedAt) {
		t.Errorf("reach %s is not between the first two kept revisions (%s, %s)", reach, revs[0].ObservedAt, revs[1].ObservedAt)
	}
}

// memPersister keeps what Write gets, as Redis would, for the load path.
type memPersister struct{ stored Stored }

func (m *memPersister) Write(_ context.Context, _ string, recs []Record, dropped []string, cut time.Time, st State) error {
	if m.stored.Heads == nil {
		m.stored.Heads = map[string]Record{}
	}
	for _, r := range recs {
		m.stored.Records = append(m.stored.Records, r)
		m.stored.Heads[r.UID] = r
	}
	for _, uid := range dropped {
		delete(m.stored.Heads, uid)
	}
	kept := m.stored.Records[:0]
	for _, r := range m.stored.Records {
		if !r.Meta.At.Before(cut) {
			kept = append(kept, r)
		}
	}
	m.stored.Records, m.stored.State = kept, st
	return nil
}

func (m *memPersister) Load(context.Context, string) (*Stored, error) { return &m.stored, nil }

// checkSurvives records, trims and writes a history through p, loads it
// into a new log and compares what both answer.
func checkSurvives(t *testing.T, p Persister, t0 time.Time) {
	c := &clock{t: t0}
	l := NewLog(Options{Resource: "deployments.apps", Retention: 10 * time.Minute, Now: c.now, Persist: p})
	l.Base(Listed{Rows: []*store.Row{row(t, "us", "still", 1, t0, []byte(`{"metadata":{"name":"still"}}`))}, RV: 1, At: t0})
	for i := 1; i <= 20; i++ {
		c.t = t0.Add(time.Duration(i) * time.Minute)
		ev := Modified
		if i == 1 {
			ev = Added
		}
		l.Record(Entry{Event: ev, Source: Watch, Row: row(t, "u1", "web", uint64(1+i), c.t, deployment(t, uint64(1+i), i, nil)),
			Managers: []krmv1alpha1.ManagerEntry{{Manager: "kubectl", Operation: "Update", Time: "2026-12-06T11:00:00Z"}}})
		l.Trim()
		if err := l.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	c.t = c.t.Add(time.Minute)
	l.Trim()
	before, err := l.History("default", "web", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	loaded := NewLog(Options{Resource: "deployments.apps", Retention: 10 * time.Minute, Now: c.now, Persist: p})
	if err := loaded.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	loaded.Trim()
	after, err := loaded.History("default", "web", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(before, after); d != "" {
		t.Errorf("history after a reload (-before +after):\n%s", d)
	}
	wantView, _, err := l.ViewAt(t0.Add(15 * time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	gotView, _, err := loaded.ViewAt(t0.Add(15 * time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(wantView, gotView); d != "" {
		t.Errorf("view after a reload (-before +after):\n%s", d)
	}
	// Until this run's first LIST, the time since the last write is a gap.
	var tooOld *TooOldError
	if _, _, err := loaded.ViewAt(c.t); !errors.As(err, &tooOld) || tooOld.Gap == nil {
		t.Errorf("a view after the last write: %v, want a gap", err)
	}
	loaded.Base(Listed{Rows: []*store.Row{row(t, "us", "still", 1, c.t, []byte(`{"metadata":{"name":"still"}}`))}, RV: 30, At: c.t})
	revs, _ := loaded.History("default", "web", time.Time{})
	if last := revs[len(revs)-1]; last.Event != Deleted || last.Source != List {
		t.Errorf("web, gone from the first LIST after the restart, ends with %s/%s", last.Event, last.Source)
	}
}

func TestSurvivesReload(t *testing.T) { checkSurvives(t, &memPersister{}, t0) }
