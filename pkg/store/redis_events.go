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

// eventLayout is the version of a stream entry's fields.
const eventLayout = "1"

// Event is one watch event as kept in a resource's event stream.
type Event struct {
	Cluster  string
	Resource string
	// Type is ADDED, MODIFIED or DELETED.
	Type string
	// Row is the object; its ResourceVersion orders the stream.
	Row *Row
}

// AppendEvents adds events to their resources' streams in one round trip.
// Each XADD costs the same whatever the size of the frame. An event older
// than the newest one already in its stream is left out (a stream is kept in
// resourceVersion order): skipped counts those. Its ID is the event's
// resourceVersion, so a verified frame at resourceVersion v trims exactly
// the events it covers.
func (s *Redis) AppendEvents(ctx context.Context, events []Event) (skipped int, err error) {
	if len(events) == 0 {
		return 0, nil
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(events))
	for i, ev := range events {
		var row bytes.Buffer
		if err := gob.NewEncoder(&row).Encode(ev.Row); err != nil {
			return 0, fmt.Errorf("encoding %s event of %s %s: %w", ev.Type, ev.Resource, ev.Row.Key(), err)
		}
		cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: EventsKey(ev.Cluster, ev.Resource),
			MaxLen: s.opts.MaxEvents,
			Approx: true,
			ID:     strconv.FormatUint(ev.Row.ResourceVersion, 10) + "-*",
			Values: []any{"v", eventLayout, "type", ev.Type, "row", row.Bytes()},
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
	if v, _ := m.Values["v"].(string); v != eventLayout {
		return Event{}, fmt.Errorf("%w: event layout %q (this build reads %s)", ErrVersion, v, eventLayout)
	}
	typ, _ := m.Values["type"].(string)
	switch typ {
	case "ADDED", "MODIFIED", "DELETED":
	default:
		return Event{}, fmt.Errorf("%w: event type %q", ErrCorrupt, typ)
	}
	data, _ := m.Values["row"].(string)
	row := new(Row)
	if err := gob.NewDecoder(strings.NewReader(data)).Decode(row); err != nil {
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
