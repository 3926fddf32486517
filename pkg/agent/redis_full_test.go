package agent_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/krm-project/krm/pkg/agent"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// TestRedisFullAgentServesFromMemory: a Redis at its maxmemory with nothing
// left to evict refuses writes with OOM. The agent says so where the
// operator looks (status with Redis's message, /readyz, krm_store_healthy)
// and serves from memory, changes included.
func TestRedisFullAgentServesFromMemory(t *testing.T) {
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	restCfg, cs, ri := configMapClients(t, c, ns)
	// 1 byte: every write is refused, PING answers.
	srv := clustertest.StartRedis(t, "--maxmemory", "1", "--maxmemory-policy", "volatile-ttl")
	cluster := "t-" + rand.String(8)
	st, _ := redisStore(t, srv.URL(), cluster)
	w := newConfigMapWriter(cs, ns)
	createConfigMaps(t, w, "cm-0")
	a := completeStoreAgent(t, agent.Config{RESTConfig: restCfg, Resources: []string{"configmaps"}, Namespace: ns,
		VerifyInterval: time.Hour, ClusterName: cluster, Store: st})
	a.start()
	eventually(t, 30*time.Second, "the agent to say its full store is degraded", func(ctx context.Context) (string, error) {
		if s := a.storeStatus(t); s.Healthy || !strings.Contains(s.Message, "OOM") {
			return fmt.Sprintf("store status %+v", s), nil
		}
		return "", nil
	})
	if got := gaugeValue(t, a.reg, "krm_store_healthy"); got != 0 {
		t.Errorf("krm_store_healthy = %v while Redis is full, want 0", got)
	}
	if code, why := a.readyz(t); code != http.StatusOK || !strings.Contains(why, "store redis degraded") || !strings.Contains(why, "OOM") {
		t.Errorf("/readyz while Redis is full: %d %q, want 200 saying the store is degraded and why", code, why)
	}
	createConfigMaps(t, w, "cm-1")
	waitMatchesList(t, 30*time.Second, a.client, "configmaps", ri, "", "aggregated")
}
