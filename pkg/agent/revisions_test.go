package agent

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/krm-project/krm/pkg/agent/aggregate"
	"github.com/krm-project/krm/pkg/api"
	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/history"
	"github.com/krm-project/krm/pkg/store"
)

// TestHistoryRepairsAreTheJudgedDrift checks that history's list repairs
// are exactly the drift the aggregator judges, when it judges it: nothing
// while the watch is behind a LIST, the missed events once it passes it,
// and at once when the watch was ahead.
func TestHistoryRepairsAreTheJudgedDrift(t *testing.T) {
	a := newTestAggregator()
	r := &runner{agg: a, log: slog.New(slog.DiscardHandler), info: api.ResourceInfo{Name: "pods"},
		hist: history.NewLog(history.Options{Resource: "pods", Retention: time.Hour, Now: a.Now})}
	a.OnDrift = r.repairHistory
	// As runner.verifyOnce and runner.handle do.
	list := func(rv uint64, managers map[string][]krmv1alpha1.ManagerEntry, rows ...*store.Row) {
		at := t0.Add(time.Duration(rv) * time.Second)
		a.Verify(aggregate.Verification{Rows: rows, RV: rv, At: at, Managers: managers})
		r.histManagers = managers
		r.baseHistory(rows, rv, at)
	}
	event := func(typ string, row *store.Row) {
		row.ObservedAt = t0.Add(time.Duration(row.ResourceVersion) * time.Second)
		a.Apply(typ, row, aggregate.Received)
		r.hist.Record(history.Entry{Event: typ, Source: history.Watch, Row: row})
	}
	revisions := func() map[string]string {
		out := map[string]string{}
		for _, name := range []string{"a", "b", "c", "m", "n", "x"} {
			revs, err := r.hist.History("ns", name, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			s := ""
			for _, rv := range revs {
				m := ""
				if len(rv.Managers) > 0 {
					m = "(" + rv.Managers[0].Manager + ")"
				}
				s += fmt.Sprintf(" %s@%s/%s%s", rv.Event, rv.ResourceVersion, rv.Source, m)
			}
			if s != "" {
				out[name] = s[1:]
			}
		}
		return out
	}
	kubelet := []krmv1alpha1.ManagerEntry{{Manager: "kubelet", Operation: "Update"}}

	list(10, nil, row("a", 5, store.Verified), row("b", 7, store.Verified), row("c", 8, store.Verified))
	event(modified, row("a", 12, store.Streamed))
	// The LIST at 20 is ahead of the watch (12): nothing is judged yet.
	list(20, map[string][]krmv1alpha1.ManagerEntry{"uid-m": kubelet, "uid-c": kubelet},
		row("a", 12, store.Verified), row("c", 17, store.Verified), row("n", 18, store.Verified), row("m", 19, store.Verified))
	want := map[string]string{
		"a": "ADDED@5/list MODIFIED@12/watch",
		"b": "ADDED@7/list",
		"c": "ADDED@8/list",
	}
	if d := cmp.Diff(want, revisions()); d != "" {
		t.Errorf("while the watch is behind the LIST (-want +got):\n%s", d)
	}
	// The late events arrive: watch revisions, not repairs.
	event(modified, row("c", 17, store.Streamed))
	event(added, row("n", 18, store.Streamed))
	event(deleted, row("b", 19, store.Streamed))
	// The watch passes 20 without m's ADDED: m was missed, and its repair
	// is recorded before the event that passed the LIST.
	event(added, row("x", 25, store.Streamed))
	want = map[string]string{
		"a": "ADDED@5/list MODIFIED@12/watch",
		"b": "ADDED@7/list DELETED@19/watch",
		"c": "ADDED@8/list MODIFIED@17/watch",
		"n": "ADDED@18/watch",
		"m": "ADDED@19/list(kubelet)",
		"x": "ADDED@25/watch",
	}
	if d := cmp.Diff(want, revisions()); d != "" {
		t.Errorf("after the watch passed the LIST (-want +got):\n%s", d)
	}
	// A LIST the watch is ahead of is judged at once: a modified at 28 and
	// c deleted, both missed.
	a.Progress(35)
	list(30, map[string][]krmv1alpha1.ManagerEntry{"uid-a": kubelet},
		row("a", 28, store.Verified), row("n", 18, store.Verified), row("m", 19, store.Verified), row("x", 25, store.Verified))
	want["a"] += " MODIFIED@28/list(kubelet)"
	want["c"] += " DELETED@30/list"
	if d := cmp.Diff(want, revisions()); d != "" {
		t.Errorf("after a LIST behind the watch (-want +got):\n%s", d)
	}
	// History and the ledger name the same misses.
	var ledger []string
	for _, e := range a.Drift().Ledger {
		ledger = append(ledger, e.Kind+" "+e.Name)
	}
	if d := cmp.Diff([]string{"MissedAdded m", "MissedModified a", "MissedDeleted c"}, ledger); d != "" {
		t.Errorf("ledger (-want +got):\n%s", d)
	}
	revs, _ := r.hist.History("ns", "c", time.Time{})
	if got := string(revs[len(revs)-1].Object); got != string(row("c", 17, store.Streamed).Object) {
		t.Errorf("c's DELETED repair holds %s, want the object as the watch last held it", got)
	}
}

// Candidates the aggregator gives up on (the watch restarts past their
// LIST and will never deliver their events) are not drift, but history
// takes the LIST's word on them, as the views do: else an object created
// while the watch was away would be missing from every view at a time
// after it, and one deleted then would stand in them forever.
func TestHistoryTakesTheListForCandidatesGivenUpOn(t *testing.T) {
	a := newTestAggregator()
	r := &runner{agg: a, log: slog.New(slog.DiscardHandler), info: api.ResourceInfo{Name: "pods"},
		hist: history.NewLog(history.Options{Resource: "pods", Retention: time.Hour, Now: a.Now})}
	a.OnDrift = r.driftFound
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	r.metrics = m
	first := []*store.Row{row("b", 7, store.Verified), row("c", 8, store.Verified)}
	a.Verify(listed(10, first...))
	r.baseHistory(first, 10, t0)
	// The watch breaks; a LIST at 20 has n (created at 18), c modified at
	// 19, and lacks b. The watch restarts from it.
	a.Verify(aggregate.Verification{Rows: []*store.Row{row("c", 19, store.Verified), row("n", 18, store.Verified)}, RV: 20, At: t0.Add(time.Minute),
		Managers: map[string][]krmv1alpha1.ManagerEntry{"uid-n": {{Manager: "kubectl-create", Operation: "Update"}}}})
	a.WatchFrom(a.ResumeFrom())
	got := map[string]string{}
	for _, name := range []string{"b", "c", "n"} {
		revs, _ := r.hist.History("ns", name, time.Time{})
		for _, rv := range revs {
			got[name] += fmt.Sprintf(" %s@%s/%s%d", rv.Event, rv.ResourceVersion, rv.Source, len(rv.Managers))
		}
	}
	want := map[string]string{"b": " ADDED@7/list0 DELETED@20/list0", "c": " ADDED@8/list0 MODIFIED@19/list0", "n": " ADDED@18/list1"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("history (-want +got):\n%s", d)
	}
	if st := a.Status(api.ResourceInfo{}); st.TotalDrift.Total() != 0 || st.DriftUnjudged != 3 || len(a.Drift().Ledger) != 0 {
		t.Errorf("drift %+v, unjudged %d, ledger %v; want none, 3, empty", st.TotalDrift, st.DriftUnjudged, a.Drift().Ledger)
	}
	items, err := r.hist.ViewAtResourceVersion(20)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, it := range items {
		names = append(names, fmt.Sprintf("%s@%d", it.Name, it.ResourceVersion))
	}
	if d := cmp.Diff([]string{"c@19", "n@18"}, names); d != "" {
		t.Errorf("history's view at 20, which the views hold (-want +got):\n%s", d)
	}
}
