package agent_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/krm-project/krm/pkg/agent"
	"github.com/krm-project/krm/pkg/store"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// TestRedisStreamAheadOfTheClusterIsReset is an etcd restore as the event
// stream sees it: the stream's newest ID is a resourceVersion the cluster
// has not reached. Redis refuses every XADD of an older ID, so before the
// fix every new event was dropped as out of order, forever. The agent
// notices once its LIST tells the cluster's resourceVersion, drops the
// stream with a log line and appends the new events again.
func TestRedisStreamAheadOfTheClusterIsReset(t *testing.T) {
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	restCfg, cs, ri := configMapClients(t, c, ns)
	cluster := "t-" + rand.String(8)
	st, _ := redisStore(t, c.RedisURL, cluster)
	w := newConfigMapWriter(cs, ns)
	createConfigMaps(t, w, "cm-0")
	const future = 1 << 40
	ahead := &store.Row{UID: "u", Namespace: ns, Name: "from-before-the-restore", ResourceVersion: future, Source: store.Streamed, Object: []byte(`{}`)}
	if _, err := st.AppendEvents(t.Context(), []store.Event{{Cluster: cluster, Resource: "configmaps", Type: "ADDED", Row: ahead}}); err != nil {
		t.Fatal(err)
	}

	a := completeStoreAgent(t, agent.Config{RESTConfig: restCfg, Resources: []string{"configmaps"}, Namespace: ns,
		VerifyInterval: time.Hour, ClusterName: cluster, Store: st})
	a.start()
	waitMatchesList(t, 30*time.Second, a.client, "configmaps", ri, "", "aggregated", "verified")
	createConfigMaps(t, w, "cm-1")
	eventually(t, 10*time.Second, "cm-1's event in the stream", func(ctx context.Context) (string, error) {
		evs, err := st.Events(ctx, cluster, "configmaps", 0, 100)
		if err != nil {
			return "", err
		}
		var names []string
		for _, ev := range evs {
			if ev.Row.Name == "cm-1" {
				return "", nil
			}
			names = append(names, fmt.Sprintf("%s@%d", ev.Row.Name, ev.Row.ResourceVersion))
		}
		return fmt.Sprintf("stream holds %v", names), nil
	})
	if top, _, err := st.EventsTop(t.Context(), cluster, "configmaps"); err != nil || top >= future {
		t.Errorf("stream's newest resourceVersion is %d (%v); the one from before the restore is still there", top, err)
	}
	if logs := a.logs.String(); !strings.Contains(logs, "dropped the event stream") {
		t.Errorf("the agent's log does not say it dropped the stream:\n%s", logs)
	}
	waitMatchesList(t, 30*time.Second, a.client, "configmaps", ri, "", "aggregated")
}
