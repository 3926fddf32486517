package agent_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/krm-project/krm/pkg/agent"
	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/store"
	"github.com/krm-project/krm/test/cluster/clustertest"
	"github.com/krm-project/krm/test/watchproxy"
)

// dropMisses drops the events the objects' names ask to be missed.
func dropMisses(typ, name string) bool {
	switch {
	case strings.HasPrefix(name, "miss-add-"):
		return typ == "ADDED"
	case strings.HasPrefix(name, "miss-mod-"):
		return typ == "MODIFIED"
	case strings.HasPrefix(name, "miss-del-"):
		return typ == "DELETED"
	}
	return false
}

// driftFinding is what the test checks of one drift ledger entry.
type driftFinding struct {
	Kind                    string
	Name                    string
	UID                     string
	StreamedResourceVersion string
	VerifiedResourceVersion string
}

// TestDriftIsFoundAndRepaired makes the agent's watch miss events, through
// a proxy that drops them, and checks that the next LIST finds each miss,
// names it in the drift ledger with the right kind, and repairs the views.
func TestDriftIsFoundAndRepaired(t *testing.T) {
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg, cs, ri := configMapClients(t, c, ns)
	proxy := watchproxy.New(t, cfg, dropMisses)
	const interval = 3 * time.Second
	ag := startAgent(t, agent.Config{
		RESTConfig: proxy.RESTConfig(), Resources: []string{"configmaps"}, Namespace: ns, VerifyInterval: interval,
		HistoryRetention: time.Hour,
	})
	ctx := t.Context()

	// Write right after a LIST lands, so that the wrong view can be seen
	// before the next one repairs it.
	before := resourceStatus(t, ag.client, "configmaps").Verifications
	eventually(t, 3*interval, "a LIST to land", func(context.Context) (string, error) {
		if n := resourceStatus(t, ag.client, "configmaps").Verifications; n == before {
			return fmt.Sprintf("%d LISTs so far", n), nil
		}
		return "", nil
	})
	w := newConfigMapWriter(cs, ns)
	var (
		normal  = []string{"normal-0", "normal-1", "normal-2", "normal-3", "normal-4"}
		missAdd = []string{"miss-add-0", "miss-add-1", "miss-add-2"}
		missMod = []string{"miss-mod-0", "miss-mod-1", "miss-mod-2"}
		missDel = []string{"miss-del-0", "miss-del-1", "miss-del-2"}
	)
	for _, name := range slices.Concat(normal, missMod, missDel) {
		if err := w.create(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	var firstMiss uint64
	for _, name := range missAdd {
		if err := w.create(ctx, name); err != nil {
			t.Fatal(err)
		}
		if firstMiss == 0 {
			firstMiss = w.log.last
		}
	}
	for _, name := range slices.Concat(missMod, []string{"normal-1", "normal-2"}) {
		if err := w.update(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range slices.Concat(missDel, []string{"normal-3"}) {
		if err := w.remove(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	// The last write is one the watch delivers: once the agent shows it,
	// every earlier event has been delivered or dropped.
	if err := w.update(ctx, "normal-0"); err != nil {
		t.Fatal(err)
	}
	fence := w.log.at("normal-0", -1)

	truth := w.state(func(name string) string { return w.log.at(name, -1) })
	streamed := w.state(func(name string) string {
		switch {
		case strings.HasPrefix(name, "miss-add-"):
			return ""
		case strings.HasPrefix(name, "miss-mod-"), strings.HasPrefix(name, "miss-del-"):
			return w.log.at(name, 0)
		}
		return w.log.at(name, -1)
	})

	// (a) Until the next LIST, the agent serves what its watch told it:
	// exactly the wrong view.
	eventually(t, 3*interval, "the watch to deliver the last write", func(ctx context.Context) (string, error) {
		got, l, err := servedVersions(ctx, ag.client, "configmaps", "aggregated")
		if err != nil {
			return "", err
		}
		if v, err := store.ParseResourceVersion(l.Freshness.VerifiedResourceVersion); err != nil || v >= firstMiss {
			t.Logf("a LIST (resourceVersion %s) landed before the wrong view could be seen; not checking it", l.Freshness.VerifiedResourceVersion)
			return "", nil
		}
		maps.DeleteFunc(got, func(_ string, v objectVersion) bool { return !ownConfigMap(v.Name) })
		if got[w.log.uid["normal-0"]].ResourceVersion != fence {
			return "the agent does not show normal-0's last write yet", nil
		}
		if diff := cmp.Diff(streamed, got); diff != "" {
			t.Errorf("before the LIST, the agent's aggregated view is not what the watch delivered (-want +got):\n%s", diff)
		}
		return "", nil
	})
	wantDropped := []watchproxy.Event{}
	for _, name := range missAdd {
		wantDropped = append(wantDropped, watchproxy.Event{Type: "ADDED", Name: name})
	}
	for _, name := range missMod {
		wantDropped = append(wantDropped, watchproxy.Event{Type: "MODIFIED", Name: name})
	}
	for _, name := range missDel {
		wantDropped = append(wantDropped, watchproxy.Event{Type: "DELETED", Name: name})
	}
	if diff := cmp.Diff(wantDropped, proxy.Dropped()); diff != "" {
		t.Fatalf("the proxy did not drop the events the test needs (-want +got):\n%s", diff)
	}

	// (b) Within a verify interval or two, the ledger names each miss,
	// with its kind and versions, and nothing else. Drift is judged only
	// up to what the watch delivered: a missed deletion is known once the
	// watch passes the LIST's resourceVersion without it, so the test keeps
	// writing a configmap the watch delivers (a quiet watch would pass it
	// at its next bookmark, about a minute later).
	ticks := 0
	var want []driftFinding
	for _, name := range missAdd {
		want = append(want, driftFinding{Kind: api.MissedAdded, Name: name, UID: w.log.uid[name], VerifiedResourceVersion: w.log.at(name, 0)})
	}
	for _, name := range missMod {
		want = append(want, driftFinding{Kind: api.MissedModified, Name: name, UID: w.log.uid[name],
			StreamedResourceVersion: w.log.at(name, 0), VerifiedResourceVersion: w.log.at(name, 1)})
	}
	for _, name := range missDel {
		want = append(want, driftFinding{Kind: api.MissedDeleted, Name: name, UID: w.log.uid[name], StreamedResourceVersion: w.log.at(name, 0)})
	}
	sortFindings(want)
	var found []driftFinding
	eventually(t, 3*interval+5*time.Second, "the drift ledger to name every missed event", func(ctx context.Context) (string, error) {
		r, err := ag.client.Drift(ctx, "configmaps")
		if err != nil {
			return "", err
		}
		found = findings(r)
		if len(found) < len(want) {
			tick := w.create
			if ticks > 0 {
				tick = w.update
			}
			if err := tick(ctx, "tick"); err != nil {
				return "", err
			}
			ticks++
			return fmt.Sprintf("ledger: %+v", found), nil
		}
		return "", nil
	})
	if diff := cmp.Diff(want, found); diff != "" {
		t.Errorf("drift ledger (-want +got):\n%s", diff)
	}
	st := resourceStatus(t, ag.client, "configmaps")
	if diff := cmp.Diff(api.DriftCounts{MissedAdded: 3, MissedDeleted: 3, MissedModified: 3}, st.TotalDrift); diff != "" {
		t.Errorf("status: total drift (-want +got):\n%s", diff)
	}

	// (c) The LIST that found the misses repaired the views: they equal
	// kube-apiserver's, and the next LIST finds nothing more.
	got, _, err := servedVersions(ctx, ag.client, "configmaps", "aggregated")
	if err != nil {
		t.Fatal(err)
	}
	maps.DeleteFunc(got, func(_ string, v objectVersion) bool { return !ownConfigMap(v.Name) })
	if diff := cmp.Diff(truth, got); diff != "" {
		t.Errorf("after the LIST, the agent's aggregated view of the written configmaps (-want +got):\n%s", diff)
	}
	waitMatchesList(t, 10*time.Second, ag.client, "configmaps", ri, "", "aggregated", "streamed")
	after := st.Verifications
	eventually(t, 3*interval, "one more LIST to land", func(context.Context) (string, error) {
		st = resourceStatus(t, ag.client, "configmaps")
		if st.Verifications == after {
			return fmt.Sprintf("%d LISTs so far", st.Verifications), nil
		}
		return "", nil
	})
	if st.LastDrift.Total() != 0 {
		t.Errorf("the LIST after the repair found drift again: %+v", st.LastDrift)
	}
	r, err := ag.client.Drift(ctx, "configmaps")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, findings(r)); diff != "" {
		t.Errorf("drift ledger after one more LIST (-want +got):\n%s", diff)
	}
	if diff, err := matchesList(ctx, ag.client, "configmaps", ri, "", "aggregated", "streamed"); err != nil || diff != "" {
		t.Errorf("after one more LIST: %v\n%s", err, diff)
	}
	// Counted once the LIST that found them has landed.
	for _, kind := range []string{api.MissedAdded, api.MissedModified, api.MissedDeleted} {
		if got := counterValue(t, ag.reg, "krm_drift_objects_total", map[string]string{"resource": "configmaps", "kind": kind}); got != 3 {
			t.Errorf("krm_drift_objects_total{kind=%q} = %v, want 3", kind, got)
		}
	}

	// (d) History records each miss the ledger names as a revision with
	// source list, at the LIST's version of the object; the events the
	// watch delivered are its own revisions.
	listRV := map[string]string{}
	for _, e := range r.Ledger {
		listRV[e.Name] = e.ListResourceVersion
	}
	wantHistory := map[string]string{}
	for _, name := range missAdd {
		wantHistory[name] = "ADDED@" + w.log.at(name, 0) + "/list"
	}
	for _, name := range missMod {
		wantHistory[name] = "ADDED@" + w.log.at(name, 0) + "/watch MODIFIED@" + w.log.at(name, 1) + "/list"
	}
	for _, name := range missDel {
		wantHistory[name] = "ADDED@" + w.log.at(name, 0) + "/watch DELETED@" + listRV[name] + "/list"
	}
	for _, name := range []string{"normal-1", "normal-3"} {
		h := "ADDED@" + w.log.at(name, 0) + "/watch MODIFIED@" + w.log.at(name, 1) + "/watch"
		if name == "normal-3" {
			h = "ADDED@" + w.log.at(name, 0) + "/watch DELETED/watch"
		}
		wantHistory[name] = h
	}
	gotHistory := map[string]string{}
	for name := range wantHistory {
		list, err := ag.client.Revisions(ctx, "configmaps", ns, name, "")
		if err != nil {
			t.Fatal(err)
		}
		var revs []string
		for _, rev := range list.Items {
			if rev.Event == "DELETED" && rev.Source == "watch" {
				// The deletion's resourceVersion is the watch's to tell.
				revs = append(revs, "DELETED/watch")
				continue
			}
			revs = append(revs, rev.Event+"@"+rev.ResourceVersion+"/"+rev.Source)
		}
		gotHistory[name] = strings.Join(revs, " ")
	}
	if diff := cmp.Diff(wantHistory, gotHistory); diff != "" {
		t.Errorf("history of the written configmaps (-want +got):\n%s", diff)
	}
}

// ownConfigMap reports whether the test wrote the configmap called name
// (the namespace also holds kube-root-ca.crt).
func ownConfigMap(name string) bool {
	return strings.HasPrefix(name, "normal-") || strings.HasPrefix(name, "miss-")
}

func findings(r *api.DriftReport) []driftFinding {
	out := []driftFinding{}
	for _, e := range r.Ledger {
		out = append(out, driftFinding{Kind: e.Kind, Name: e.Name, UID: e.UID,
			StreamedResourceVersion: e.StreamedResourceVersion, VerifiedResourceVersion: e.VerifiedResourceVersion})
	}
	sortFindings(out)
	return out
}

func sortFindings(f []driftFinding) {
	slices.SortFunc(f, func(a, b driftFinding) int { return strings.Compare(a.Name, b.Name) })
}

// TestLaggingWatchIsNotDrift delays every watch event by more than the 2 s
// a landed LIST used to wait for the watch, while objects are written and
// LISTs land: events in flight are not drift, however late they are.
// Judged by elapsed time, each LIST found the newest writes "missed".
func TestLaggingWatchIsNotDrift(t *testing.T) {
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	cfg, cs, ri := configMapClients(t, c, ns)
	proxy := watchproxy.New(t, cfg, nil)
	proxy.Lag(4 * time.Second)
	const interval = 2 * time.Second
	ag := startAgent(t, agent.Config{
		RESTConfig: proxy.RESTConfig(), Resources: []string{"configmaps"}, Namespace: ns, VerifyInterval: interval,
		HistoryRetention: time.Hour,
	})
	ctx := t.Context()
	eventually(t, 10*time.Second, "the first LIST", func(context.Context) (string, error) {
		if n := resourceStatus(t, ag.client, "configmaps").Verifications; n == 0 {
			return "no LIST yet", nil
		}
		return "", nil
	})
	w := newConfigMapWriter(cs, ns)
	// Write for five verify intervals: every LIST lands with writes the
	// lagging watch has not delivered yet.
	maxPending := 0
	for i := range 25 {
		name := fmt.Sprint("lag-", i)
		if err := w.create(ctx, name); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 && i > 0 {
			if err := w.remove(ctx, fmt.Sprint("lag-", i-1)); err != nil {
				t.Fatal(err)
			}
		}
		maxPending = max(maxPending, resourceStatus(t, ag.client, "configmaps").DriftPending)
		time.Sleep(interval / 5)
	}
	// Every write reaches the agent, four seconds late; nothing was missed.
	waitMatchesList(t, 30*time.Second, ag.client, "configmaps", ri, "", "aggregated", "streamed")
	st := resourceStatus(t, ag.client, "configmaps")
	t.Logf("%d LISTs landed; at most %d objects waited for the watch; %d still wait, %d unjudged", st.Verifications, maxPending, st.DriftPending, st.DriftUnjudged)
	if st.Verifications < 3 {
		t.Errorf("only %d LISTs landed during the writes; the test needs LISTs ahead of the watch", st.Verifications)
	}
	if maxPending == 0 {
		t.Errorf("no LIST ever waited for the watch: the proxy's lag did not put the watch behind")
	}
	if st.TotalDrift.Total() != 0 {
		r, _ := ag.client.Drift(ctx, "configmaps")
		t.Errorf("drift %+v from a watch that only lagged; ledger: %+v", st.TotalDrift, findings(r))
	}
	// Nor does history repair anything: once the watch has delivered
	// every write, each revision is the watch's.
	eventually(t, 30*time.Second, "history to hold every write", func(ctx context.Context) (string, error) {
		for i := range 25 {
			name := fmt.Sprint("lag-", i)
			list, err := ag.client.Revisions(ctx, "configmaps", ns, name, "")
			if err != nil {
				return "", err
			}
			if len(list.Items) == 0 {
				return "no history of " + name + " yet", nil
			}
			for _, rev := range list.Items {
				if rev.Source != "watch" {
					return "", fmt.Errorf("%s: revision %s %s has source %s, from a watch that only lagged", name, rev.ResourceVersion, rev.Event, rev.Source)
				}
			}
		}
		return "", nil
	})
}
