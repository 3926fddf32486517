package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/krm-project/krm/pkg/agent"
	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/cluster/clustertest"
	"github.com/krm-project/krm/test/watchproxy"
)

// compact compacts etcd's history up to revision rev, so a watch from an
// older resourceVersion gets 410 Gone. A compaction past rev already done
// (by another test) is as good.
func compact(ctx context.Context, etcdURL string, rev uint64) error {
	body := fmt.Sprintf(`{"revision":"%d","physical":true}`, rev)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, etcdURL+"/v3/kv/compaction", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("compacting etcd at revision %d: %w", rev, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusOK || bytes.Contains(msg, []byte("required revision has been compacted")) {
		return nil
	}
	return fmt.Errorf("compacting etcd at revision %d: %s: %s", rev, resp.Status, msg)
}

// TestRecoversFrom410AfterCompaction keeps the agent's watch away while
// configmaps change and etcd compacts its history past them, then lets it
// resume: the watch gets 410 Gone, and the agent must LIST again and watch
// on from there. The verify interval is an hour, so nothing else can repair
// it.
func TestRecoversFrom410AfterCompaction(t *testing.T) {
	for _, failingLists := range []int{0, 2} {
		t.Run(fmt.Sprintf("failing-relists=%d", failingLists), func(t *testing.T) {
			testRecoversFrom410(t, failingLists)
		})
	}
}

// testRecoversFrom410 runs the scenario; the first failingLists LISTs after
// the 410 fail, and the agent must retry them soon, not an interval later.
func testRecoversFrom410(t *testing.T, failingLists int) {
	c := clustertest.Get(t)
	if cluster.WatchCacheless != configMaps.resource {
		t.Fatalf("the test needs a resource served without watch cache; the cluster has %s", cluster.WatchCacheless)
	}
	ns := clustertest.Namespace(t, c)
	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg, cs, ri := configMapClients(t, c, ns)
	proxy := watchproxy.New(t, cfg, nil)
	ag := startAgent(t, agent.Config{
		RESTConfig: proxy.RESTConfig(), Resources: []string{"configmaps"}, Namespace: ns, VerifyInterval: time.Hour,
	})
	ctx := t.Context()
	w := newConfigMapWriter(cs, ns)
	for i := range 10 {
		if err := w.create(ctx, fmt.Sprintf("before-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitMatchesList(t, 30*time.Second, ag.client, "configmaps", ri, "", "aggregated")

	// Away: the watch is cut and the agent's next one is held.
	proxy.Hold()
	proxy.Cut()
	eventually(t, 30*time.Second, "the agent to try to watch again", func(context.Context) (string, error) {
		if n := proxy.Held(); n == 0 {
			return "no watch held", nil
		}
		return "", nil
	})
	for i := range 10 {
		if err := w.create(ctx, fmt.Sprintf("during-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if err := w.update(ctx, fmt.Sprintf("before-%d", i)); err != nil {
			t.Fatal(err)
		}
		if err := w.remove(ctx, fmt.Sprintf("before-%d", 5+i)); err != nil {
			t.Fatal(err)
		}
		if err := w.remove(ctx, fmt.Sprintf("during-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.update(ctx, "during-9"); err != nil {
		t.Fatal(err)
	}
	if err := compact(ctx, c.EtcdURL(), w.log.last); err != nil {
		t.Fatal(err)
	}
	before := resourceStatus(t, ag.client, "configmaps").Verifications
	proxy.FailLists(failingLists)
	proxy.Release()

	waitMatchesList(t, 30*time.Second, ag.client, "configmaps", ri, "", "aggregated", "streamed")
	if gone := counterValue(t, ag.reg, "krm_watch_restarts_total", map[string]string{"resource": "configmaps", "reason": "gone"}); gone < 1 {
		t.Errorf(`krm_watch_restarts_total{resource="configmaps",reason="gone"} = %v, want at least 1`, gone)
	}
	st := resourceStatus(t, ag.client, "configmaps")
	if st.Verifications <= before {
		t.Errorf("the agent did not LIST again after the 410: %d LISTs, as before", st.Verifications)
	}
	t.Logf("watch requests, by the resourceVersion they asked for: %v", proxy.Watches())

	// And it watches again: a change now reaches it without a LIST.
	if err := w.create(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	waitMatchesList(t, 30*time.Second, ag.client, "configmaps", ri, "", "aggregated", "streamed")
	if now := resourceStatus(t, ag.client, "configmaps"); now.Verifications != st.Verifications || now.Events <= st.Events {
		t.Errorf("after the recovery, a new configmap reached the agent with %d more LISTs and %d more events; want it streamed",
			now.Verifications-st.Verifications, now.Events-st.Events)
	}
}
