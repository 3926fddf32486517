package store_test

import (
	crand "crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/krm-project/krm/pkg/store"
)

func events(cluster string, typ string, rvs ...uint64) []store.Event {
	var out []store.Event
	for _, rv := range rvs {
		r := frame(cluster, store.Streamed, 1, "e").Rows[0]
		r.ResourceVersion, r.Source = rv, store.Streamed
		out = append(out, store.Event{Cluster: cluster, Resource: "pods", Type: typ, Row: r})
	}
	return out
}

func TestRedisEvents(t *testing.T) {
	client, cluster := testRedis(t)
	s := store.NewRedis(client, store.RedisOptions{})
	ctx := t.Context()
	in := append(events(cluster, "ADDED", 101, 102), events(cluster, "MODIFIED", 105, 107)...)
	in = append(in, events(cluster, "DELETED", 110)...)
	// Another resource's events go to its own stream.
	other := events(cluster, "ADDED", 50)
	other[0].Resource = "services"
	if skipped, err := s.AppendEvents(ctx, append(in, other...)); err != nil || skipped != 0 {
		t.Fatalf("AppendEvents = %d skipped, %v", skipped, err)
	}
	got, err := s.Events(ctx, cluster, "pods", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, got); diff != "" {
		t.Errorf("events after 0 (-appended +read):\n%s", diff)
	}
	if got, _ := s.Events(ctx, cluster, "pods", 105, 100); len(got) != 2 || got[0].Row.ResourceVersion != 107 {
		t.Errorf("events after 105: %d, want 107 and 110", len(got))
	}
	if got, _ := s.Events(ctx, cluster, "pods", 0, 2); len(got) != 2 || got[1].Row.ResourceVersion != 102 {
		t.Errorf("2 events after 0: %d, want 101 and 102", len(got))
	}
	if got, _ := s.Events(ctx, cluster, "services", 0, 100); len(got) != 1 {
		t.Errorf("services has %d events, want 1", len(got))
	}

	// An event older than the stream's newest is left out, not misordered.
	if skipped, err := s.AppendEvents(ctx, events(cluster, "MODIFIED", 108, 111)); err != nil || skipped != 1 {
		t.Errorf("appending 108 after 110: %d skipped, %v; want 1 skipped", skipped, err)
	}

	// A verified frame at 105 covers the events up to 105.
	if err := s.TrimEvents(ctx, cluster, "pods", 105); err != nil {
		t.Fatal(err)
	}
	got, err = s.Events(ctx, cluster, "pods", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var rvs []uint64
	for _, ev := range got {
		rvs = append(rvs, ev.Row.ResourceVersion)
	}
	if diff := cmp.Diff([]uint64{107, 110, 111}, rvs); diff != "" {
		t.Errorf("events left after trimming through 105 (-want +got):\n%s", diff)
	}
	if n := client.XLen(ctx, store.EventsKey(cluster, "pods")).Val(); n != 3 {
		t.Errorf("the stream holds %d entries after the trim, want 3", n)
	}
	// Trimming past the end empties it; appending goes on.
	if err := s.TrimEvents(ctx, cluster, "pods", 1000); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Events(ctx, cluster, "pods", 0, 100); len(got) != 0 {
		t.Errorf("%d events after trimming everything", len(got))
	}
	if _, err := s.AppendEvents(ctx, events(cluster, "ADDED", 1001)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Events(ctx, cluster, "pods", 0, 100); len(got) != 1 {
		t.Errorf("%d events after appending to a trimmed stream, want 1", len(got))
	}
}

func TestRedisEventsCap(t *testing.T) {
	client, cluster := testRedis(t)
	s := store.NewRedis(client, store.RedisOptions{MaxEvents: 100})
	var in []store.Event
	for rv := range uint64(1000) {
		in = append(in, events(cluster, "MODIFIED", rv+1)...)
	}
	if _, err := s.AppendEvents(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	// The cap is approximate (whole stream nodes go), but it holds.
	if n := client.XLen(t.Context(), store.EventsKey(cluster, "pods")).Val(); n < 100 || n > 300 {
		t.Errorf("a stream capped at 100 holds %d entries", n)
	}
}

func TestRedisCorruptEvent(t *testing.T) {
	for name, tc := range map[string]struct {
		values []any
		want   error
	}{
		"unknown layout": {values: []any{"v", "9", "type", "ADDED", "row", "x"}, want: store.ErrVersion},
		"garbage row":    {values: []any{"v", "1", "type", "ADDED", "row", "not gob"}, want: store.ErrCorrupt},
		"unknown type":   {values: []any{"v", "1", "type", "BOOKMARK", "row", ""}, want: store.ErrCorrupt},
	} {
		t.Run(name, func(t *testing.T) {
			client, cluster := testRedis(t)
			s := store.NewRedis(client, store.RedisOptions{})
			if name == "unknown type" {
				// A well-formed row under a bad type.
				ok := events(cluster, "ADDED", 7)
				if _, err := s.AppendEvents(t.Context(), ok); err != nil {
					t.Fatal(err)
				}
				msgs := client.XRange(t.Context(), store.EventsKey(cluster, "pods"), "-", "+").Val()
				tc.values[5] = msgs[0].Values["row"]
			}
			key := store.EventsKey(cluster, "pods")
			if err := client.XAdd(t.Context(), &redis.XAddArgs{Stream: key, ID: "9-*", Values: tc.values}).Err(); err != nil {
				t.Fatal(err)
			}
			_, err := s.Events(t.Context(), cluster, "pods", 8, 10)
			if !errors.Is(err, tc.want) {
				t.Fatalf("reading a stream entry with %s: err = %v, want %v", name, err, tc.want)
			}
			if !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "9-0") {
				t.Errorf("error %q does not name the key %s and entry 9-0", err, key)
			}
		})
	}
}

// TestRedisFollowEvents: a follower waiting on the stream gets an event as
// soon as it is appended, and after a resourceVersion only newer ones.
func TestRedisFollowEvents(t *testing.T) {
	client, cluster := testRedis(t)
	s := store.NewRedis(client, store.RedisOptions{})
	ctx := t.Context()
	in := events(cluster, "ADDED", 5, 6, 7)
	if _, err := s.AppendEvents(ctx, in); err != nil {
		t.Fatal(err)
	}
	got, err := s.FollowEvents(ctx, cluster, "pods", 5, time.Second, 100)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in[1:], got); diff != "" {
		t.Errorf("events after 5 (-appended +followed):\n%s", diff)
	}
	start := time.Now()
	if got, err := s.FollowEvents(ctx, cluster, "pods", 7, 200*time.Millisecond, 100); err != nil || len(got) != 0 {
		t.Errorf("following past the end = %d events, %v; want none", len(got), err)
	}
	if waited := time.Since(start); waited < 150*time.Millisecond {
		t.Errorf("following past the end returned after %s, before its 200ms", waited)
	}

	done := make(chan []store.Event, 1)
	go func() {
		evs, err := s.FollowEvents(ctx, cluster, "pods", 7, 10*time.Second, 100)
		if err != nil {
			t.Error(err)
		}
		done <- evs
	}()
	time.Sleep(100 * time.Millisecond)
	start = time.Now()
	next := events(cluster, "MODIFIED", 8)
	if _, err := s.AppendEvents(ctx, next); err != nil {
		t.Fatal(err)
	}
	select {
	case evs := <-done:
		if diff := cmp.Diff(next, evs); diff != "" {
			t.Errorf("the waiting follower got (-appended +followed):\n%s", diff)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("the waiting follower got the event %s after it was appended", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting follower got nothing 5s after an append")
	}
}

func TestRedisFrameGeneration(t *testing.T) {
	client, cluster := testRedis(t)
	s := store.NewRedis(client, store.RedisOptions{})
	if gen, err := s.FrameGeneration(t.Context(), cluster, "pods", store.Aggregated); gen != "" || err != nil {
		t.Fatalf("generation of no frame = %q, %v", gen, err)
	}
	var gens []string
	for range 2 {
		if err := s.PutFrame(t.Context(), frame(cluster, store.Aggregated, 3, "g")); err != nil {
			t.Fatal(err)
		}
		gen, err := s.FrameGeneration(t.Context(), cluster, "pods", store.Aggregated)
		if err != nil || gen == "" {
			t.Fatalf("generation = %q, %v", gen, err)
		}
		gens = append(gens, gen)
	}
	if gens[0] == gens[1] {
		t.Errorf("two writes share generation %s", gens[0])
	}
}

// TestRedisEventsResetAfterRestore: once the cluster's resourceVersions go
// back below the stream's (an etcd restore), XADD refuses every event, even
// after trimming, since Redis compares with the stream's last-generated-id.
// ResetEvents drops the stream, only if nobody appended since EventsTop
// looked, and events are accepted again.
func TestRedisEventsResetAfterRestore(t *testing.T) {
	client, cluster := testRedis(t)
	s := store.NewRedis(client, store.RedisOptions{})
	ctx := t.Context()
	if _, err := s.AppendEvents(ctx, events(cluster, "ADDED", 5000, 5001)); err != nil {
		t.Fatal(err)
	}
	// Trimming everything does not help: the last ID stays.
	if err := s.TrimEvents(ctx, cluster, "pods", 6000); err != nil {
		t.Fatal(err)
	}
	if skipped, err := s.AppendEvents(ctx, events(cluster, "ADDED", 40)); err != nil || skipped != 1 {
		t.Fatalf("appending 40 after 5001: %d skipped, %v; want it refused", skipped, err)
	}
	top, id, err := s.EventsTop(ctx, cluster, "pods")
	if err != nil || top != 5001 || !strings.HasPrefix(id, "5001-") {
		t.Fatalf("EventsTop = %d %q %v, want 5001", top, id, err)
	}
	if ok, err := s.ResetEvents(ctx, cluster, "pods", "5000-0"); err != nil || ok {
		t.Errorf("ResetEvents with an ID that is not the newest = %t, %v; want it left alone", ok, err)
	}
	if ok, err := s.ResetEvents(ctx, cluster, "pods", id); err != nil || !ok {
		t.Fatalf("ResetEvents = %t, %v; want the stream dropped", ok, err)
	}
	if top, id, err := s.EventsTop(ctx, cluster, "pods"); err != nil || top != 0 || id != "" {
		t.Errorf("EventsTop after the reset = %d %q %v, want no stream", top, id, err)
	}
	if skipped, err := s.AppendEvents(ctx, events(cluster, "ADDED", 40, 41)); err != nil || skipped != 0 {
		t.Fatalf("appending 40 after the reset: %d skipped, %v", skipped, err)
	}
	if got, err := s.Events(ctx, cluster, "pods", 0, 10); err != nil || len(got) != 2 || got[0].Row.ResourceVersion != 40 {
		t.Errorf("events after the reset: %d, %v; want 40 and 41", len(got), err)
	}
	if ok, err := s.ResetEvents(ctx, cluster, "nothing", "1-0"); err != nil || ok {
		t.Errorf("ResetEvents of no stream = %t, %v", ok, err)
	}
}

// TestRedisEventStreamBoundedByBytes: with no LIST to trim it (LISTs
// failing), a stream of large events stays within its byte budget: every
// XADD trims it to StreamBytes over the events' mean size.
func TestRedisEventStreamBoundedByBytes(t *testing.T) {
	client, cluster := testRedis(t)
	const budget = 1 << 20
	s := store.NewRedis(client, store.RedisOptions{StreamBytes: budget})
	ctx := t.Context()
	// Random bytes, which zstd cannot shrink: 8 KiB events in Redis too.
	pad := make([]byte, 8<<10)
	_, _ = crand.Read(pad)
	rv := uint64(0)
	for range 20 {
		batch := events(cluster, "MODIFIED", make([]uint64, 100)...)
		for i := range batch {
			rv++
			batch[i].Row.ResourceVersion = rv
			batch[i].Row.Object = pad
		}
		if skipped, err := s.AppendEvents(ctx, batch); err != nil || skipped != 0 {
			t.Fatalf("AppendEvents = %d skipped, %v", skipped, err)
		}
	}
	key := store.EventsKey(cluster, "pods")
	maxLen := s.StreamLength(cluster, "pods")
	if maxLen < 100 || maxLen > budget/(8<<10) {
		t.Errorf("StreamLength = %d for 8 KiB events in %d bytes, want about %d", maxLen, budget, budget/(8<<10))
	}
	n, err := client.XLen(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	// MAXLEN ~ trims whole stream nodes: allow one node's worth more.
	if n > maxLen+100 {
		t.Errorf("the stream holds %d events after 2,000 appends, want at most about %d", n, maxLen)
	}
	bytes, err := client.MemoryUsage(ctx, key, 0).Result()
	if err != nil {
		t.Fatal(err)
	}
	if bytes > budget*11/10 {
		t.Errorf("the stream takes %d bytes in Redis, budget %d", bytes, budget)
	}
	t.Logf("%d events, %d bytes in Redis (budget %d)", n, bytes, budget)
	if got, err := s.Events(ctx, cluster, "pods", 0, 1); err != nil || len(got) != 1 || got[0].Row.ResourceVersion <= 2000-uint64(n) {
		t.Errorf("the oldest event kept: %v, %v; want one of the newest %d", got, err, n)
	}
}
