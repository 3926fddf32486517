package store_test

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/krm-project/krm/pkg/store"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// The Redis tests run against the local cluster's Redis; under -short they
// skip and only the unit tests run.
func TestMain(m *testing.M) { clustertest.Main(m) }

// testRedis returns a client of the local cluster's Redis and a cluster name
// no other test uses; the keys under it are deleted when the test ends.
func testRedis(t *testing.T) (redis.UniversalClient, string) {
	t.Helper()
	c := clustertest.Get(t)
	opts, err := redis.ParseURL(c.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opts)
	cluster := "t-" + rand.String(10)
	t.Cleanup(func() {
		deleteKeys(t, client, "krm:{"+cluster+"/*")
		client.Close()
	})
	return client, cluster
}

func deleteKeys(t *testing.T, client redis.UniversalClient, pattern string) {
	ctx := context.Background()
	iter := client.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		if err := client.Del(ctx, iter.Val()).Err(); err != nil {
			t.Errorf("deleting %s: %v", iter.Val(), err)
		}
	}
	if err := iter.Err(); err != nil {
		t.Errorf("scanning %s: %v", pattern, err)
	}
}

// frame builds a frame of n rows; every row carries marker in its labels,
// so a reader can tell which write a row came from.
func frame(cluster string, source store.Source, n int, marker string) *store.Frame {
	f := &store.Frame{Header: store.Header{
		Cluster: cluster, Resource: "pods", Source: source, ResourceVersion: 1000,
		VerifiedAt: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
	}}
	f.Rows = make([]*store.Row, 0, n)
	for i := range n {
		f.Rows = append(f.Rows, &store.Row{
			UID: fmt.Sprintf("uid-%d", i), Namespace: "ns-" + strconv.Itoa(i%7), Name: fmt.Sprintf("pod-%05d", i),
			ResourceVersion: uint64(100 + i), Source: store.Verified, Deleted: i%11 == 10,
			ObservedAt: time.Date(2026, 11, 29, 12, 0, i%60, 0, time.UTC),
			Object:     fmt.Appendf(nil, `{"kind":"Pod","metadata":{"name":"pod-%05d","labels":{"marker":%q}}}`, i, marker),
			Labels:     map[string]string{"marker": marker},
			Fields:     map[string]string{"spec.nodeName": "node-" + strconv.Itoa(i%3)},
		})
	}
	return f
}

// want is f as GetFrame returns it: stamped with the version and row count.
func want(f *store.Frame) *store.Frame {
	w := &store.Frame{Header: f.Header, Rows: f.Rows}
	w.Header.Version, w.Header.Rows = store.FrameVersion, len(f.Rows)
	if w.Rows == nil {
		w.Rows = []*store.Row{}
	}
	return w
}

func currentGeneration(t *testing.T, client redis.UniversalClient, head string) string {
	t.Helper()
	gen, err := client.HGet(t.Context(), head, "gen").Result()
	if err != nil {
		t.Fatalf("reading the generation of %s: %v", head, err)
	}
	return head + ":" + gen
}

func TestRedisRoundTrip(t *testing.T) {
	client, cluster := testRedis(t)
	for _, tc := range []struct {
		rows, chunkRows, chunks int
	}{
		{rows: 0, chunks: 0},
		{rows: 1, chunks: 1},
		{rows: 10_000, chunks: 20}, // 512 rows a chunk
		{rows: 100, chunkRows: 7, chunks: 15},
	} {
		t.Run(fmt.Sprintf("%d rows by %d", tc.rows, tc.chunkRows), func(t *testing.T) {
			s := store.NewRedis(client, store.RedisOptions{ChunkRows: tc.chunkRows})
			for _, source := range []store.Source{store.Verified, store.Aggregated} {
				in := frame(cluster, source, tc.rows, "m")
				// In key order, as the agent's frames are and as
				// an aggregated frame with a delta reads back.
				slices.SortFunc(in.Rows, store.CompareKeys)
				if err := s.PutFrame(t.Context(), in); err != nil {
					t.Fatal(err)
				}
				out, err := s.GetFrame(t.Context(), cluster, "pods", source)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want(in), out); diff != "" {
					t.Errorf("%s frame of %d rows (-put +got):\n%s", source, tc.rows, diff)
				}
				// The chunks of the verified rows, and the delta.
				gen := currentGeneration(t, client, store.HeadKey(cluster, "pods", source))
				if n := client.HLen(t.Context(), gen).Val(); int(n) != tc.chunks+1 {
					t.Errorf("%s holds %d fields, want %d chunks and the delta", gen, n, tc.chunks)
				}
			}
		})
	}
}

// TestRedisChunkBytes: big objects close a chunk before ChunkRows rows.
func TestRedisChunkBytes(t *testing.T) {
	client, cluster := testRedis(t)
	s := store.NewRedis(client, store.RedisOptions{ChunkBytes: 64 << 10})
	in := frame(cluster, store.Verified, 40, "m")
	for _, r := range in.Rows {
		r.Object = append(r.Object, strings.Repeat(" ", 16<<10)...) // ~16 KiB each: 4 rows a chunk
	}
	if err := s.PutFrame(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	gen := currentGeneration(t, client, store.HeadKey(cluster, "pods", store.Verified))
	if n := client.HLen(t.Context(), gen).Val(); n != 10+1 {
		t.Errorf("%s holds %d fields, want 10 chunks of 64 KiB and the delta", gen, n)
	}
	out, err := s.GetFrame(t.Context(), cluster, "pods", store.Verified)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want(in), out); diff != "" {
		t.Errorf("round trip (-put +got):\n%s", diff)
	}
}

func TestRedisNotFound(t *testing.T) {
	client, cluster := testRedis(t)
	s := store.NewRedis(client, store.RedisOptions{})
	if _, err := s.GetFrame(t.Context(), cluster, "pods", store.Verified); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetFrame of nothing: err = %v, want ErrNotFound", err)
	}
	if ok, err := s.HasFrame(t.Context(), cluster, "pods", store.Verified); ok || err != nil {
		t.Fatalf("HasFrame of nothing = %v, %v; want false, nil", ok, err)
	}
	if err := s.PutFrame(t.Context(), frame(cluster, store.Verified, 3, "m")); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.HasFrame(t.Context(), cluster, "pods", store.Verified); !ok || err != nil {
		t.Fatalf("HasFrame after PutFrame = %v, %v; want true, nil", ok, err)
	}
	// A verified frame put alone is the aggregated one too: Redis keeps
	// the aggregated frame as a delta on it.
	if f, err := s.GetFrame(t.Context(), cluster, "pods", store.Aggregated); err != nil || len(f.Rows) != 3 || f.Header.Source != store.Aggregated {
		t.Fatalf("GetFrame of the aggregated frame after a verified one alone: %v, %v; want its 3 rows", f, err)
	}
	if _, err := s.GetFrame(t.Context(), cluster, "pods", store.Streamed); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetFrame of the streamed frame: err = %v, want ErrNotFound", err)
	}
}

// TestRedisReadersNeverSeeTornFrames runs readers against writers that keep
// swapping frames of different sizes in many chunks. Every frame a writer
// puts carries one marker in its header and every row, so a reader that got
// chunks of two frames would see two markers or a wrong row count.
func TestRedisReadersNeverSeeTornFrames(t *testing.T) {
	client, cluster := testRedis(t)
	tornFrames(t, client, cluster)
}

func tornFrames(t *testing.T, client redis.UniversalClient, cluster string) {
	t.Helper()
	const readers, writers, swaps = 8, 4, 40
	// A short grace makes replaced generations vanish under slow readers,
	// which must then start over, not return a partial frame.
	s := store.NewRedis(client, store.RedisOptions{ChunkRows: 16, Grace: 50 * time.Millisecond})
	ctx := t.Context()
	if err := s.PutFrame(ctx, frame(cluster, store.Aggregated, 10, "w0-0")); err != nil {
		t.Fatal(err)
	}
	var seq atomic.Uint64
	var reads atomic.Int64
	seen := sync.Map{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, readers+writers)
	for w := range writers {
		wg.Go(func() {
			for i := range swaps {
				marker := fmt.Sprintf("w%d-%d", w, i)
				f := frame(cluster, store.Aggregated, 50+(w*swaps+i)%150, marker)
				f.Header.ResourceVersion = seq.Add(1) + 1000
				f.Header.Cluster = cluster
				if err := s.PutFrame(ctx, f); err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
			}
		})
	}
	var rg sync.WaitGroup
	for r := range readers {
		rg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				f, err := s.GetFrame(ctx, cluster, "pods", store.Aggregated)
				if err != nil {
					errs <- fmt.Errorf("reader %d: %w", r, err)
					return
				}
				reads.Add(1)
				if len(f.Rows) != f.Header.Rows {
					errs <- fmt.Errorf("reader %d: header says %d rows, got %d", r, f.Header.Rows, len(f.Rows))
					return
				}
				marker := f.Rows[0].Labels["marker"]
				seen.Store(marker, true)
				if want := 50 + markerSize(marker); marker != "w0-0" && len(f.Rows) != want {
					errs <- fmt.Errorf("reader %d: frame %s has %d rows, its writer put %d", r, marker, len(f.Rows), want)
					return
				}
				// An aggregated frame written with a delta comes
				// back in key order: check its rows by name.
				rows := slices.SortedFunc(slices.Values(f.Rows), func(a, b *store.Row) int { return strings.Compare(a.Name, b.Name) })
				for i, row := range rows {
					if row.Labels["marker"] != marker || row.Name != fmt.Sprintf("pod-%05d", i) {
						errs <- fmt.Errorf("reader %d: torn frame: row %d is %s of frame %s, row 0 is of frame %s",
							r, i, row.Name, row.Labels["marker"], marker)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(done)
	rg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	distinct := 0
	seen.Range(func(any, any) bool { distinct++; return true })
	t.Logf("%d reads saw %d distinct frames of %d swaps", reads.Load(), distinct, writers*swaps)
	// The test proves nothing unless readers ran across swaps.
	if distinct < 10 {
		t.Errorf("readers saw only %d distinct frames; the test did not overlap reads and swaps", distinct)
	}
}

// markerSize is the row count minus 50 the writer of marker "w<w>-<i>" put.
func markerSize(marker string) int {
	var w, i int
	_, _ = fmt.Sscanf(marker, "w%d-%d", &w, &i)
	return (w*40 + i) % 150
}

func TestRedisCorruptChunk(t *testing.T) {
	for name, corrupt := range map[string]func(data string) string{
		"garbage":   func(string) string { return "not a gob chunk" },
		"truncated": func(d string) string { return d[:len(d)/2] },
		"empty":     func(string) string { return "" },
		"compressed garbage": func(string) string {
			z, _ := store.Compress([]byte("not a gob chunk"))
			return string(z)
		},
		"compressed, a byte flipped": func(d string) string {
			b := []byte(d)
			b[len(b)/2] ^= 0xff
			return string(b)
		},
	} {
		t.Run(name, func(t *testing.T) {
			client, cluster := testRedis(t)
			s := store.NewRedis(client, store.RedisOptions{ChunkRows: 10})
			if err := s.PutFrame(t.Context(), frame(cluster, store.Verified, 35, "m")); err != nil {
				t.Fatal(err)
			}
			gen := currentGeneration(t, client, store.HeadKey(cluster, "pods", store.Verified))
			data := client.HGet(t.Context(), gen, "2").Val()
			client.HSet(t.Context(), gen, "2", corrupt(data))
			f, err := s.GetFrame(t.Context(), cluster, "pods", store.Verified)
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("GetFrame with a %s chunk: frame %v, err = %v; want ErrCorrupt", name, f != nil, err)
			}
			if f != nil {
				t.Error("GetFrame returned a frame along with its error")
			}
			if !strings.Contains(err.Error(), gen) {
				t.Errorf("error %q does not name the key %s", err, gen)
			}
		})
	}
}

func TestRedisMissingChunk(t *testing.T) {
	client, cluster := testRedis(t)
	s := store.NewRedis(client, store.RedisOptions{ChunkRows: 10})
	if err := s.PutFrame(t.Context(), frame(cluster, store.Verified, 35, "m")); err != nil {
		t.Fatal(err)
	}
	gen := currentGeneration(t, client, store.HeadKey(cluster, "pods", store.Verified))
	client.HDel(t.Context(), gen, "1")
	_, err := s.GetFrame(t.Context(), cluster, "pods", store.Verified)
	if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), gen) {
		t.Fatalf("GetFrame with a chunk gone: err = %v; want ErrCorrupt naming %s", err, gen)
	}
}

func TestRedisUnknownVersion(t *testing.T) {
	newer := store.FrameVersion + 1
	for name, tc := range map[string]struct {
		break_ func(t *testing.T, client redis.UniversalClient, head string)
		key    func(t *testing.T, client redis.UniversalClient, head string) string
	}{
		"layout of the head": {
			break_: func(t *testing.T, client redis.UniversalClient, head string) {
				client.HSet(t.Context(), head, "v", "99")
			},
			key: func(_ *testing.T, _ redis.UniversalClient, head string) string { return head },
		},
		"frame header": {
			break_: func(t *testing.T, client redis.UniversalClient, head string) {
				client.HSet(t.Context(), head, "header", gobHeader(t, store.Header{Version: newer, Resource: "pods"}))
			},
			key: func(_ *testing.T, _ redis.UniversalClient, head string) string { return head },
		},
		"chunk": {
			break_: func(t *testing.T, client redis.UniversalClient, head string) {
				z, err := store.Compress(gobHeader(t, store.Header{Version: newer, Resource: "pods"}))
				if err != nil {
					t.Fatal(err)
				}
				client.HSet(t.Context(), currentGeneration(t, client, head), "0", z)
			},
			key: func(t *testing.T, client redis.UniversalClient, head string) string {
				return currentGeneration(t, client, head)
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			client, cluster := testRedis(t)
			s := store.NewRedis(client, store.RedisOptions{})
			if err := s.PutFrame(t.Context(), frame(cluster, store.Aggregated, 5, "m")); err != nil {
				t.Fatal(err)
			}
			head := store.HeadKey(cluster, "pods", store.Aggregated)
			tc.break_(t, client, head)
			_, err := s.GetFrame(t.Context(), cluster, "pods", store.Aggregated)
			if !errors.Is(err, store.ErrVersion) {
				t.Fatalf("GetFrame of an unknown %s version: err = %v, want ErrVersion", name, err)
			}
			if key := tc.key(t, client, head); !strings.Contains(err.Error(), key) {
				t.Errorf("error %q does not name the key %s", err, key)
			}
		})
	}
}

// gobHeader encodes h as the codec starts a frame, whatever its version.
func gobHeader(t *testing.T, h store.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&h); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRedisOldGenerationsExpire: a swap leaves the old generation to expire
// after 2×Grace, keeps the published one and the head forever.
func TestRedisOldGenerationsExpire(t *testing.T) {
	client, cluster := testRedis(t)
	const grace = 300 * time.Millisecond
	s := store.NewRedis(client, store.RedisOptions{ChunkRows: 4, Grace: grace})
	ctx := t.Context()
	head := store.HeadKey(cluster, "pods", store.Verified)
	if err := s.PutFrame(ctx, frame(cluster, store.Verified, 10, "old")); err != nil {
		t.Fatal(err)
	}
	old := currentGeneration(t, client, head)
	if ttl := client.PTTL(ctx, old).Val(); ttl != -1 {
		t.Fatalf("the published generation %s has TTL %s, want none", old, ttl)
	}
	next := frame(cluster, store.Verified, 12, "new")
	if err := s.PutFrame(ctx, next); err != nil {
		t.Fatal(err)
	}
	cur := currentGeneration(t, client, head)
	if ttl := client.PTTL(ctx, old).Val(); ttl <= 0 || ttl > 2*grace {
		t.Errorf("the replaced generation %s has TTL %s, want (0, %s]", old, ttl, 2*grace)
	}
	for _, k := range []string{head, cur} {
		if ttl := client.PTTL(ctx, k).Val(); ttl != -1 {
			t.Errorf("%s has TTL %s, want none", k, ttl)
		}
	}
	// An in-flight reader of the old generation still gets all of it.
	if n := client.HLen(ctx, old).Val(); n != 3+1 {
		t.Errorf("right after the swap %s holds %d fields, want 3 chunks and the delta", old, n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for client.Exists(ctx, old).Val() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists 5s after a swap with grace %s", old, grace)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, err := s.GetFrame(ctx, cluster, "pods", store.Verified)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want(next), out); diff != "" {
		t.Errorf("after the old generation expired (-put +got):\n%s", diff)
	}
	// Only the head and the current generation are left.
	keys := client.Keys(ctx, "krm:{"+cluster+"/*").Val()
	if diff := cmp.Diff([]string{head, cur}, slices.Sorted(slices.Values(keys))); diff != "" {
		t.Errorf("keys left (-want +got):\n%s", diff)
	}
}

// TestRedisUnpublishedGenerationExpires: the chunks of a writer that dies
// before its swap expire, and a generation missing chunks is never
// published.
func TestRedisUnpublishedGenerationExpires(t *testing.T) {
	client, cluster := testRedis(t)
	const pending = 2 * time.Second
	s := store.NewRedis(client, store.RedisOptions{ChunkRows: 4, PendingTTL: pending})
	ctx := t.Context()
	published := frame(cluster, store.Verified, 5, "published")
	if err := s.PutFrame(ctx, published); err != nil {
		t.Fatal(err)
	}
	f := frame(cluster, store.Verified, 10, "dead writer")
	genKey, gen, chunks, err := s.WriteUnpublished(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if ttl := client.PTTL(ctx, genKey).Val(); ttl <= 0 || ttl > pending {
		t.Errorf("unpublished %s has TTL %s, want (0, %s]", genKey, ttl, pending)
	}
	client.HDel(ctx, genKey, "1")
	if err := s.Publish(ctx, f, gen, chunks); err == nil {
		t.Fatal("publishing a generation with a chunk missing succeeded")
	}
	out, err := s.GetFrame(ctx, cluster, "pods", store.Verified)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want(published), out); diff != "" {
		t.Errorf("after a failed publish (-published +got):\n%s", diff)
	}
}

// aggregatedOf is v with what a watch changes after a LIST: every fifth row
// deleted, every third at a newer resourceVersion, one row added; in key
// order, as the agent's frames are.
func aggregatedOf(v *store.Frame) *store.Frame {
	a := &store.Frame{Header: v.Header}
	a.Header.Source, a.Header.ResourceVersion = store.Aggregated, v.Header.ResourceVersion+10
	for i, r := range v.Rows {
		switch {
		case i%5 == 4:
			continue
		case i%3 == 2:
			c := *r
			c.ResourceVersion, c.Source = v.Header.ResourceVersion+uint64(i), store.Streamed
			c.Object = append([]byte(nil), `{"changed":true}`...)
			r = &c
		}
		a.Rows = append(a.Rows, r)
	}
	a.Rows = append(a.Rows, &store.Row{UID: "new", Namespace: "ns-0", Name: "added", ResourceVersion: v.Header.ResourceVersion + 5,
		Source: store.Streamed, Object: []byte(`{}`)})
	slices.SortStableFunc(a.Rows, store.CompareKeys)
	return a
}

// roundTrips puts and gets frames of several resources (so, on a Redis
// Cluster, several slots) and events, through client.
func roundTrips(t *testing.T, client redis.UniversalClient, cluster string) {
	t.Helper()
	ctx := t.Context()
	s := store.NewRedis(client, store.RedisOptions{})
	for i, resource := range []string{"pods", "nodes", "services", "deployments"} {
		for _, n := range []int{0, 1, 10_000 / (i + 1)} {
			ver := frame(cluster, store.Verified, n, resource)
			ver.Header.Resource = resource
			agg := aggregatedOf(ver)
			if err := s.PutFrames(ctx, ver, agg); err != nil {
				t.Fatalf("putting %d %s: %v", n, resource, err)
			}
			gotVer, gotAgg, err := s.GetFrames(ctx, cluster, resource)
			if err != nil {
				t.Fatalf("getting %d %s: %v", n, resource, err)
			}
			if diff := cmp.Diff(want(ver), gotVer); diff != "" {
				t.Errorf("verified %d %s (-put +got):\n%s", n, resource, diff)
			}
			if diff := cmp.Diff(want(agg), gotAgg); diff != "" {
				t.Errorf("aggregated %d %s (-put +got):\n%s", n, resource, diff)
			}
			// Each object is decoded once: a row both frames hold
			// alike is one *Row.
			byUID := func(f *store.Frame, uid string) *store.Row {
				for _, r := range f.Rows {
					if r.UID == uid {
						return r
					}
				}
				return nil
			}
			if r := byUID(gotAgg, "uid-0"); n > 0 && (r == nil || r != byUID(gotVer, "uid-0")) {
				t.Errorf("%d %s: the aggregated frame's row uid-0 is not the verified frame's", n, resource)
			}
		}
	}
	in := append(events(cluster, "ADDED", 1, 2), events(cluster, "DELETED", 3)...)
	if _, err := s.AppendEvents(ctx, in); err != nil {
		t.Fatal(err)
	}
	if err := s.TrimEvents(ctx, cluster, "pods", 1); err != nil {
		t.Fatal(err)
	}
	got, err := s.Events(ctx, cluster, "pods", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in[1:], got); diff != "" {
		t.Errorf("events (-appended after the trim +read):\n%s", diff)
	}
}

// deleteAll deletes the keys of cluster on every master of client.
func deleteAll(t *testing.T, client redis.UniversalClient, cluster string) {
	if cc, ok := client.(*redis.ClusterClient); ok {
		_ = cc.ForEachMaster(context.Background(), func(ctx context.Context, node *redis.Client) error {
			deleteKeys(t, node, "krm:{"+cluster+"/*")
			return nil
		})
		return
	}
	deleteKeys(t, client, "krm:{"+cluster+"/*")
}

// TestRedisClusterRoundTrip runs the store on a 3-master Redis Cluster: the
// swap script and pipelines work because one resource's keys share a slot,
// and different resources land on different masters.
func TestRedisClusterRoundTrip(t *testing.T) {
	clustertest.Get(t)
	rc := clustertest.StartRedisCluster(t)
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: rc.Addrs()[:1], IsClusterMode: true})
	defer client.Close()
	if _, ok := client.(*redis.ClusterClient); !ok {
		t.Fatalf("the universal client is a %T, want a cluster client", client)
	}
	cluster := "t-" + rand.String(10)
	defer deleteAll(t, client, cluster)
	roundTrips(t, client, cluster)

	// The resources' keys spread over the masters.
	masters := map[string]bool{}
	for _, resource := range []string{"pods", "nodes", "services", "deployments"} {
		head := store.HeadKey(cluster, resource, store.Aggregated)
		slot := client.ClusterKeySlot(t.Context(), head).Val()
		for _, n := range rc.Nodes {
			c := redis.NewClient(&redis.Options{Addr: n.Addr})
			if c.Exists(t.Context(), head).Val() == 1 {
				masters[n.Addr] = true
			}
			c.Close()
		}
		if gen := client.HGet(t.Context(), head, "gen").Val(); client.ClusterKeySlot(t.Context(), head+":"+gen).Val() != slot {
			t.Errorf("%s and its generation are on different slots", head)
		}
	}
	if len(masters) < 2 {
		t.Errorf("four resources' heads are all on %v; the test proves nothing about slots", masters)
	}
}

// TestRedisClusterReadersNeverSeeTornFrames repeats the torn-frame test on
// a Redis Cluster.
func TestRedisClusterReadersNeverSeeTornFrames(t *testing.T) {
	clustertest.Get(t)
	rc := clustertest.StartRedisCluster(t)
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: rc.Addrs()})
	defer client.Close()
	cluster := "t-" + rand.String(10)
	tornFrames(t, client, cluster)
}

// TestRedisSentinelRoundTrip runs the store through Sentinel: the
// universal client asks the Sentinel for the master and writes there; the
// replica holds the same frames.
func TestRedisSentinelRoundTrip(t *testing.T) {
	clustertest.Get(t)
	rs := clustertest.StartRedisSentinel(t)
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{rs.Sentinel.Addr}, MasterName: rs.MasterName})
	defer client.Close()
	cluster := "t-" + rand.String(10)
	roundTrips(t, client, cluster)

	replica := redis.NewClient(&redis.Options{Addr: rs.Replica.Addr})
	defer replica.Close()
	s := store.NewRedis(replica, store.RedisOptions{})
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := s.GetFrame(t.Context(), cluster, "deployments", store.Verified)
		if err == nil && len(f.Rows) == 2500 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica's deployments frame after 10s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The master dies; Sentinel promotes the replica and the same client
	// writes there.
	rs.Master.Kill()
	after := frame(cluster, store.Verified, 100, "after failover")
	deadline = time.Now().Add(60 * time.Second)
	store1 := store.NewRedis(client, store.RedisOptions{})
	for {
		err := store1.PutFrame(t.Context(), after)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writing after the master died: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	got, err := s.GetFrame(t.Context(), cluster, "pods", store.Verified)
	if err != nil {
		t.Fatalf("reading the frame written after the failover from the promoted replica: %v", err)
	}
	if diff := cmp.Diff(want(after), got); diff != "" {
		t.Errorf("after the failover (-put +got):\n%s", diff)
	}
}

// TestRedisFramesKeyedByClusterUID: a frame that knows its cluster's UID is
// stored under the UID and reads back with it; the name's keys stay empty.
func TestRedisFramesKeyedByClusterUID(t *testing.T) {
	client, cluster := testRedis(t)
	uid := cluster + "-uid"
	t.Cleanup(func() { deleteKeys(t, client, "krm:{"+uid+"/*") })
	s := store.NewRedis(client, store.RedisOptions{})
	in := frame(cluster, store.Verified, 3, "m")
	in.Header.ClusterUID = uid
	if err := s.PutFrame(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	out, err := s.GetFrame(t.Context(), uid, "pods", store.Verified)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want(in), out); diff != "" {
		t.Errorf("frame keyed by the cluster's UID (-put +got):\n%s", diff)
	}
	if _, err := s.GetFrame(t.Context(), cluster, "pods", store.Verified); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("reading under the cluster's name: %v, want ErrNotFound", err)
	}
}

// TestRedisRemembersClusterUID: the UID recorded for a cluster name reads
// back, under a key of its own that no resource's key matches.
func TestRedisRemembersClusterUID(t *testing.T) {
	client, cluster := testRedis(t)
	t.Cleanup(func() { client.Del(context.Background(), "krm:{"+cluster+"}:uid") })
	s := store.NewRedis(client, store.RedisOptions{})
	if uid, err := s.RememberedClusterUID(t.Context(), cluster); err != nil || uid != "" {
		t.Fatalf("RememberedClusterUID before any = %q, %v", uid, err)
	}
	if err := s.RememberClusterUID(t.Context(), cluster, "uid-1"); err != nil {
		t.Fatal(err)
	}
	if uid, err := s.RememberedClusterUID(t.Context(), cluster); err != nil || uid != "uid-1" {
		t.Errorf("RememberedClusterUID = %q, %v; want uid-1", uid, err)
	}
	if n := client.Exists(t.Context(), "krm:{"+cluster+"}:uid").Val(); n != 1 {
		t.Errorf("the identity is not under krm:{%s}:uid", cluster)
	}
}

// TestRedisLayout1IsReplaced: frames an older krm wrote (layout 1: a head
// per source, uncompressed chunks) are refused as ErrVersion, naming the
// layout; the next write replaces them and deletes layout 1's aggregated
// head and generation.
func TestRedisLayout1IsReplaced(t *testing.T) {
	client, cluster := testRedis(t)
	ctx := t.Context()
	s := store.NewRedis(client, store.RedisOptions{})
	old := frame(cluster, store.Verified, 3, "old")
	h := old.Header
	h.Version, h.Rows = 1, len(old.Rows)
	chunk, err := store.Encode(old)
	if err != nil {
		t.Fatal(err)
	}
	head := store.HeadKey(cluster, "pods", store.Verified)
	legacy := store.LegacyAggregatedKey(cluster, "pods")
	for _, k := range []string{head, legacy} {
		client.HSet(ctx, k+":1-old", "0", chunk)
		client.HSet(ctx, k, "v", "1", "gen", "1-old", "chunks", "1", "header", gobHeader(t, h))
	}
	_, _, err = s.GetFrames(ctx, cluster, "pods")
	if !errors.Is(err, store.ErrVersion) || !strings.Contains(err.Error(), `layout "1"`) || !strings.Contains(err.Error(), head) {
		t.Fatalf("GetFrames of layout 1: err = %v; want ErrVersion naming the layout and %s", err, head)
	}
	in := frame(cluster, store.Verified, 5, "new")
	if err := s.PutFrames(ctx, in, aggregatedOf(in)); err != nil {
		t.Fatal(err)
	}
	if v, a, err := s.GetFrames(ctx, cluster, "pods"); err != nil || len(v.Rows) != 5 || len(a.Rows) != len(aggregatedOf(in).Rows) {
		t.Fatalf("GetFrames after the rewrite: %v, %v, %v", v, a, err)
	}
	if n := client.Exists(ctx, legacy, legacy+":1-old").Val(); n != 0 {
		t.Errorf("layout 1's aggregated head or generation survived the rewrite (%d of 2 keys)", n)
	}
	if ttl := client.PTTL(ctx, head+":1-old").Val(); ttl <= 0 {
		t.Errorf("layout 1's verified generation has TTL %v after the swap, want it to expire", ttl)
	}
}
