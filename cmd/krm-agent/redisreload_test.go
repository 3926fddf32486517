package main

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/krm-project/krm/test/cluster/clustertest"
)

// TestRedisClusterFailoverIsFollowed: once a Redis Cluster master dies and
// its replica takes over, the agent's client must send the slot's commands
// to the new master at once, not to the dead one until its periodic
// reload of the cluster's layout, 60 s later. Found by the fault suite
// (test/chaos, redis-cluster-failover): an HA follower kept reading the
// dead master and served a view minutes old.
func TestRedisClusterFailoverIsFollowed(t *testing.T) {
	if testing.Short() {
		t.Skip("runs six redis-servers; skipped under -short")
	}
	rc := clustertest.StartRedisClusterWithReplicas(t)
	client := newRedisClient(&redis.UniversalOptions{Addrs: rc.Addrs()})
	defer client.Close()
	ctx := t.Context()
	const key = "krm:{failover}:frame"
	if err := client.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	cc := client.(*redis.ClusterClient)
	master, err := cc.MasterForKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	// The replica has the key before its master dies.
	for i := 0; ; i++ {
		n, err := master.Do(ctx, "WAIT", 1, 1000).Int()
		if err == nil && n >= 1 {
			break
		}
		if i == 20 {
			t.Fatalf("the replica of %s has not acknowledged the write: %d, %v", master.Options().Addr, n, err)
		}
	}
	addr := master.Options().Addr
	for _, n := range rc.Nodes {
		if n.Addr == addr {
			n.Kill()
		}
	}
	rc.WaitOK(t, time.Minute)
	// The first command after the failover may still go to the dead
	// master; the ones after must not.
	_ = client.Get(ctx, key).Err()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, err := client.Get(ctx, key).Result()
		if err == nil && v == "v" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("20s after the failover, GET %s still fails: %v (the client still sends it to the dead master %s)", key, err, addr)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
