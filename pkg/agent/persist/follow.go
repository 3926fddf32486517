package persist

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/krm-project/krm/pkg/agent/aggregate"
	"github.com/krm-project/krm/pkg/agent/source"
	"github.com/krm-project/krm/pkg/store"
)

// FollowStore is what a replica that does not lead needs from the store
// (store.Redis): to notice the leader's new frames, and to wait for its
// events.
type FollowStore interface {
	FrameGeneration(ctx context.Context, cluster, resource string, source store.Source) (string, error)
	FollowEvents(ctx context.Context, cluster, resource string, after uint64, block time.Duration, limit int64) ([]store.Event, error)
	PutStreamState(ctx context.Context, cluster, resource string, st store.StreamState) error
	GetStreamState(ctx context.Context, cluster, resource string) (store.StreamState, error)
}

// streamStateEvery is how often the leader records its watches' state
// for followers; a state older than streamStateStale is a leader gone.
const (
	streamStateEvery = 2 * time.Second
	streamStateStale = 5 * streamStateEvery
)

// PublishStreamStates records, while this replica leads, each resource's
// watch state in the store, so that followers report the leader's stream
// lag, not their own reads of Redis. It writes every streamStateEvery and
// whenever changed fires, until ctx is done.
func (rd *Reader) PublishStreamStates(ctx context.Context, changed <-chan struct{}) {
	t := time.NewTicker(streamStateEvery)
	defer t.Stop()
	for {
		for _, r := range rd.w.resources {
			connected, last := r.Aggregator().StreamState()
			wctx, cancel := context.WithTimeout(ctx, storeTimeout)
			err := rd.follows.PutStreamState(wctx, rd.w.cluster, r.ResourceName(), store.StreamState{Connected: connected, LastStreamAt: last, WrittenAt: time.Now()})
			cancel()
			if err != nil && ctx.Err() == nil {
				rd.log.Debug("recording the watch state for followers failed", "resource", r.ResourceName(), "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-changed:
		}
	}
}

const (
	// followBlock is how long a follower waits for events before it checks
	// for a new frame: a new frame reaches followers within about this.
	followBlock = time.Second
	followPage  = 1000
)

// Follow keeps every resource's views equal to what the leader wrote to
// the store, until ctx is done or StopFollowing.
func (rd *Reader) Follow(ctx context.Context) {
	var wg sync.WaitGroup
	for _, r := range rd.w.resources {
		wg.Go(func() { rd.followResource(ctx, r) })
	}
	wg.Wait()
}

// followResource loads r's frames whenever the leader writes new ones and
// applies the events it appends in between, as they land.
func (rd *Reader) followResource(ctx context.Context, r Resource) {
	agg := r.Aggregator()
	defer rd.followed(func() { agg.SetConnected(false) })
	var f following
	backoff := source.NewBackoff(source.WatchRetryMin, source.RetryMax)
	for ctx.Err() == nil {
		err := rd.followOnce(ctx, r, &f)
		if err == nil {
			backoff.Reset()
			continue
		}
		if ctx.Err() != nil {
			return
		}
		rd.followed(func() {
			agg.SetConnected(false)
			agg.SetError(aggregate.FromStream, err)
		})
		d := backoff.Next()
		rd.log.Warn("following the leader through the store failed; retrying", "resource", r.ResourceName(), "err", err, "retryIn", d)
		if !source.Wait(ctx, d) {
			return
		}
	}
}

// following is where a follower is in the leader's output.
type following struct {
	gen   string // the aggregated frame's generation loaded
	after uint64 // the newest event applied
	// loaded: frames were loaded. Events are applied only over them:
	// without frames (none written yet, or unreadable) they are not the
	// objects, and their resourceVersions may be another timeline's.
	loaded bool
}

func (rd *Reader) followOnce(ctx context.Context, r Resource, f *following) error {
	agg := r.Aggregator()
	gen, err := rd.follows.FrameGeneration(ctx, rd.w.cluster, r.ResourceName(), store.Aggregated)
	if err != nil {
		return err
	}
	if gen != "" && gen != f.gen {
		verified, aggregated, err := rd.frames(ctx, r)
		switch {
		case errors.Is(err, store.ErrVersion), errors.Is(err, store.ErrCorrupt), errors.Is(err, errForeignFrame):
			// The leader writes a good one after its next LIST.
			rd.countUnreadable(r, err)
			rd.log.Warn("skipping a frame of the leader's that does not read back", "resource", r.ResourceName(), "err", err)
			f.gen = gen
		case errors.Is(err, store.ErrNotFound):
			// Written between the two reads: read again.
		case err != nil:
			return err
		default:
			if !rd.followed(func() { agg.Follow(verified, aggregated) }) {
				return ctx.Err()
			}
			f.gen, f.loaded = gen, true
			f.after = max(verified.Header.ResourceVersion, aggregated.Header.ResourceVersion)
		}
	}
	if !f.loaded {
		// Wait for the leader's frames.
		select {
		case <-ctx.Done():
		case <-time.After(followBlock):
		}
		return nil
	}
	evs, err := rd.follows.FollowEvents(ctx, rd.w.cluster, r.ResourceName(), f.after, followBlock, followPage)
	if err != nil {
		return err
	}
	st, stErr := rd.follows.GetStreamState(ctx, rd.w.cluster, r.ResourceName())
	rd.followed(func() {
		agg.SetConnected(true)
		agg.SetError(aggregate.FromStream, nil)
		for _, ev := range evs {
			agg.Apply(ev.Type, ev.Row, aggregate.Received)
			f.after = ev.Row.ResourceVersion
		}
		// The views are as fresh as the leader's watch: report its state.
		// Without one (a leader of an older version), following works
		// is all that can be said.
		if stErr == nil {
			agg.SetLeaderStream(st.Connected && time.Since(st.WrittenAt) < streamStateStale, st.LastStreamAt)
		}
	})
	return nil
}

// followed runs fn, a change a follower makes to the views, unless this
// replica has begun to lead: from then on only its own LISTs and watch
// change them, even while a follower still waits on Redis. It reports
// whether fn ran.
func (rd *Reader) followed(fn func()) bool {
	rd.followMu.Lock()
	defer rd.followMu.Unlock()
	if rd.leads {
		return false
	}
	fn()
	return true
}

// StopFollowing makes every later change a follower would make a no-op:
// this replica leads. A follower may still be waiting on the store for up
// to followBlock; leading does not wait for it.
func (rd *Reader) StopFollowing() {
	rd.followMu.Lock()
	defer rd.followMu.Unlock()
	rd.leads = true
}
