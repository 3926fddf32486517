package agent_test

import (
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/krm-project/krm/pkg/store"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// TestFollowerAppliesEventsOnlyOverFrames: a follower that finds the
// leader's event stream but no frame to apply it to (none written yet, or
// the frames gone) must not serve the stream's events as if they were the
// objects. Found by the fault suite (test/chaos, stream-ahead): a replica
// following a stream ahead of the cluster (an etcd restore) took its ghost
// object, at a resourceVersion the cluster had not reached, and kept
// serving it, at that resourceVersion, after it began to lead and LISTed.
func TestFollowerAppliesEventsOnlyOverFrames(t *testing.T) {
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	restCfg, cs, ri := configMapClients(t, c, ns)
	cluster := "t-" + rand.String(8)
	st, _ := redisStore(t, c.RedisURL, cluster)
	createConfigMaps(t, newConfigMapWriter(cs, ns), "cm-0")
	ghost := &store.Row{UID: "ghost", Namespace: ns, Name: "ghost", ResourceVersion: 1 << 40, Source: store.Streamed, Object: []byte(`{}`)}
	if _, err := st.AppendEvents(t.Context(), []store.Event{{Cluster: cluster, Resource: "configmaps", Type: "ADDED", Row: ghost}}); err != nil {
		t.Fatal(err)
	}
	// Another replica holds the Lease for a moment, so this one follows
	// first, then leads.
	now := metav1.NewMicroTime(time.Now())
	holder, seconds := "a-replica-that-died", int32(2)
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "krm-" + cluster, Namespace: ns},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &seconds, AcquireTime: &now, RenewTime: &now}}
	if _, err := cs.CoordinationV1().Leases(ns).Create(t.Context(), lease, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	a := leaderReplica(t, c.RedisURL, restCfg, ns, cluster, "replica-0")
	a.start()
	waitRole(t, a, 30*time.Second, "leader")
	waitMatchesList(t, 30*time.Second, a.client, "configmaps", ri, "", "aggregated", "verified")
}
