package history

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/krm-project/krm/test/cluster/clustertest"
)

// TestRedisSurvivesReload writes a history to a real Redis and loads it
// back: Records, heads and state round-trip through their encoding.
func TestRedisSurvivesReload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	srv := clustertest.StartRedis(t)
	opts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	p := NewRedis(client, "test")
	// Stream IDs are Redis' clock: the log's must be behind it for the
	// time trim to keep what it should.
	checkSurvives(t, p, time.Now().Add(-time.Hour).Truncate(time.Second))
	n, err := client.XLen(t.Context(), StreamKey("test", "deployments.apps")).Result()
	if err != nil || n == 0 {
		t.Errorf("the history stream holds %d entries (%v)", n, err)
	}
}
