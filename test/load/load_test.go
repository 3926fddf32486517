package load

import (
	"testing"
	"time"

	"github.com/krm-project/krm/test/benchenv"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

// TestLoad is the load suite's short form: 1,000 pods changed 100 times a
// second, 50 readers and 20 watchers, 5 of which never read, for 40 s. It
// asserts the bounds, not the timings (those are in the report `make load`
// prints): the agent drops and closes every watcher that never reads by
// its write deadline, serves no 5xx, answers every read completely, and
// its goroutines return to the baseline once the clients leave.
func TestLoad(t *testing.T) {
	s := clustertest.Get(t)
	bin, err := benchenv.BuildAgent(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(t.Context(), s, Config{
		Pods: 1000, Workers: 16,
		Readers: 50, Think: 500 * time.Millisecond,
		Watchers: 20, Stalled: 5,
		Churn: 100, Duration: 40 * time.Second,
		// Sooner to the first LIST that has every pod.
		VerifyInterval: 10 * time.Second,
		Window:         5 * time.Second, Settle: 5 * time.Second,
		// The agent's write deadline is 30 s; the churn fills what the
		// kernel buffers for a watch that starts from now in about 15 s.
		DropWait: 2 * time.Minute,
		AgentBin: bin,
		Progress: func(s string) { t.Log(s) },
	})
	if err != nil {
		t.Fatal(err)
	}
	report := res.Markdown("go test ./test/load -run TestLoad", "")
	if !res.StalledDropped() {
		t.Errorf("the agent dropped %d and closed %d of the %d watchers that never read, want all", res.Stalled.DroppedByAgent, res.Stalled.ClosedByAgent, res.Stalled.Watchers)
	}
	if res.Read5xx() != 0 || res.Served5xx != 0 {
		t.Errorf("5xx answers: %d to the readers, %v counted by the agent", res.Read5xx(), res.Served5xx)
	}
	for _, r := range res.Reads {
		if r.Errors != 0 {
			t.Errorf("%s: %d of %d reads failed or were incomplete; first: %s", r.Kind, r.Errors, r.Errors+r.Reads, r.FirstError)
		}
		if r.Reads == 0 {
			t.Errorf("%s: no read completed", r.Kind)
		}
	}
	if res.Watches.Errors != 0 || res.Watches.Events == 0 {
		t.Errorf("reading watchers: %d errors, %d events; first error: %s", res.Watches.Errors, res.Watches.Events, res.Watches.FirstError)
	}
	if !res.GoroutinesBack() {
		t.Errorf("the agent's goroutines: %v after the clients left, baseline %v, want at most %d more", res.After.Goroutines, res.Before.Goroutines, GoroutineTolerance)
	}
	if res.WatchesOpenAfter != 0 {
		t.Errorf("krm_watches = %v once every watcher left, want 0", res.WatchesOpenAfter)
	}
	if t.Failed() {
		t.Log("\n" + report)
	}
}
