package agent_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/krm-project/krm/pkg/agent"
	"github.com/krm-project/krm/test/cluster/clustertest"
	"github.com/krm-project/krm/test/watchproxy"
)

// role returns the agent's leader election role and the leader it knows.
func (sa *storeAgent) role(ctx context.Context) (string, string, error) {
	l, err := sa.client.Resources(ctx)
	if err != nil {
		return "", "", err
	}
	return l.Role, l.Leader, nil
}

func waitRole(t *testing.T, sa *storeAgent, timeout time.Duration, want string) {
	t.Helper()
	eventually(t, timeout, "the agent to be "+want, func(ctx context.Context) (string, error) {
		role, leader, err := sa.role(ctx)
		if err != nil {
			return err.Error(), nil
		}
		if role != want {
			return fmt.Sprintf("role %q, leader %q", role, leader), nil
		}
		return "", nil
	})
}

// The Lease's timing in these tests: short, so failover is quick.
const (
	leaseDuration = 2 * time.Second
	renewDeadline = 1500 * time.Millisecond
)

// leaderReplica is one replica of the configmaps in ns, electing its leader
// through the Lease krm-<cluster> and sharing the Redis at redisURL.
func leaderReplica(t *testing.T, redisURL string, restCfg *rest.Config, ns, cluster, identity string) *storeAgent {
	t.Helper()
	st, _ := redisStore(t, redisURL, cluster)
	return completeStoreAgent(t, agent.Config{
		RESTConfig: restCfg, Resources: []string{"configmaps"}, Namespace: ns,
		VerifyInterval: time.Hour, ClusterName: cluster, Store: st,
		LeaderElection: &agent.LeaderElection{
			Namespace: ns, Name: "krm-" + cluster, Identity: identity,
			LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: 250 * time.Millisecond,
		},
	})
}

// TestRedisLeaderFailover runs two agents on one Redis with leader
// election: the leader watches and writes; the follower serves the same
// objects, following the leader's frames and events through Redis within
// about a second; when the leader dies (it keeps its Lease, as a killed
// process does), the follower takes over within the Lease's duration and
// serves new changes from its own watch.
func TestRedisLeaderFailover(t *testing.T) {
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	restCfg, cs, ri := configMapClients(t, c, ns)
	cluster := "t-" + rand.String(8)
	w := newConfigMapWriter(cs, ns)
	createConfigMaps(t, w, "cm-0", "cm-1")

	replica := func(identity string) *storeAgent { return leaderReplica(t, c.RedisURL, restCfg, ns, cluster, identity) }
	a := replica("a")
	a.start()
	waitRole(t, a, 30*time.Second, "leader")
	waitMatchesList(t, 30*time.Second, a.client, "configmaps", ri, "", "aggregated", "verified")

	b := replica("b")
	b.start()
	waitMatchesList(t, 30*time.Second, b.client, "configmaps", ri, "", "aggregated", "verified")
	eventually(t, 10*time.Second, "the second replica to follow a", func(ctx context.Context) (string, error) {
		if role, leader, err := b.role(ctx); err != nil || role != "follower" || leader != "a" {
			return fmt.Sprintf("it is %q following %q (%v)", role, leader, err), nil
		}
		return "", nil
	})
	if code, why := b.readyz(t); code != http.StatusOK || !strings.Contains(why, "following the leader a") {
		t.Errorf("the follower's /readyz: %d %q, want 200 saying it follows a", code, why)
	}

	// Changes reach the follower through the leader's event stream.
	changed := time.Now()
	createConfigMaps(t, w, "cm-2")
	if err := w.update(t.Context(), "cm-0"); err != nil {
		t.Fatal(err)
	}
	if err := w.remove(t.Context(), "cm-1"); err != nil {
		t.Fatal(err)
	}
	waitMatchesList(t, 5*time.Second, b.client, "configmaps", ri, "", "aggregated")
	t.Logf("the follower served three changes %s after they were made", time.Since(changed).Round(time.Millisecond))
	if st := resourceStatus(t, b.client, "configmaps"); st.Stale || !st.StreamConnected {
		t.Errorf("the follower's status: stale %v, stream connected %v; want fresh and connected", st.Stale, st.StreamConnected)
	}

	// The leader dies without giving up its Lease.
	a.stop()
	died := time.Now()
	waitRole(t, b, leaseDuration+10*time.Second, "leader")
	t.Logf("the follower took over %s after the leader died (lease %s)", time.Since(died).Round(time.Millisecond), leaseDuration)
	if took := time.Since(died); took > leaseDuration+3*time.Second {
		t.Errorf("the follower took over %s after the leader died, lease %s", took, leaseDuration)
	}
	createConfigMaps(t, w, "cm-3")
	waitMatchesList(t, 30*time.Second, b.client, "configmaps", ri, "", "aggregated")
	if st := resourceStatus(t, b.client, "configmaps"); st.Verifications < 1 || !st.StreamConnected {
		t.Errorf("the new leader's status: %d verifications, stream connected %v; want its own LIST and watch", st.Verifications, st.StreamConnected)
	}
	// It writes: the event of the object created after it took over is in
	// Redis.
	st, _ := redisStore(t, c.RedisURL, cluster)
	eventually(t, 10*time.Second, "the new leader's event of cm-3 in Redis", func(ctx context.Context) (string, error) {
		evs, err := st.Events(ctx, cluster, "configmaps", 0, 1000)
		if err != nil {
			return "", err
		}
		for _, ev := range evs {
			if ev.Row.Name == "cm-3" {
				return "", nil
			}
		}
		return fmt.Sprintf("%d events, none of cm-3", len(evs)), nil
	})
}

// TestLeaderLosesLease: another holder takes the Lease from a running
// leader (as after a network partition the leader has not noticed). The
// leader cannot renew, stops leading within its renew deadline and exits
// with an error that says why, so that a restart follows the new leader
// instead of two replicas writing the store.
func TestLeaderLosesLease(t *testing.T) {
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	restCfg, cs, _ := configMapClients(t, c, ns)
	cluster := "t-" + rand.String(8)
	lease := "krm-" + cluster
	a := leaderReplica(t, c.RedisURL, restCfg, ns, cluster, "a")
	a.start()
	waitRole(t, a, 30*time.Second, "leader")

	l, err := cs.CoordinationV1().Leases(ns).Get(t.Context(), lease, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.NewMicroTime(time.Now())
	l.Spec.HolderIdentity = ptr.To("intruder")
	l.Spec.LeaseDurationSeconds = ptr.To[int32](3600)
	l.Spec.AcquireTime, l.Spec.RenewTime = &now, &now
	if _, err := cs.CoordinationV1().Leases(ns).Update(t.Context(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("taking the Lease: %v", err)
	}
	taken := time.Now()

	select {
	case <-a.exited:
	case <-time.After(renewDeadline + 15*time.Second):
		t.Fatalf("the leader still runs %s after losing its Lease", time.Since(taken).Round(time.Millisecond))
	}
	t.Logf("the leader exited %s after losing its Lease (renew deadline %s)", time.Since(taken).Round(time.Millisecond), renewDeadline)
	if a.runErr == nil || !strings.Contains(a.runErr.Error(), "lost the leader Lease "+ns+"/"+lease) {
		t.Fatalf("the leader's Start returned %v, want it to say it lost the Lease %s/%s", a.runErr, ns, lease)
	}
	a.runErr = nil // expected
	// It let go: the Lease still names the intruder.
	if l, err = cs.CoordinationV1().Leases(ns).Get(t.Context(), lease, metav1.GetOptions{}); err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != "intruder" {
		t.Errorf("after the leader exited the Lease is %+v (%v), want it held by the intruder", l.Spec, err)
	}
}

// TestFollowerReportsTheLeadersStream: a follower's views are as fresh as
// the leader's watch, so it reports the leader's stream state, not its own
// reads of Redis: while the leader's watch is down, the follower says its
// stream is disconnected, and connected again once the leader's is.
func TestFollowerReportsTheLeadersStream(t *testing.T) {
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	restCfg, cs, ri := configMapClients(t, c, ns)
	cluster := "t-" + rand.String(8)
	createConfigMaps(t, newConfigMapWriter(cs, ns), "cm-0")

	proxy := watchproxy.New(t, restCfg, nil)
	a := leaderReplica(t, c.RedisURL, proxy.RESTConfig(), ns, cluster, "a")
	a.start()
	waitRole(t, a, 30*time.Second, "leader")
	b := leaderReplica(t, c.RedisURL, restCfg, ns, cluster, "b")
	b.start()
	waitMatchesList(t, 30*time.Second, b.client, "configmaps", ri, "", "aggregated")
	waitRole(t, b, 10*time.Second, "follower")

	stream := func(sa *storeAgent, want bool) {
		t.Helper()
		eventually(t, 15*time.Second, fmt.Sprintf("the stream to be connected=%v", want), func(ctx context.Context) (string, error) {
			if st := resourceStatus(t, sa.client, "configmaps"); st.StreamConnected != want {
				return fmt.Sprintf("connected=%v", st.StreamConnected), nil
			}
			return "", nil
		})
	}
	stream(b, true)
	// The leader's watch goes down and cannot come back; its Lease renews.
	proxy.Hold()
	proxy.Cut()
	stream(a, false)
	stream(b, false)
	if role, _, err := b.role(t.Context()); err != nil || role != "follower" {
		t.Fatalf("b is %q (%v) while the leader's watch is down, want still a follower", role, err)
	}
	proxy.Release()
	stream(a, true)
	stream(b, true)
}
