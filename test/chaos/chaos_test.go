package chaos_test

import (
	"os"
	"testing"

	"github.com/krm-project/krm/test/chaos"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

// TestShortFaults runs the short form of the fault suite on the shared
// local cluster: the faults that touch only the agent, its proxy and its
// own Redis, each briefly. Every one must converge to kube-apiserver with
// nothing lost; make chaos runs them all at length on a cluster of its own.
func TestShortFaults(t *testing.T) {
	c := clustertest.Get(t)
	o := chaos.Short()
	var err error
	if o.AgentBin, err = chaos.BuildAgent(t.Context(), t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if testing.Verbose() {
		o.Log = os.Stderr
	}
	env, err := chaos.NewEnv(c, o, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var results []chaos.Result
	for _, sc := range chaos.Scenarios() {
		if !sc.Short || sc.Process {
			continue
		}
		t.Run(sc.Name, func(t *testing.T) {
			res := env.RunScenario(t.Context(), sc)
			results = append(results, res)
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if !res.Converged {
				t.Errorf("%s: the agents did not converge to kube-apiserver: %v", sc.Name, res.Notes)
			}
			if res.Lost != 0 || res.Stale != 0 {
				t.Errorf("%s: %d objects lost, %d stale once the churn stopped: %v", sc.Name, res.Lost, res.Stale, res.Notes)
			}
		})
	}
	t.Log("\n" + chaos.Markdown(results, o))
}
