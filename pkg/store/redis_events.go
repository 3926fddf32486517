package store

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// eventLayout is the version of a stream entry's fields: "2" holds the
// row gob-encoded and compressed (see compress.go). Entries of layout "1",
// the row gob-encoded alone, written by an older krm, are still read.
const (
	eventLayout      = "2"
	eventLayoutPlain = "1"
)

// Event is one watch event as kept in a resource's event stream.
type Event struct {
	Cluster  string
	Resource string
	// Type is ADDED, MODIFIED or DELETED.
	Type string
	// Row is the object; its ResourceVersion orders the stream.
	Row *Row
}

// AppendEvents adds events to their resources' streams in one round trip,
// trimming each to what RedisOptions.StreamBytes allows.
// Each XADD costs the same whatever the size of the frame. An event older
// than the newest one already in its stream is left out (a stream is kept in
// resourceVersion order): skipped counts those. Its ID is the event's
// resourceVersion, so a verified frame at resourceVersion v trims exactly
// the events it covers.
func (s *Redis) AppendEvents(ctx context.Context, events []Event) (skipped int, err error) {
	if len(events) == 0 {
		return 0, nil
	}
	rows := make([][]byte, len(events))
	for i, ev := range events {
		var row bytes.Buffer
		if err := gob.NewEncoder(&row).Encode(ev.Row); err != nil {
			return 0, fmt.Errorf("encoding %s event of %s %s: %w", ev.Type, ev.Resource, ev.Row.Key(), err)
		}
		z, err := compress(row.Bytes())
		if err != nil {
			return 0, fmt.Errorf("compressing %s event of %s %s: %w", ev.Type, ev.Resource, ev.Row.Key(), err)
		}
		rows[i] = z
	}
	maxLen := s.streamLengths(events, rows)
	pipe := s.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(events))
	for i, ev := range events {
		key := EventsKey(ev.Cluster, ev.Resource)
		cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: key,
			MaxLen: maxLen[key],
			Approx: true,
			ID:     strconv.FormatUint(ev.Row.ResourceVersion, 10) + "-*",
			Values: []any{"v", eventLayout, "type", ev.Type, "row", rows[i]},
		})
	}
	_, _ = pipe.Exec(ctx)
	var errs []error
	for i, c := range cmds {
		switch err := c.Err(); {
		case err == nil:
		case isStaleID(err):
			skipped++
		default:
			errs = append(errs, fmt.Errorf("appending to %s: %w", EventsKey(events[i].Cluster, events[i].Resource), err))
		}
	}
	if len(errs) > 0 {
		// One broken connection fails every command alike: say it once.
		return skipped, fmt.Errorf("%d of %d events not written: %w", len(errs), len(events), errs[0])
	}
	return skipped, nil
}

// meanSize is a running mean of a stream's entry sizes, weighted toward
// recent events (objects of a resource change size slowly).
type meanSize struct {
	mean float64
}

func (m *meanSize) add(n int) {
	if m.mean == 0 {
		m.mean = float64(n)
		return
	}
	m.mean += (float64(n) - m.mean) / 64
}

// streamLengths returns, by stream key, the MAXLEN that keeps each stream
// of events within StreamBytes at its events' mean size so far: the bound
// by bytes holds on every XADD, whether or not a LIST trims the stream.
func (s *Redis) streamLengths(events []Event, rows [][]byte) map[string]int64 {
	s.sizesMu.Lock()
	defer s.sizesMu.Unlock()
	out := map[string]int64{}
	for i, ev := range events {
		key := EventsKey(ev.Cluster, ev.Resource)
		m := s.sizes[key]
		if m == nil {
			m = &meanSize{}
			s.sizes[key] = m
		}
		m.add(streamEntrySize(len(rows[i])))
		out[key] = 0
	}
	for key := range out {
		out[key] = s.streamLengthLocked(key)
	}
	return out
}

// StreamLength is the MAXLEN the next XADD to a resource's stream asks
// for: what StreamBytes allows at the mean size of its events so far.
func (s *Redis) StreamLength(cluster, resource string) int64 {
	s.sizesMu.Lock()
	defer s.sizesMu.Unlock()
	return s.streamLengthLocked(EventsKey(cluster, resource))
}

func (s *Redis) streamLengthLocked(key string) int64 {
	m := s.sizes[key]
	if m == nil {
		return s.opts.MaxEvents
	}
	return min(max(int64(float64(s.opts.StreamBytes)/m.mean), s.opts.MinEvents), s.opts.MaxEvents)
}

// isStaleID reports Redis refusing an ID not above the stream's last one.
func isStaleID(err error) bool {
	return strings.Contains(err.Error(), "equal or smaller than the target stream top item")
}

// Events returns up to limit events of a resource newer than resourceVersion
// after, oldest first. An entry that cannot be decoded is an error naming the
// key and entry, wrapping ErrVersion or ErrCorrupt.
func (s *Redis) Events(ctx context.Context, cluster, resource string, after uint64, limit int64) ([]Event, error) {
	key := EventsKey(cluster, resource)
	msgs, err := s.client.XRangeN(ctx, key, strconv.FormatUint(after+1, 10)+"-0", "+", limit).Result()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	out := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		ev, err := decodeEvent(cluster, resource, m)
		if err != nil {
			return nil, fmt.Errorf("reading entry %s of %s: %w", m.ID, key, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

func decodeEvent(cluster, resource string, m redis.XMessage) (Event, error) {
	v, _ := m.Values["v"].(string)
	if v != eventLayout && v != eventLayoutPlain {
		return Event{}, fmt.Errorf("%w: event layout %q (this build reads %s and %s)", ErrVersion, v, eventLayoutPlain, eventLayout)
	}
	typ, _ := m.Values["type"].(string)
	switch typ {
	case "ADDED", "MODIFIED", "DELETED":
	default:
		return Event{}, fmt.Errorf("%w: event type %q", ErrCorrupt, typ)
	}
	data, _ := m.Values["row"].(string)
	raw := []byte(data)
	if v == eventLayout {
		var err error
		if raw, err = decompress(raw); err != nil {
			return Event{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
	}
	row := new(Row)
	if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(row); err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	ms, _, _ := strings.Cut(m.ID, "-")
	if rv, err := strconv.ParseUint(ms, 10, 64); err != nil || rv != row.ResourceVersion {
		return Event{}, fmt.Errorf("%w: the entry's row has resourceVersion %d", ErrCorrupt, row.ResourceVersion)
	}
	return Event{Cluster: cluster, Resource: resource, Type: typ, Row: row}, nil
}

// TrimEvents removes a resource's events up to and including resourceVersion
// through: a verified frame at through covers them.
func (s *Redis) TrimEvents(ctx context.Context, cluster, resource string, through uint64) error {
	key := EventsKey(cluster, resource)
	err := s.client.XTrimMinID(ctx, key, strconv.FormatUint(through+1, 10)).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("trimming %s through resourceVersion %d: %w", key, through, err)
	}
	return nil
}

// FollowEvents waits up to block for events of a resource newer than
// resourceVersion after and returns up to limit of them, oldest first; none
// when block passes first. A replica that does not lead follows the leader's
// stream with it.
func (s *Redis) FollowEvents(ctx context.Context, cluster, resource string, after uint64, block time.Duration, limit int64) ([]Event, error) {
	key := EventsKey(cluster, resource)
	// Entry IDs are <resourceVersion>-<n>: start after every n of after.
	from := strconv.FormatUint(after, 10) + "-" + strconv.FormatUint(math.MaxUint64, 10)
	streams, err := s.client.XRead(ctx, &redis.XReadArgs{Streams: []string{key, from}, Count: limit, Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	var out []Event
	for _, st := range streams {
		for _, m := range st.Messages {
			ev, err := decodeEvent(cluster, resource, m)
			if err != nil {
				return nil, fmt.Errorf("reading entry %s of %s: %w", m.ID, key, err)
			}
			out = append(out, ev)
		}
	}
	return out, nil
}

// EventsTop returns the newest ID a resource's stream ever took (its
// last-generated-id, which trimming does not lower) and its
// resourceVersion; "" and 0 when there is no stream.
//
// Why a stream is reset rather than given "*" IDs: an ID that is the
// resourceVersion is what lets a verified frame at v trim exactly the events
// it covers (XTRIM MINID), a warm start and a follower read from a
// resourceVersion on (XRANGE, XREAD) and a watch's replays be refused by
// Redis itself. With "*" IDs each of those would need a scan. The price is
// that XADD refuses every event once the cluster's resourceVersions go
// back below the stream's (an etcd restore); the agent notices that the
// stream holds IDs newer than its cluster can have, and ResetEvents drops
// the stream.
func (s *Redis) EventsTop(ctx context.Context, cluster, resource string) (uint64, string, error) {
	key := EventsKey(cluster, resource)
	info, err := s.client.XInfoStream(ctx, key).Result()
	if err != nil {
		if errors.Is(err, redis.Nil) || strings.Contains(err.Error(), "no such key") {
			return 0, "", nil
		}
		return 0, "", fmt.Errorf("reading the newest ID of %s: %w", key, err)
	}
	ms, _, _ := strings.Cut(info.LastGeneratedID, "-")
	rv, err := strconv.ParseUint(ms, 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("reading the newest ID of %s: %w: %q", key, ErrCorrupt, info.LastGeneratedID)
	}
	return rv, info.LastGeneratedID, nil
}

// resetEventsScript deletes a stream only if its last-generated-id is still
// ARGV[1]: an event appended since the caller looked means the stream moves
// on, and the caller decides again.
var resetEventsScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then
    if info[i+1] == ARGV[1] then
      redis.call('DEL', KEYS[1])
      return 1
    end
    return 0
  end
end
return 0
`)

// ResetEvents deletes a resource's event stream if its newest ID is still
// id (from EventsTop), so that events of a cluster whose resourceVersions
// went back are accepted again. It reports whether it deleted it. Readers
// learn of it from the next frame: it is written with a new generation,
// which followers reload, and they read the new stream from its
// resourceVersion.
func (s *Redis) ResetEvents(ctx context.Context, cluster, resource, id string) (bool, error) {
	key := EventsKey(cluster, resource)
	n, err := resetEventsScript.Run(ctx, s.client, []string{key}, id).Int()
	if err != nil {
		return false, fmt.Errorf("resetting %s: %w", key, err)
	}
	return n == 1, nil
}
