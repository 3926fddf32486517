package agent_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/krm-project/krm/pkg/agent"
	"github.com/krm-project/krm/test/cluster/clustertest"
	"github.com/krm-project/krm/test/watchproxy"
)

// TestWatchCutResumes cuts the agent's watch again and again while objects
// churn. The agent LISTs only at start, so it ends up equal to
// kube-apiserver only if each watch resumes exactly where the last one
// stopped.
func TestWatchCutResumes(t *testing.T) {
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	cfg, _, ri := configMapClients(t, c, ns)
	proxy := watchproxy.New(t, cfg, nil)
	ag := startAgent(t, agent.Config{
		RESTConfig: proxy.RESTConfig(), Resources: []string{"configmaps"}, Namespace: ns, VerifyInterval: time.Hour,
	})

	const objects, cuts = 300, 6
	var done atomic.Int64
	churned := make(chan error, 1)
	go func() {
		churned <- churn(t.Context(), t, ri, configMaps, churnOptions{prefix: "cut-", objects: objects, workers: 4, done: &done})
	}()
	// Cut once the agent has watched again and the churn has moved on,
	// spread over the first half of the churn.
	cut := 0
	for cut < cuts {
		next := int64(objects/2) * int64(cut+1) / cuts
		eventually(t, 30*time.Second, "the agent to watch again while the churn goes on", func(context.Context) (string, error) {
			if n := proxy.Established(); n == 0 || done.Load() < next {
				return fmt.Sprintf("%d watches open, %d requests made", n, done.Load()), nil
			}
			return "", nil
		})
		cut += proxy.Cut()
	}
	if err := <-churned; err != nil {
		t.Fatal(err)
	}
	t.Logf("cut the watch %d times; the churn made %d requests", cut, done.Load())

	waitMatchesList(t, 30*time.Second, ag.client, "configmaps", ri, "", "aggregated", "streamed")
	restarts := counterValue(t, ag.reg, "krm_watch_restarts_total", map[string]string{"resource": "configmaps"})
	if restarts < float64(cut) {
		t.Errorf(`krm_watch_restarts_total{resource="configmaps"} = %v after %d cuts`, restarts, cut)
	}
	for _, reason := range []string{"closed", "error", "gone"} {
		t.Logf("watch restarts, %s: %v", reason, counterValue(t, ag.reg, "krm_watch_restarts_total", map[string]string{"resource": "configmaps", "reason": reason}))
	}
	st := resourceStatus(t, ag.client, "configmaps")
	if st.Events == 0 {
		t.Errorf("status counts no watch events: %+v", st)
	}
	if gone := counterValue(t, ag.reg, "krm_watch_restarts_total", map[string]string{"resource": "configmaps", "reason": "gone"}); gone == 0 && st.Verifications != 1 {
		t.Errorf("status counts %d LISTs, want only the first: the resumed watches must have kept the agent right", st.Verifications)
	}
}
