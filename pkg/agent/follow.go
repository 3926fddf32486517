package agent

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/krm-project/krm/pkg/agent/aggregate"
	"github.com/krm-project/krm/pkg/agent/persist"
	"github.com/krm-project/krm/pkg/agent/source"
	"github.com/krm-project/krm/pkg/store"
)

// followStore is what a replica that does not lead needs from the store
// (store.Redis): to notice the leader's new frames, and to wait for its
// events.
type followStore interface {
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

// publishStreamStates records, while this replica leads, each resource's
// watch state in the store, so that followers report the leader's stream
// lag, not their own reads of Redis.
func (a *Agent) publishStreamStates(ctx context.Context, changed <-chan struct{}) {
	t := time.NewTicker(streamStateEvery)
	defer t.Stop()
	for {
		for _, r := range a.runners {
			connected, last := r.agg.StreamState()
			wctx, cancel := context.WithTimeout(ctx, persist.StoreTimeout)
			err := a.follows.PutStreamState(wctx, a.keyCluster, r.info.Name, store.StreamState{Connected: connected, LastStreamAt: last, WrittenAt: time.Now()})
			cancel()
			if err != nil && ctx.Err() == nil {
				a.log.Debug("recording the watch state for followers failed", "resource", r.info.Name, "err", err)
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

// follow keeps every resource's views equal to what the leader wrote to
// the store, until ctx is done.
func (a *Agent) follow(ctx context.Context) {
	var wg sync.WaitGroup
	for _, r := range a.runners {
		wg.Go(func() { a.followResource(ctx, r) })
	}
	wg.Wait()
}

// followResource loads r's frames whenever the leader writes new ones and
// applies the events it appends in between, as they land.
func (a *Agent) followResource(ctx context.Context, r *runner) {
	defer a.followed(func() { r.agg.SetConnected(false) })
	var f following
	backoff := source.NewBackoff(source.WatchRetryMin, source.RetryMax)
	for ctx.Err() == nil {
		err := a.followOnce(ctx, r, &f)
		if err == nil {
			backoff.Reset()
			continue
		}
		if ctx.Err() != nil {
			return
		}
		a.followed(func() {
			r.agg.SetConnected(false)
			r.agg.SetError(aggregate.FromStream, err)
		})
		d := backoff.Next()
		a.log.Warn("following the leader through the store failed; retrying", "resource", r.info.Name, "err", err, "retryIn", d)
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

func (a *Agent) followOnce(ctx context.Context, r *runner, f *following) error {
	gen, err := a.follows.FrameGeneration(ctx, a.keyCluster, r.info.Name, store.Aggregated)
	if err != nil {
		return err
	}
	if gen != "" && gen != f.gen {
		verified, aggregated, err := a.leaderFrames(ctx, r)
		switch {
		case errors.Is(err, store.ErrVersion), errors.Is(err, store.ErrCorrupt), errors.Is(err, errForeignFrame):
			// The leader writes a good one after its next LIST.
			a.countUnreadable(r, err)
			a.log.Warn("skipping a frame of the leader's that does not read back", "resource", r.info.Name, "err", err)
			f.gen = gen
		case errors.Is(err, store.ErrNotFound):
			// Written between the two reads: read again.
		case err != nil:
			return err
		default:
			if !a.followed(func() { r.agg.Follow(verified, aggregated) }) {
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
	evs, err := a.follows.FollowEvents(ctx, a.keyCluster, r.info.Name, f.after, followBlock, followPage)
	if err != nil {
		return err
	}
	st, stErr := a.follows.GetStreamState(ctx, a.keyCluster, r.info.Name)
	a.followed(func() {
		r.agg.SetConnected(true)
		r.agg.SetError(aggregate.FromStream, nil)
		for _, ev := range evs {
			r.agg.Apply(ev.Type, ev.Row, aggregate.Received)
			f.after = ev.Row.ResourceVersion
		}
		// The views are as fresh as the leader's watch: report its state.
		// Without one (a leader of an older version), following works
		// is all that can be said.
		if stErr == nil {
			r.agg.SetLeaderStream(st.Connected && time.Since(st.WrittenAt) < streamStateStale, st.LastStreamAt)
		}
	})
	return nil
}

// followed runs fn, a change a follower makes to the views, unless this
// replica has begun to lead: from then on only its own LISTs and watch
// change them, even while a follower still waits on Redis. It reports
// whether fn ran.
func (a *Agent) followed(fn func()) bool {
	a.followMu.Lock()
	defer a.followMu.Unlock()
	if a.leads {
		return false
	}
	fn()
	return true
}

// stopFollowing makes followed refuse every later change.
func (a *Agent) stopFollowing() {
	a.followMu.Lock()
	defer a.followMu.Unlock()
	a.leads = true
}

func (a *Agent) leaderFrames(ctx context.Context, r *runner) (verified, aggregated *store.Frame, err error) {
	if verified, aggregated, err = a.store.GetFrames(ctx, a.keyCluster, r.info.Name); err != nil {
		return nil, nil, err
	}
	if err := a.foreignFrame(verified); err != nil {
		return nil, nil, err
	}
	if err := a.foreignFrame(aggregated); err != nil {
		return nil, nil, err
	}
	return verified, aggregated, nil
}

// roleDetail is the leader election's part of /readyz's sentence.
func (a *Agent) roleDetail() string {
	role, leader := a.election.status()
	if role != roleFollower {
		return ""
	}
	if leader == "" {
		return "following the leader through the store; no leader yet"
	}
	return "following the leader " + leader + " through the store"
}
