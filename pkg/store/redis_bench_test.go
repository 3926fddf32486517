package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/krm-project/krm/pkg/store"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// benchRedis is testRedis for benchmarks.
func benchRedis(b *testing.B) (redis.UniversalClient, string) {
	b.Helper()
	c := clustertest.Get(b)
	opts, err := redis.ParseURL(c.RedisURL)
	if err != nil {
		b.Fatal(err)
	}
	client := redis.NewClient(opts)
	cluster := "b-" + rand.String(10)
	b.Cleanup(func() {
		ctx := context.Background()
		iter := client.Scan(ctx, 0, "krm:{"+cluster+"/*", 1000).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
		client.Close()
	})
	return client, cluster
}

// podFrame is a frame of n pods about the size kube-apiserver serves them
// (2 KiB of JSON each, managedFields stripped).
func podFrame(cluster string, source store.Source, n int) *store.Frame {
	pad := strings.Repeat("x", 1700)
	f := &store.Frame{Header: store.Header{Cluster: cluster, Resource: "pods", Source: source, ResourceVersion: uint64(n), VerifiedAt: time.Now()}}
	f.Rows = make([]*store.Row, n)
	for i := range n {
		f.Rows[i] = &store.Row{
			UID: fmt.Sprintf("0b6f6e1c-%08d-4a7e-9d1e-3f0c2a7b9e10", i), Namespace: "bench", Name: fmt.Sprintf("pod-%06d", i),
			ResourceVersion: uint64(i + 1), Source: store.Verified, ObservedAt: time.Now(),
			Object: fmt.Appendf(nil, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"pod-%06d","namespace":"bench","annotations":{"pad":%q}},"spec":{"nodeName":"node-%d"},"status":{"phase":"Running"}}`, i, pad, i%3),
			Labels: map[string]string{"app": "bench", "pod-template-hash": "5d8f7c9b6d"},
			Fields: map[string]string{"spec.nodeName": fmt.Sprintf("node-%d", i%3), "status.phase": "Running"},
		}
	}
	return f
}

func objectBytes(f *store.Frame) int64 {
	var n int64
	for _, r := range f.Rows {
		n += int64(len(r.Object))
	}
	return n
}

// BenchmarkRedisAppendEvent is the store's per-event write cost with 1,000
// and 50,000 objects stored: one XADD of one event, whatever the frame's
// size. Flat means roughly equal ns/op.
func BenchmarkRedisAppendEvent(b *testing.B) {
	for _, n := range []int{1000, 50000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			client, cluster := benchRedis(b)
			s := store.NewRedis(client, store.RedisOptions{})
			f := podFrame(cluster, store.Verified, n)
			for _, src := range []store.Source{store.Verified, store.Aggregated} {
				f.Header.Source = src
				if err := s.PutFrame(b.Context(), f); err != nil {
					b.Fatal(err)
				}
			}
			rv := uint64(n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				rv++
				r := *f.Rows[i%n]
				r.ResourceVersion, r.Source = rv, store.Streamed
				if _, err := s.AppendEvents(b.Context(), []store.Event{{Cluster: cluster, Resource: "pods", Type: "MODIFIED", Row: &r}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRedisPutFrame writes the frames of 10,000 pods, as the agent
// does after a LIST: the verified frame's chunks and the aggregated frame's
// (empty) delta under a new generation, then the swap. MB/s counts the
// objects' JSON.
func BenchmarkRedisPutFrame(b *testing.B) {
	client, cluster := benchRedis(b)
	s := store.NewRedis(client, store.RedisOptions{Grace: time.Second})
	f := podFrame(cluster, store.Verified, 10000)
	agg := &store.Frame{Header: f.Header, Rows: f.Rows}
	agg.Header.Source = store.Aggregated
	b.SetBytes(objectBytes(f))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.PutFrames(b.Context(), f, agg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(f.Rows))*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkRedisGetFrame reads a frame of 10,000 pods back, as a warm
// restart does.
func BenchmarkRedisGetFrame(b *testing.B) {
	client, cluster := benchRedis(b)
	s := store.NewRedis(client, store.RedisOptions{})
	f := podFrame(cluster, store.Verified, 10000)
	if err := s.PutFrame(b.Context(), f); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(objectBytes(f))
	b.ReportAllocs()
	for b.Loop() {
		got, err := s.GetFrame(b.Context(), cluster, "pods", store.Verified)
		if err != nil {
			b.Fatal(err)
		}
		if len(got.Rows) != len(f.Rows) {
			b.Fatalf("read %d rows, wrote %d", len(got.Rows), len(f.Rows))
		}
	}
	b.ReportMetric(float64(len(f.Rows))*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
