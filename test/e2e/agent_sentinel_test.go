package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/krm-project/krm/test/cluster/clustertest"
)

// TestAgentSentinelPassword runs the agent binary against Sentinels that
// require a password of their own: with --redis-sentinel-password it finds
// the master and writes its frames there; with a wrong one its store is
// degraded and says why, and it keeps serving from memory.
func TestAgentSentinelPassword(t *testing.T) {
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	const password = "sentinel-s3cret"
	rs := clustertest.StartRedisSentinel(t, "requirepass "+password)
	bin := buildAgent(t)
	args := func(cluster, sentinelPassword string) []string {
		return []string{"--kubeconfig", c.Kubeconfig, "--namespace", ns, "--resources", "pods", "--cluster-name", cluster,
			"--store", "redis", "--redis-addrs", rs.Sentinel.Addr, "--redis-sentinel-master", rs.MasterName,
			"--redis-sentinel-password", sentinelPassword}
	}

	// The agent keys its frames by the cluster's identity, kube-system's
	// UID, whatever --cluster-name says.
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	kubeSystem, err := cs.CoreV1().Namespaces().Get(t.Context(), "kube-system", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pattern := "krm:{" + string(kubeSystem.UID) + "/*"
	good := startAgent(t, bin, args("good", password)...)
	good.waitReady(t, 60*time.Second)
	master := redis.NewClient(&redis.Options{Addr: rs.Master.Addr})
	defer master.Close()
	waitFor(t, 30*time.Second, "the agent's frames in the master", func() error {
		keys, err := master.Keys(t.Context(), pattern).Result()
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return fmt.Errorf("no keys %s in the master", pattern)
		}
		return storeHealth(t.Context(), good, true, "")
	})

	const wrong = "not-the-sentinel-password-42"
	bad := startAgent(t, bin, args("bad", wrong)...)
	bad.waitReady(t, 60*time.Second)
	waitFor(t, 30*time.Second, "the wrongly configured agent to report its store", func() error {
		return storeHealth(t.Context(), bad, false, "WRONGPASS")
	})
	if strings.Contains(bad.log.String(), wrong) {
		t.Errorf("the agent logged the Sentinel password:\n%s", bad.log.String())
	}
}

// storeHealth checks the agent's store status: healthy or not, with a
// message containing want.
func storeHealth(ctx context.Context, a *agentProcess, healthy bool, want string) error {
	list, err := a.Client.Status(ctx)
	if err != nil {
		return err
	}
	st := list.Agent.Store
	if st.Kind != "redis" || st.Healthy != healthy || !strings.Contains(st.Message, want) {
		return fmt.Errorf("store %+v, want redis, healthy %t, a message with %q", st, healthy, want)
	}
	return nil
}
