package persist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/krm-project/krm/pkg/agent/aggregate"
	"github.com/krm-project/krm/pkg/store"
)

// warmTimeout bounds the warm restart: a store that does not answer must
// not keep the agent from its first LIST.
const warmTimeout = 10 * time.Second

// Reader reads back what a Writer wrote: at start, every resource's frames
// and the events stored after them (a warm restart); on a replica that does
// not lead, the leader's frames and events as they land (Follow). It loads
// them into the resources' aggregators, each object decoded once.
type Reader struct {
	w       *Writer
	follows FollowStore // nil: the store cannot be followed (memory)
	// cluster names the cluster in messages; the Writer's ClusterUID is
	// the identity a frame must carry to be loaded.
	cluster string
	log     *slog.Logger

	// followMu guards leads: once this replica leads, following changes
	// nothing.
	followMu sync.Mutex
	leads    bool
}

// NewReader reads what w writes, for the resources added to w. cluster is
// the cluster's name, for messages.
func NewReader(w *Writer, cluster string) *Reader {
	r := &Reader{w: w, cluster: cluster, log: w.log}
	r.follows, _ = w.store.(FollowStore)
	return r
}

// CanFollow says whether the store can be followed: shared by replicas
// (Redis), keeping the events between frames.
func (rd *Reader) CanFollow() bool { return rd.follows != nil && rd.w.events != nil }

// WarmAll loads every resource's stored frames at once (a warm restart),
// for at most warmTimeout.
func (rd *Reader) WarmAll(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, warmTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, r := range rd.w.resources {
		wg.Go(func() { rd.warm(ctx, r) })
	}
	wg.Wait()
}

// warm seeds r's views from the store: the verified frame, the aggregated
// one (stored with it, as a delta on it: each object is decoded once), and
// the events stored after it. They are served at once, marked stale, until
// r's first LIST lands. Frames that do not read back (corrupt, or of
// another version) are logged with their key, counted and discarded: that
// LIST rebuilds them. A store that does not answer is degraded; the agent
// starts cold.
func (rd *Reader) warm(ctx context.Context, r Resource) {
	verified, aggregated, err := rd.frames(ctx, r)
	if err != nil {
		rd.readFailed(ctx, r, err)
		return
	}
	agg := r.Aggregator()
	agg.Load(verified, aggregated)
	from := max(verified.Header.ResourceVersion, aggregated.Header.ResourceVersion)
	agg.Replayed(from)
	replayed := rd.replay(ctx, r, from)
	rd.log.Info("serving stored frames, marked stale, until the first LIST", "resource", r.ResourceName(),
		"resourceVersion", verified.Header.ResourceVersion, "verifiedAt", verified.Header.VerifiedAt,
		"objects", len(verified.Rows), "replayedEvents", replayed)
}

// frames reads r's verified and aggregated frames, refusing another
// cluster's.
func (rd *Reader) frames(ctx context.Context, r Resource) (verified, aggregated *store.Frame, err error) {
	if verified, aggregated, err = rd.w.store.GetFrames(ctx, rd.w.cluster, r.ResourceName()); err != nil {
		return nil, nil, err
	}
	if err := rd.foreignFrame(verified); err != nil {
		return nil, nil, err
	}
	if err := rd.foreignFrame(aggregated); err != nil {
		return nil, nil, err
	}
	return verified, aggregated, nil
}

// readFailed sorts a failed read: nothing stored is normal, an unreadable
// frame is discarded, anything else means the store is down.
func (rd *Reader) readFailed(ctx context.Context, r Resource, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
	case errors.Is(err, errForeignFrame):
		rd.countUnreadable(r, err)
		rd.log.Warn("refusing a stored frame written for another cluster (rebuilt, or etcd restored from elsewhere?); starting cold, the next LIST replaces it",
			"resource", r.ResourceName(), "err", err)
	case errors.Is(err, store.ErrVersion), errors.Is(err, store.ErrCorrupt):
		rd.countUnreadable(r, err)
		rd.log.Warn("discarding a stored frame that does not read back; the next LIST rebuilds it", "resource", r.ResourceName(), "err", err)
	case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
	default:
		rd.log.Warn("reading stored frames failed; starting cold", "resource", r.ResourceName(), "err", err)
		rd.w.Fail(err)
	}
}

// countUnreadable counts a stored frame discarded because err says it does
// not read back (krm_store_frames_unreadable_total).
func (rd *Reader) countUnreadable(r Resource, err error) {
	reason := "corrupt"
	switch {
	case errors.Is(err, store.ErrVersion):
		reason = "version"
	case errors.Is(err, errForeignFrame):
		reason = "foreign"
	}
	rd.w.CountUnreadable(r.ResourceName(), reason)
}

// errForeignFrame is wrapped by foreignFrame's errors.
var errForeignFrame = errors.New("frame of another cluster")

// foreignFrame returns an error wrapping errForeignFrame when f was written
// for a cluster whose kube-system UID is not this one's. Keys carry the UID,
// so only a frame put there by hand, or read under the name because the UID
// could not be read, gets here; serving it would show another cluster's
// objects.
func (rd *Reader) foreignFrame(f *store.Frame) error {
	if f.Header.ClusterUID == rd.w.ClusterUID {
		return nil
	}
	return fmt.Errorf("%w: the %s %s frame was written for cluster %q (kube-system UID %q), this is %q (kube-system UID %q)",
		errForeignFrame, f.Header.Resource, f.Header.Source, f.Header.Cluster, f.Header.ClusterUID, rd.cluster, rd.w.ClusterUID)
}

// replay applies the events the store kept after resourceVersion from, in
// order, and returns how many it read. A failure leaves the frames as they
// are: the first LIST brings everything in.
func (rd *Reader) replay(ctx context.Context, r Resource, from uint64) int {
	if rd.w.events == nil {
		return 0
	}
	n := 0
	for {
		evs, err := rd.w.events.Events(ctx, rd.w.cluster, r.ResourceName(), from, replayPage)
		if err != nil {
			rd.readFailed(ctx, r, err)
			return n
		}
		for _, ev := range evs {
			r.Aggregator().Apply(ev.Type, ev.Row, aggregate.Replayed)
			from = ev.Row.ResourceVersion
		}
		n += len(evs)
		if len(evs) < replayPage {
			return n
		}
	}
}
