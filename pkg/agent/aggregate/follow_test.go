package aggregate

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/store"
)

func frameOf(src store.Source, rv uint64, rows ...*store.Row) *store.Frame {
	return &store.Frame{Header: store.Header{Resource: "pods", Source: src, ResourceVersion: rv, VerifiedAt: t0}, Rows: rows}
}

// TestFollowLoadsTheLeadersFrames: a follower serves the leader's views,
// fresh; its watchers see the changes; the unverified changes are the
// difference between the two frames; and once it leads, its first LIST
// replaces what it followed without judging drift against it.
func TestFollowLoadsTheLeadersFrames(t *testing.T) {
	a := newTestAggregator()
	_, _, changes, _ := a.Subscribe(t.Context(), store.Aggregated, 0)
	a.Follow(
		frameOf(store.Verified, 10, row("a", 5, store.Verified), row("b", 6, store.Verified)),
		frameOf(store.Aggregated, 12, row("a", 11, store.Streamed), row("c", 12, store.Streamed)),
	)
	if diff := cmp.Diff(map[string]string{"a": "11/streamed", "c": "12/streamed"}, view(a, store.Aggregated)); diff != "" {
		t.Errorf("aggregated view (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"a": "5/verified", "b": "6/verified"}, view(a, store.Verified)); diff != "" {
		t.Errorf("verified view (-want +got):\n%s", diff)
	}
	st := a.Status(api.ResourceInfo{Name: "pods"})
	if st.Stale || st.VerifiedResourceVersion != "10" || st.StreamedResourceVersion != "12" {
		t.Errorf("status: stale %v, verified %s, streamed %s; want fresh, 10, 12", st.Stale, st.VerifiedResourceVersion, st.StreamedResourceVersion)
	}
	got := map[string]string{}
	for _, c := range a.Drift().Unverified {
		got[c.Name] = c.Type
	}
	if diff := cmp.Diff(map[string]string{"a": api.ChangeModified, "b": api.ChangeDeleted, "c": api.ChangeAdded}, got); diff != "" {
		t.Errorf("unverified changes (-want +got):\n%s", diff)
	}
	seen := map[string]string{}
	for range 2 {
		c := <-changes
		seen[c.Row.Name] = c.Type
	}
	if diff := cmp.Diff(map[string]string{"a": added, "c": added}, seen); diff != "" {
		t.Errorf("changes watchers saw (-want +got):\n%s", diff)
	}

	// The leader's next event.
	a.Apply(deleted, row("c", 13, store.Streamed), Received)
	if _, ok := view(a, store.Aggregated)["c"]; ok {
		t.Error("a followed DELETED event left c in the aggregated view")
	}

	// Leading now: the first LIST is not judged against followed state.
	if a.Judging() {
		t.Error("the first LIST after following would be judged for drift")
	}
	d := a.Verify(listed(20, row("a", 11, store.Verified), row("z", 19, store.Verified)))
	if d != (api.DriftCounts{}) {
		t.Errorf("drift judged against followed state: %+v", d)
	}
	if !a.Judging() {
		t.Error("the LIST after the first is not judged")
	}
}
