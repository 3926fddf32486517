package aggregate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/krm-project/krm/pkg/agent/aggregate/aggregatetest"
	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/store"
)

var t0 = aggregatetest.T0

var row = aggregatetest.Row

func listed(rv uint64, rows ...*store.Row) Verification {
	return Verification{Rows: rows, RV: rv, At: t0}
}

// view summarises a snapshot as name -> rv/source.
func view(a *Aggregator, v store.Source) map[string]string {
	out := map[string]string{}
	for _, r := range a.Snapshot(v).Rows.Slice() {
		out[r.Name] = fmt.Sprintf("%d/%s", r.ResourceVersion, r.Source)
	}
	return out
}

func newTestAggregator() *Aggregator {
	return New("test", "pods", func() time.Time { return t0 })
}

func TestFirstListSeedsEveryView(t *testing.T) {
	a := newTestAggregator()
	if a.Ready() {
		t.Fatal("ready before any LIST")
	}
	drift := a.Verify(listed(10, row("a", 5, store.Verified), row("b", 7, store.Verified)))
	if drift.Total() != 0 {
		t.Errorf("first LIST reported drift %+v", drift)
	}
	want := map[string]string{"a": "5/verified", "b": "7/verified"}
	for _, v := range []store.Source{store.Verified, store.Aggregated, store.Streamed} {
		if diff := cmp.Diff(want, view(a, v)); diff != "" {
			t.Errorf("%s view (-want +got):\n%s", v, diff)
		}
	}
	if !a.Ready() {
		t.Error("not ready after the first LIST")
	}
	if got := a.Snapshot(store.Aggregated).Header.ResourceVersion; got != 10 {
		t.Errorf("aggregated resourceVersion = %d, want 10", got)
	}
}

func TestEventsApplyOnTopOfTheList(t *testing.T) {
	a := newTestAggregator()
	a.Verify(listed(10, row("a", 5, store.Verified), row("b", 7, store.Verified), row("c", 8, store.Verified)))
	a.Apply(added, row("d", 11, store.Streamed), Received)
	a.Apply(modified, row("a", 12, store.Streamed), Received)
	a.Apply(deleted, row("b", 13, store.Streamed), Received)
	// Replayed by a resumed watch: already in the LIST, changes nothing.
	a.Apply(modified, row("c", 9, store.Streamed), Received)

	if diff := cmp.Diff(map[string]string{"a": "12/streamed", "c": "8/verified", "d": "11/streamed"}, view(a, store.Aggregated)); diff != "" {
		t.Errorf("aggregated (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"a": "5/verified", "b": "7/verified", "c": "8/verified"}, view(a, store.Verified)); diff != "" {
		t.Errorf("verified (-want +got):\n%s", diff)
	}
	var got []string
	for _, c := range a.Drift().Unverified {
		got = append(got, c.Type+" "+c.Name+" "+c.ResourceVersion+"<-"+c.VerifiedResourceVersion)
	}
	want := []string{"Modified a 12<-5", "Deleted b 13<-7", "Added d 11<-"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("unverified changes (-want +got):\n%s", diff)
	}
	if st := a.Status(api.ResourceInfo{Name: "pods"}); st.Events != 3 || st.Objects.Aggregated != 3 || st.Objects.Verified != 3 {
		t.Errorf("status = %+v, want 3 events, 3 aggregated and 3 verified objects", st)
	}
}

func TestVerifyRecordsDriftAndRepairs(t *testing.T) {
	a := newTestAggregator()
	a.Verify(listed(10, row("a", 5, store.Verified), row("b", 7, store.Verified), row("c", 8, store.Verified)))
	// The stream sees one change and misses three: "a" modified at 14,
	// "b" deleted, "n" added at 15. It sees "late" at 30, after the LIST.
	a.Apply(modified, row("c", 12, store.Streamed), Received)
	a.Apply(added, row("late", 30, store.Streamed), Received)

	drift := a.Verify(listed(20, row("a", 14, store.Verified), row("c", 12, store.Verified), row("n", 15, store.Verified)))
	if want := (api.DriftCounts{MissedAdded: 1, MissedDeleted: 1, MissedModified: 1}); drift != want {
		t.Errorf("drift = %+v, want %+v", drift, want)
	}
	var ledger []string
	for _, e := range a.Drift().Ledger {
		ledger = append(ledger, fmt.Sprintf("%s %s stream=%s list=%s at=%s", e.Kind, e.Name, e.StreamedResourceVersion, e.VerifiedResourceVersion, e.ListResourceVersion))
	}
	want := []string{
		"MissedModified a stream=5 list=14 at=20",
		"MissedDeleted b stream=7 list= at=20",
		"MissedAdded n stream= list=15 at=20",
	}
	if diff := cmp.Diff(want, ledger); diff != "" {
		t.Errorf("ledger (-want +got):\n%s", diff)
	}
	// Repaired: the LIST plus the event newer than it.
	wantView := map[string]string{"a": "14/verified", "c": "12/verified", "n": "15/verified", "late": "30/streamed"}
	for _, v := range []store.Source{store.Aggregated, store.Streamed} {
		if diff := cmp.Diff(wantView, view(a, v)); diff != "" {
			t.Errorf("%s after repair (-want +got):\n%s", v, diff)
		}
	}
	if n := len(a.Drift().Unverified); n != 1 {
		t.Errorf("unverified after the LIST = %d, want 1 (late)", n)
	}
}

func TestNoDriftForWhatTheStreamSawFirst(t *testing.T) {
	a := newTestAggregator()
	a.Verify(listed(10, row("a", 5, store.Verified), row("b", 7, store.Verified)))
	// The stream is ahead of the LIST: it saw "a" modified and "b" deleted
	// after the LIST's resourceVersion.
	a.Apply(modified, row("a", 25, store.Streamed), Received)
	a.Apply(deleted, row("b", 26, store.Streamed), Received)
	drift := a.Verify(listed(20, row("a", 5, store.Verified), row("b", 7, store.Verified)))
	if drift.Total() != 0 {
		t.Errorf("drift = %+v, want none: the stream was newer than the LIST", drift)
	}
	if diff := cmp.Diff(map[string]string{"a": "25/streamed"}, view(a, store.Aggregated)); diff != "" {
		t.Errorf("aggregated (-want +got):\n%s", diff)
	}
}

// Drift is judged only up to what the watch delivered, however long it lags:
// a LIST the watch is behind waits for it, and each difference is settled
// by its event arriving (no drift) or by the watch passing the LIST
// without it (drift). Elapsed time decides nothing.
func TestDriftIsNotJudgedBeyondWhatTheStreamDelivered(t *testing.T) {
	a := newTestAggregator()
	a.Verify(listed(10, row("a", 5, store.Verified), row("b", 7, store.Verified), row("c", 8, store.Verified)))
	a.Apply(modified, row("a", 12, store.Streamed), Received) // the stream reached 12
	// The LIST at 20 has "n" created at 18 and "m" at 19, "c" modified at
	// 17, and lacks "b": the watch has delivered only up to 12.
	v := listed(20, row("a", 12, store.Verified), row("c", 17, store.Verified), row("n", 18, store.Verified), row("m", 19, store.Verified))
	if drift := a.Verify(v); drift.Total() != 0 {
		t.Errorf("drift = %+v, want none while the watch is behind the LIST", drift)
	}
	if got := a.Status(api.ResourceInfo{}).DriftPending; got != 4 {
		t.Errorf("DriftPending = %d, want 4 (c, n, m, b)", got)
	}
	if diff := cmp.Diff(map[string]string{"a": "12/verified", "c": "17/verified", "n": "18/verified", "m": "19/verified"}, view(a, store.Aggregated)); diff != "" {
		t.Errorf("aggregated is the LIST all the same (-want +got):\n%s", diff)
	}
	// The late events arrive, older than the LIST: they change nothing in
	// the views, and settle "c", "n" and "b" as in flight, not missed.
	a.Apply(modified, row("c", 17, store.Streamed), Received)
	a.Apply(added, row("n", 18, store.Streamed), Received)
	a.Apply(deleted, row("b", 19, store.Streamed), Received)
	if diff := cmp.Diff(map[string]string{"a": "12/verified", "c": "17/verified", "n": "18/verified", "m": "19/verified"}, view(a, store.Aggregated)); diff != "" {
		t.Errorf("aggregated after late events (-want +got):\n%s", diff)
	}
	if st := a.Status(api.ResourceInfo{}); st.DriftPending != 1 || st.TotalDrift.Total() != 0 {
		t.Errorf("status = pending %d, drift %+v; want 1 pending (m) and no drift yet", st.DriftPending, st.TotalDrift)
	}
	// A bookmark past the LIST: the watch delivered everything up to 20
	// and never "m", which it missed.
	a.Progress(25)
	st := a.Status(api.ResourceInfo{})
	if want := (api.DriftCounts{MissedAdded: 1}); st.LastDrift != want || st.TotalDrift != want || st.DriftPending != 0 {
		t.Errorf("after the bookmark: last %+v, total %+v, pending %d; want %+v and nothing pending", st.LastDrift, st.TotalDrift, st.DriftPending, want)
	}
	var ledger []string
	for _, e := range a.Drift().Ledger {
		ledger = append(ledger, fmt.Sprintf("%s %s list=%s at=%s", e.Kind, e.Name, e.VerifiedResourceVersion, e.ListResourceVersion))
	}
	if diff := cmp.Diff([]string{"MissedAdded m list=19 at=20"}, ledger); diff != "" {
		t.Errorf("ledger (-want +got):\n%s", diff)
	}
}

// An event after the LIST also tells that the watch passed it; and the
// event itself is judged first, so a missed deletion settled by its own
// DELETED event at the LIST's resourceVersion is not drift.
func TestDriftIsJudgedWhenAnEventPassesTheList(t *testing.T) {
	a := newTestAggregator()
	a.Verify(listed(10, row("a", 5, store.Verified), row("b", 7, store.Verified), row("d", 8, store.Verified)))
	a.Verify(listed(20, row("a", 5, store.Verified)))
	a.Apply(deleted, row("b", 19, store.Streamed), Received) // before the LIST: delivered
	if st := a.Status(api.ResourceInfo{}); st.DriftPending != 1 || st.TotalDrift.Total() != 0 {
		t.Fatalf("pending %d, drift %+v; want d pending and no drift", st.DriftPending, st.TotalDrift)
	}
	a.Apply(added, row("x", 21, store.Streamed), Received)
	if want := (api.DriftCounts{MissedDeleted: 1}); a.Status(api.ResourceInfo{}).TotalDrift != want {
		t.Errorf("drift = %+v, want %+v (d's deletion never came)", a.Status(api.ResourceInfo{}).TotalDrift, want)
	}
}

// A LIST's judgments that wait for the watch join the ones it made at once
// in the ledger, by namespace/name, before a later LIST's.
func TestLedgerKeepsEachListsEntriesTogether(t *testing.T) {
	a := newTestAggregator()
	a.Verify(listed(10, row("b", 5, store.Verified), row("d", 6, store.Verified)))
	a.Apply(added, row("x", 15, store.Streamed), Received) // the watch is at 15
	// The LIST at 20 has "c" (created at 12: missed, judged at once) and
	// lacks "b" and "d" (their deletions may be in flight).
	a.Verify(listed(20, row("c", 12, store.Verified), row("x", 15, store.Verified)))
	a.Progress(25)
	var got []string
	for _, e := range a.Drift().Ledger {
		got = append(got, e.Name+"@"+e.ListResourceVersion)
	}
	if diff := cmp.Diff([]string{"b@20", "c@20", "d@20"}, got); diff != "" {
		t.Errorf("ledger (-want +got):\n%s", diff)
	}
}

// A watch that restarts past a waiting LIST will never deliver what it
// waits for: its candidates are counted as unjudged, not guessed.
func TestDriftUnjudgedWhenTheWatchRestartsPastTheList(t *testing.T) {
	a := newTestAggregator()
	a.Verify(listed(10, row("b", 7, store.Verified)))
	a.Verify(listed(20, row("n", 18, store.Verified)))
	a.WatchFrom(a.ResumeFrom())
	a.Progress(30)
	st := a.Status(api.ResourceInfo{})
	if st.TotalDrift.Total() != 0 || st.DriftPending != 0 || st.DriftUnjudged != 2 {
		t.Errorf("drift %+v, pending %d, unjudged %d; want no drift, nothing pending, 2 unjudged", st.TotalDrift, st.DriftPending, st.DriftUnjudged)
	}
}

// The candidates waiting for the watch are bounded: past pendingLimit the
// oldest LISTs' are given up on and counted.
func TestDriftPendingIsBounded(t *testing.T) {
	a := newTestAggregator()
	a.Verify(listed(10))
	var rows []*store.Row
	for l := range 3 {
		for i := range pendingLimit / 2 {
			rows = append(rows, row(fmt.Sprint("m", l, "-", i), uint64(11+l), store.Verified))
		}
		a.Verify(listed(uint64(20+l), rows...))
	}
	st := a.Status(api.ResourceInfo{})
	if st.DriftPending != pendingLimit || st.DriftUnjudged != pendingLimit/2 {
		t.Errorf("pending %d, unjudged %d; want %d pending and the first LIST's %d unjudged", st.DriftPending, st.DriftUnjudged, pendingLimit, pendingLimit/2)
	}
	a.Progress(30)
	if st := a.Status(api.ResourceInfo{}); st.DriftPending != 0 || st.TotalDrift.MissedAdded != pendingLimit {
		t.Errorf("after the bookmark: pending %d, drift %+v; want 0 and the last two LISTs' %d missed adds", st.DriftPending, st.TotalDrift, pendingLimit)
	}
}

func TestConfirmedRowsShareBytes(t *testing.T) {
	a := newTestAggregator()
	a.Verify(listed(10, row("a", 5, store.Verified)))
	streamed := row("a", 12, store.Streamed)
	a.Apply(modified, streamed, Received)
	a.Verify(listed(20, row("a", 12, store.Verified)))
	got := a.Snapshot(store.Aggregated).Rows.Slice()[0]
	if got.Source != store.Verified {
		t.Errorf("source = %s, want verified", got.Source)
	}
	if &got.Object[0] != &streamed.Object[0] {
		t.Error("the LIST's copy replaced the bytes the views already held; want one copy")
	}
	if v := a.Snapshot(store.Verified).Rows.Slice()[0]; &v.Object[0] != &streamed.Object[0] {
		t.Error("verified and aggregated views hold different copies of the same object")
	}
}

func TestSubscribersSeeChangesInOrder(t *testing.T) {
	a := newTestAggregator()
	a.Verify(listed(10, row("a", 5, store.Verified)))
	ctx, cancel := context.WithCancel(t.Context())
	snap, _, ch, _ := a.Subscribe(ctx, store.Aggregated, 0)
	if snap.Rows.Len() != 1 {
		t.Fatalf("snapshot rows = %d, want 1", snap.Rows.Len())
	}
	a.Apply(added, row("b", 11, store.Streamed), Received)
	a.Apply(modified, row("a", 12, store.Streamed), Received)
	a.Apply(deleted, row("b", 13, store.Streamed), Received)
	a.Verify(listed(20, row("a", 12, store.Verified), row("c", 15, store.Verified))) // c was missed
	var got []string
	for range 4 {
		c := <-ch
		got = append(got, c.Type+" "+c.Row.Name)
	}
	if diff := cmp.Diff([]string{"ADDED b", "MODIFIED a", "DELETED b", "ADDED c"}, got); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	cancel()
	for range ch {
	}
}

func TestSlowSubscriberIsDropped(t *testing.T) {
	a := newTestAggregator()
	a.Verify(listed(10))
	_, _, ch, _ := a.Subscribe(t.Context(), store.Aggregated, 0)
	for i := range subscriberBuffer + 1 {
		a.Apply(added, row(fmt.Sprint("p", i), uint64(11+i), store.Streamed), Received)
	}
	n := 0
	for range ch {
		n++
	}
	if n != subscriberBuffer {
		t.Errorf("received %d changes before the channel closed, want %d", n, subscriberBuffer)
	}
}

func TestLedgerIsBounded(t *testing.T) {
	a := newTestAggregator()
	a.Verify(listed(10))
	var rows []*store.Row
	for i := range ledgerSize + 10 {
		rows = append(rows, row(fmt.Sprint("m", i), 11, store.Verified))
	}
	a.Progress(20) // the watch is at the LIST: nothing in flight
	a.Verify(listed(20, rows...))
	if n := len(a.Drift().Ledger); n != ledgerSize {
		t.Errorf("ledger holds %d entries, want %d", n, ledgerSize)
	}
}

// BenchmarkApply measures the per-event cost at several object counts; it
// must not grow with the count.
func BenchmarkApply(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			a, rows := benchAggregator(n)
			rv := uint64(n)
			b.ResetTimer()
			for i := range b.N {
				rv++
				r := *rows[i%n]
				r.ResourceVersion, r.Source = rv, store.Streamed
				a.Apply(modified, &r, Received)
			}
		})
	}
}

// BenchmarkApplyFloor is BenchmarkApply's floor: per event, the same row
// copy and the map work any per-object index must do (find the object's
// row by UID, replace it, mark it changed), in plain Go maps, with no tree,
// log or aggregator. BenchmarkApply's growth from 1,000 to 100,000 objects
// beyond this one's is what the B-tree and the aggregator's own maps add.
func BenchmarkApplyFloor(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			_, rows := benchAggregator(n)
			byUID := make(map[string]*store.Row, n)
			changed := make(map[string]struct{}, n)
			for _, r := range rows {
				byUID[r.UID] = r
			}
			rv := uint64(n)
			b.ResetTimer()
			for i := range b.N {
				rv++
				r := *rows[i%n]
				r.ResourceVersion, r.Source = rv, store.Streamed
				if old := byUID[r.UID]; old == nil || old.ResourceVersion >= rv {
					b.Fatal("stale row")
				}
				byUID[r.UID] = &r
				changed[r.UID] = struct{}{}
			}
		})
	}
}

// A LIST that succeeds must not hide a watch that keeps failing, as with a
// ServiceAccount that may list but not watch.
func TestLastErrorKeepsEachPart(t *testing.T) {
	a := New("test", "pods", time.Now)
	lastError := func() string { return a.Status(api.ResourceInfo{Name: "pods"}).LastError }

	a.SetError(FromStream, errors.New("watching pods: forbidden"))
	a.SetError(FromList, nil)
	if got := lastError(); got != "watching pods: forbidden" {
		t.Fatalf("after a failed watch and a good LIST: LastError %q", got)
	}
	a.SetError(FromList, errors.New("listing pods: timeout"))
	if got, want := lastError(), "listing pods: timeout; watching pods: forbidden"; got != want {
		t.Fatalf("both failing: LastError %q, want %q", got, want)
	}
	a.SetError(FromStream, nil)
	a.SetError(FromList, nil)
	if got := lastError(); got != "" {
		t.Fatalf("both recovered: LastError %q", got)
	}
}

func TestWatchResumesFromHistory(t *testing.T) {
	a := newTestAggregator()
	a.Verify(listed(10, row("a", 5, store.Verified)))
	a.Apply(added, row("b", 11, store.Streamed), Received)
	a.Apply(modified, row("a", 12, store.Streamed), Received)
	a.Apply(deleted, row("b", 13, store.Streamed), Received)
	// c was missed; the LIST's repair is a change at the view's version.
	a.Verify(listed(20, row("a", 12, store.Verified), row("c", 15, store.Verified)))

	changes := func(from uint64) []string {
		t.Helper()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		_, backlog, _, err := a.Subscribe(ctx, store.Aggregated, from)
		if err != nil {
			t.Fatalf("subscribe from %d: %v", from, err)
		}
		var got []string
		for _, c := range backlog {
			got = append(got, fmt.Sprintf("%s %s %d", c.Type, c.Row.Name, c.ResourceVersion))
		}
		return got
	}
	if diff := cmp.Diff([]string{"ADDED b 11", "MODIFIED a 12", "DELETED b 13", "ADDED c 20"}, changes(10)); diff != "" {
		t.Errorf("changes after 10 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"DELETED b 13", "ADDED c 20"}, changes(12)); diff != "" {
		t.Errorf("changes after 12 (-want +got):\n%s", diff)
	}
	if got := changes(20); len(got) != 0 {
		t.Errorf("changes after the newest = %v, want none", got)
	}
	// The first LIST is where history starts: nothing before it is held.
	_, _, _, err := a.Subscribe(t.Context(), store.Aggregated, 9)
	var tooOld *api.TooOldError
	if !errors.As(err, &tooOld) || tooOld.Oldest != 10 {
		t.Errorf("subscribe from 9 = %v, want a TooOldError naming 10", err)
	}
}

func TestHistoryForgetsOldestChanges(t *testing.T) {
	a := newTestAggregator()
	a.Verify(listed(10))
	for i := range historySize + 5 {
		a.Apply(added, row(fmt.Sprint("p", i), uint64(11+i), store.Streamed), Received)
	}
	// The first five changes (11..15) were evicted; 15 is the floor.
	var tooOld *api.TooOldError
	if _, _, _, err := a.Subscribe(t.Context(), store.Aggregated, 14); !errors.As(err, &tooOld) || tooOld.Oldest != 15 {
		t.Errorf("subscribe from 14 = %v, want a TooOldError naming 15", err)
	}
	_, backlog, _, err := a.Subscribe(t.Context(), store.Aggregated, 15)
	if err != nil || len(backlog) != historySize {
		t.Errorf("subscribe from 15 = %d changes, %v; want %d", len(backlog), err, historySize)
	}
}

func TestHistoryRestartsWhenRevisionsGoBack(t *testing.T) {
	a := newTestAggregator()
	a.Verify(listed(100, row("a", 50, store.Verified)))
	a.Apply(modified, row("a", 101, store.Streamed), Received)
	// A warm load of frames from another run: no resuming across it.
	a.Load(&store.Frame{Header: store.Header{ResourceVersion: 40}, Rows: []*store.Row{row("a", 30, store.Verified)}}, nil)
	var tooOld *api.TooOldError
	if _, _, _, err := a.Subscribe(t.Context(), store.Aggregated, 39); !errors.As(err, &tooOld) {
		t.Errorf("subscribe from 39 after a load at 40 = %v, want a TooOldError", err)
	}
}

// The log keeps one event per object however many arrive, and a LIST older
// than some of them still ends with each object as its newest event left it.
func TestLogKeepsTheNewestEventPerObject(t *testing.T) {
	a := newTestAggregator()
	a.Verify(listed(10, row("a", 5, store.Verified), row("b", 6, store.Verified)))
	rv := uint64(10)
	for range 1000 {
		rv++
		a.Apply(modified, row("a", rv, store.Streamed), Received)
	}
	a.Apply(deleted, row("b", rv+1, store.Streamed), Received)
	a.Apply(added, row("c", rv+2, store.Streamed), Received)
	a.Apply(modified, row("c", rv+3, store.Streamed), Received)
	if n := a.log.len(); n != 3 {
		t.Fatalf("log holds %d events after 1003 events on 3 objects, want 3", n)
	}
	// A LIST from before the last events: they are applied on top of it.
	a.Verify(listed(rv, row("a", rv, store.Verified), row("b", 6, store.Verified)))
	want := map[string]string{"a": fmt.Sprintf("%d/verified", rv), "c": fmt.Sprintf("%d/streamed", rv+3)}
	if got := view(a, store.Aggregated); !maps.Equal(got, want) {
		t.Errorf("aggregated after the LIST: %v, want %v", got, want)
	}
	if n := a.log.len(); n != 2 {
		t.Errorf("log holds %d events after the LIST, want the 2 newer than it", n)
	}
}

// BenchmarkGetUnderChurn is a single-object read right after an event: the
// snapshot it takes must not sort or copy the view, so the cost stays flat
// in the number of objects.
func BenchmarkGetUnderChurn(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			a, rows := benchAggregator(n)
			rv := uint64(n)
			b.ResetTimer()
			for i := range b.N {
				rv++
				r := *rows[i%n]
				r.ResourceVersion, r.Source = rv, store.Streamed
				a.Apply(modified, &r, Received)
				want := rows[(i*7919)%n]
				if got := a.Snapshot(store.Aggregated).Rows.Get(want.Namespace, want.Name); got == nil {
					b.Fatalf("%s not found", want.Key())
				}
			}
		})
	}
}

// While LISTs fail, churn that creates and deletes new objects keeps the
// tombstones, the log and the changed set bounded; the views stay right,
// the dropped deletions are counted, and a LIST older than them asks for
// another.
func TestChurnWithoutListsStaysBounded(t *testing.T) {
	a := newTestAggregator()
	a.Verify(listed(10, row("keep", 5, store.Verified)))
	rv := uint64(10)
	const objects = 3 * tombstoneFloor
	for i := range objects {
		name := fmt.Sprint("churn-", i)
		rv++
		a.Apply(added, row(name, rv, store.Streamed), Received)
		rv++
		a.Apply(deleted, row(name, rv, store.Streamed), Received)
	}
	if n := len(a.tombstones); n > tombstoneFloor {
		t.Errorf("%d tombstones after %d deletions, want at most %d", n, objects, tombstoneFloor)
	}
	if n := a.log.len(); n > tombstoneFloor+1 {
		t.Errorf("log holds %d events, want at most %d", n, tombstoneFloor+1)
	}
	if n := len(a.changed); n > tombstoneFloor+1 {
		t.Errorf("changed holds %d objects, want at most %d", n, tombstoneFloor+1)
	}
	if len(a.tombOrder) > 2*tombstoneFloor+1024 {
		t.Errorf("tombOrder holds %d UIDs", len(a.tombOrder))
	}
	st := a.Status(api.ResourceInfo{Name: "pods"})
	if st.ForgottenDeletions != objects-tombstoneFloor {
		t.Errorf("ForgottenDeletions %d, want %d", st.ForgottenDeletions, objects-tombstoneFloor)
	}
	if got := view(a, store.Aggregated); len(got) != 1 || got["keep"] == "" {
		t.Errorf("aggregated view holds %d objects, want only keep", len(got))
	}
	// A LIST from before the churn: a newer one must follow.
	a.Verify(listed(10, row("keep", 5, store.Verified)))
	if !a.NeedsRelist() {
		t.Error("a LIST older than the forgotten deletions does not ask for another")
	}
	a.Verify(listed(rv, row("keep", 5, store.Verified)))
	if a.NeedsRelist() || a.Status(api.ResourceInfo{Name: "pods"}).ForgottenDeletions != 0 {
		t.Error("a LIST newer than every forgotten deletion still asks for another")
	}
}

// A drift report lists at most MaxUnverified unverified changes, in key
// order, and says how many it left out.
func TestDriftReportIsBounded(t *testing.T) {
	a := newTestAggregator()
	a.Verify(listed(10))
	n := api.MaxUnverified + 37
	for i := range n {
		a.Apply(added, row(fmt.Sprintf("p%05d", i), uint64(11+i), store.Streamed), Received)
	}
	r := a.Drift()
	if len(r.Unverified) != api.MaxUnverified || r.UnverifiedOmitted != 37 {
		t.Fatalf("%d unverified, %d omitted; want %d and 37", len(r.Unverified), r.UnverifiedOmitted, api.MaxUnverified)
	}
	if r.Unverified[0].Name != "p00000" || r.Unverified[len(r.Unverified)-1].Name != fmt.Sprintf("p%05d", api.MaxUnverified-1) {
		t.Errorf("kept %s..%s, want the first by name", r.Unverified[0].Name, r.Unverified[len(r.Unverified)-1].Name)
	}
}

// benchAggregator returns an Aggregator whose views hold n objects, and
// their rows.
func benchAggregator(n int) (*Aggregator, []*store.Row) {
	a := newTestAggregator()
	rows := make([]*store.Row, n)
	for i := range rows {
		rows[i] = row(fmt.Sprint("p", i), uint64(i+1), store.Verified)
	}
	a.Verify(listed(uint64(n), rows...))
	return a, rows
}

// A LIST older than the last (etcd restored from a backup) replaces the
// views whole: no drift is judged across the two timelines, the stream's
// resourceVersion drops back to the LIST's, and the restored cluster's next
// events are applied, not taken for replays.
func TestListGoingBackwardsStartsOver(t *testing.T) {
	a := newTestAggregator()
	a.Verify(listed(100, row("a", 90, store.Verified), row("b", 95, store.Verified)))
	a.Apply(modified, row("a", 110, store.Streamed), Received)
	a.Apply(added, row("c", 120, store.Streamed), Received)
	drift := a.Verify(listed(50, row("a", 40, store.Verified), row("z", 45, store.Verified)))
	if drift.Total() != 0 {
		t.Errorf("drift %+v judged across a restore", drift)
	}
	if got, want := view(a, store.Aggregated), map[string]string{"a": "40/verified", "z": "45/verified"}; !maps.Equal(got, want) {
		t.Errorf("aggregated after the restore: %v, want %v", got, want)
	}
	if st := a.Status(api.ResourceInfo{Name: "pods"}); st.StreamedResourceVersion != "50" {
		t.Errorf("streamed resourceVersion %q after a LIST at 50, want 50", st.StreamedResourceVersion)
	}
	a.Apply(added, row("d", 51, store.Streamed), Received)
	if got := view(a, store.Aggregated); got["d"] != "51/streamed" {
		t.Errorf("the restored cluster's event at 51 was not applied: %v", got)
	}
}
