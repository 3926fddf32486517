package agent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/krm-project/krm/pkg/agent"
	"github.com/krm-project/krm/pkg/store"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// TestRedisWarmRefusesAnotherClustersFrames: frames stored for a cluster
// whose kube-system UID is not this one's (a rebuilt cluster that kept the
// name) are refused with a log line saying why; the agent starts cold,
// never serves them, and its first LIST replaces them with frames that
// record this cluster's UID.
func TestRedisWarmRefusesAnotherClustersFrames(t *testing.T) {
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	restCfg, cs, ri := configMapClients(t, c, ns)
	uid, err := agent.ClusterUID(t.Context(), restCfg)
	if err != nil {
		t.Fatal(err)
	}
	kubeSystem, err := cs.CoreV1().Namespaces().Get(t.Context(), "kube-system", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if uid != string(kubeSystem.UID) {
		t.Fatalf("ClusterUID = %q, want kube-system's UID %q", uid, kubeSystem.UID)
	}
	// A key cluster of this test's own, under which redisStore cleans up:
	// the real UID is shared by every test of this cluster.
	cluster := "t-" + rand.String(8)
	st, _ := redisStore(t, c.RedisURL, cluster)
	createConfigMaps(t, newConfigMapWriter(cs, ns), "cm-0")
	// Frames under this agent's keys that record no UID: what an agent
	// that could not read kube-system wrote under a name equal to them.
	old := &store.Frame{Header: store.Header{Cluster: cluster, Resource: "configmaps", Source: store.Verified, ResourceVersion: 1}}
	old.Rows = []*store.Row{{UID: "u", Namespace: ns, Name: "ghost", ResourceVersion: 1, Object: []byte(`{}`)}}
	if err := st.PutFrame(t.Context(), old); err != nil {
		t.Fatal(err)
	}

	a := completeStoreAgent(t, agent.Config{RESTConfig: restCfg, Resources: []string{"configmaps"}, Namespace: ns,
		VerifyInterval: time.Hour, ClusterName: "in-cluster", ClusterUID: cluster, Store: st})
	a.start()
	waitMatchesList(t, 30*time.Second, a.client, "configmaps", ri, "", "aggregated", "verified")
	logs := a.logs.String()
	if !strings.Contains(logs, "refusing a stored frame written for another cluster") || !strings.Contains(logs, `kube-system UID \"\"`) {
		t.Errorf("the agent's log does not say it refused the other cluster's frames:\n%s", logs)
	}
	if strings.Contains(logs, "serving stored frames") {
		t.Errorf("the agent served the other cluster's frames:\n%s", logs)
	}
	eventually(t, 10*time.Second, "this cluster's frames in Redis", func(ctx context.Context) (string, error) {
		f, err := st.GetFrame(ctx, cluster, "configmaps", store.Verified)
		if err != nil {
			return err.Error(), nil
		}
		if f.Header.ClusterUID != cluster {
			return "stored frame's ClusterUID is " + f.Header.ClusterUID, nil
		}
		served, _, err := servedVersions(ctx, a.client, "configmaps", "verified")
		if err != nil {
			return "", err
		}
		return cmp.Diff(served, frameVersions(f)), nil
	})
}
