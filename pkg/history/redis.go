package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/krm-project/krm/pkg/store"
)

// Redis persists logs in Redis, under the store's keys for the resource
// (DESIGN.md's store section), all on the resource's Cluster slot:
//
//	krm:{c/r}:history        stream: one entry per revision (field "r": a Record
//	                         without its object), trimmed by time (MINID)
//	krm:{c/r}:history:heads  hash: uid -> the object's newest Record with its object
//	krm:{c/r}:history:state  string: the log's State (JSON)
type Redis struct {
	client  redis.UniversalClient
	cluster string
}

// NewRedis persists the logs of cluster (the store's key cluster) in client.
func NewRedis(client redis.UniversalClient, cluster string) *Redis {
	return &Redis{client: client, cluster: cluster}
}

// StreamKey is the key of a resource's history stream.
func StreamKey(cluster, resource string) string {
	return "krm:{" + cluster + "/" + resource + "}:history"
}

func headsKey(cluster, resource string) string { return StreamKey(cluster, resource) + ":heads" }
func stateKey(cluster, resource string) string { return StreamKey(cluster, resource) + ":state" }

// headRecord is a Record with its object, as the heads hash keeps it.
type headRecord struct {
	Record
	Object json.RawMessage `json:"object"`
}

// Write implements Persister.
func (s *Redis) Write(ctx context.Context, resource string, recs []Record, dropped []string, cut time.Time, st State) error {
	stream, heads := StreamKey(s.cluster, resource), headsKey(s.cluster, resource)
	pipe := s.client.Pipeline()
	for _, r := range recs {
		entry, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encoding a revision of %s: %w", resource, err)
		}
		head, err := json.Marshal(headRecord{Record: r, Object: r.Head})
		if err == nil {
			// Each object's newest revision, whole: compressed as the
			// frames' chunks are.
			head, err = store.Compress(head)
		}
		if err != nil {
			return fmt.Errorf("encoding a revision of %s: %w", resource, err)
		}
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"r", entry}})
		pipe.HSet(ctx, heads, r.UID, head)
	}
	if len(dropped) > 0 {
		pipe.HDel(ctx, heads, dropped...)
	}
	if !cut.IsZero() {
		// Entry IDs are the write time in ms: MINID drops what was
		// written before the cut. The first entry kept carries the
		// state at the cut (Record.Prev and Back).
		pipe.XTrimMinIDApprox(ctx, stream, strconv.FormatInt(cut.UnixMilli(), 10), 0)
	}
	state, err := json.Marshal(st)
	if err != nil {
		return err
	}
	pipe.Set(ctx, stateKey(s.cluster, resource), state, 0)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("writing the history of %s to Redis: %w", resource, err)
	}
	return nil
}

// Load implements Persister.
func (s *Redis) Load(ctx context.Context, resource string) (*Stored, error) {
	raw, err := s.client.Get(ctx, stateKey(s.cluster, resource)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the history state of %s: %w", resource, err)
	}
	out := &Stored{Heads: map[string]Record{}}
	if err := json.Unmarshal(raw, &out.State); err != nil {
		return nil, fmt.Errorf("decoding the history state of %s: %w", resource, err)
	}
	heads, err := s.client.HGetAll(ctx, headsKey(s.cluster, resource)).Result()
	if err != nil {
		return nil, fmt.Errorf("reading the history heads of %s: %w", resource, err)
	}
	for uid, v := range heads {
		raw := []byte(v)
		if store.Compressed(raw) {
			if raw, err = store.Decompress(raw); err != nil {
				return nil, fmt.Errorf("decoding the history head of %s %s: %w", resource, uid, err)
			}
		}
		var h headRecord
		if err := json.Unmarshal(raw, &h); err != nil {
			return nil, fmt.Errorf("decoding the history head of %s %s: %w", resource, uid, err)
		}
		h.Record.Head = h.Object
		out.Heads[uid] = h.Record
	}
	stream := StreamKey(s.cluster, resource)
	start := "-"
	for {
		entries, err := s.client.XRangeN(ctx, stream, start, "+", 10_000).Result()
		if err != nil {
			return nil, fmt.Errorf("reading the history of %s: %w", resource, err)
		}
		for _, e := range entries {
			v, _ := e.Values["r"].(string)
			var r Record
			if err := json.Unmarshal([]byte(v), &r); err != nil {
				return nil, fmt.Errorf("decoding history entry %s of %s: %w", e.ID, resource, err)
			}
			out.Records = append(out.Records, r)
		}
		if len(entries) < 10_000 {
			return out, nil
		}
		start = "(" + entries[len(entries)-1].ID
	}
}
