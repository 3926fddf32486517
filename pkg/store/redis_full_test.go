package store_test

import (
	crand "crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/krm-project/krm/pkg/store"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// TestRedisFullNeverEvictsAPublishedFrame is the manifests' eviction policy
// (volatile-ttl, read from manifests/base/redis.yaml) at its limit. Only keys with a TTL may be evicted: replaced
// generations (2×Grace) and unpublished ones (PendingTTL). Published
// generations, heads and event streams have none. So when Redis fills,
// writes fail with OOM, which the agent reports as a degraded store, and
// every frame published before still reads back whole.
func TestRedisFullNeverEvictsAPublishedFrame(t *testing.T) {
	srv := clustertest.StartRedis(t, "--maxmemory", "8mb", "--maxmemory-policy", manifestPolicy(t))
	opts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opts)
	defer client.Close()
	s := store.NewRedis(client, store.RedisOptions{})
	ctx := t.Context()
	const cluster = "full"
	var published []string
	var full error
	for i := range 200 {
		f := frame(cluster, store.Verified, 200, "m")
		f.Header.Resource = fmt.Sprintf("r%03d", i)
		for _, r := range f.Rows {
			// Random bytes, which zstd cannot shrink.
			r.Object = make([]byte, 1000)
			_, _ = crand.Read(r.Object)
		}
		// Each resource twice: the first generation is replaced, gets a
		// TTL and may be evicted.
		err := s.PutFrame(ctx, f)
		if err == nil {
			err = s.PutFrame(ctx, f)
		}
		if err != nil {
			full = err
			break
		}
		published = append(published, f.Header.Resource)
	}
	if full == nil {
		t.Fatal("8mb of Redis took 200 frames of 200 KiB: maxmemory is not in force")
	}
	if !strings.Contains(full.Error(), "OOM") {
		t.Errorf("a write to a full Redis failed with %v, want Redis's OOM error", full)
	}
	t.Logf("full after %d resources: %v", len(published), full)
	if len(published) == 0 {
		t.Fatal("no frame was published before Redis was full")
	}
	for _, res := range published {
		f, err := s.GetFrame(ctx, cluster, res, store.Verified)
		if err != nil {
			t.Errorf("frame %s, published before Redis filled: %v", res, err)
			continue
		}
		if len(f.Rows) != 200 {
			t.Errorf("frame %s reads back %d rows, want 200", res, len(f.Rows))
		}
	}
	// Events fill what is left, then fail alike; the published frames
	// stay.
	var evErr error
	for i := range 10000 {
		ev := events(cluster, "ADDED", uint64(i+1))
		ev[0].Row.Object = []byte(`{"pad":"` + strings.Repeat("x", 1000) + `"}`)
		if _, evErr = s.AppendEvents(ctx, ev); evErr != nil {
			break
		}
	}
	if evErr == nil || !strings.Contains(evErr.Error(), "OOM") {
		t.Errorf("appending events to a full Redis: %v, want Redis's OOM error", evErr)
	}
	for _, res := range published {
		if _, err := s.GetFrame(ctx, cluster, res, store.Verified); err != nil {
			t.Errorf("frame %s after the events filled Redis: %v", res, err)
		}
	}
}

// manifestPolicy is the --maxmemory-policy the manifests give Redis.
func manifestPolicy(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "manifests", "base", "redis.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) == "- --maxmemory-policy" && i+1 < len(lines) {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(lines[i+1]), "- "))
		}
	}
	t.Fatal("manifests/base/redis.yaml gives Redis no --maxmemory-policy: a full Redis would refuse writes or evict anything")
	return ""
}
