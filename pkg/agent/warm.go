package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/krm-project/krm/pkg/agent/aggregate"
	"github.com/krm-project/krm/pkg/agent/persist"
	"github.com/krm-project/krm/pkg/store"
)

// warmTimeout bounds the warm restart: a store that does not answer must
// not keep the agent from its first LIST.
const warmTimeout = 10 * time.Second

// warmAll loads every resource's stored frames at once (a warm restart).
func (a *Agent) warmAll(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, warmTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, r := range a.runners {
		wg.Go(func() { a.warm(ctx, r) })
	}
	wg.Wait()
}

// warm seeds r's views from the store: the verified frame, the aggregated
// one (stored with it, as a delta on it: each object is decoded once), and
// the events stored after it. They are served at once, marked stale, until
// r's first LIST lands. Frames that do not read back (corrupt, or of
// another version) are logged with their key, counted and discarded: that
// LIST rebuilds them. A store that does not answer is
// degraded; the agent starts cold.
func (a *Agent) warm(ctx context.Context, r *runner) {
	verified, aggregated, err := a.store.GetFrames(ctx, a.keyCluster, r.info.Name)
	if err == nil {
		err = a.foreignFrame(verified)
	}
	if err == nil {
		err = a.foreignFrame(aggregated)
	}
	if err != nil {
		a.storeReadFailed(ctx, r, err)
		return
	}
	r.agg.Load(verified, aggregated)
	from := max(verified.Header.ResourceVersion, aggregated.Header.ResourceVersion)
	r.agg.Replayed(from)
	replayed := a.replay(ctx, r, from)
	a.log.Info("serving stored frames, marked stale, until the first LIST", "resource", r.info.Name,
		"resourceVersion", verified.Header.ResourceVersion, "verifiedAt", verified.Header.VerifiedAt,
		"objects", len(verified.Rows), "replayedEvents", replayed)
}

// storeReadFailed sorts a failed read: nothing stored is normal, an
// unreadable frame is discarded, anything else means the store is down.
func (a *Agent) storeReadFailed(ctx context.Context, r *runner, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
	case errors.Is(err, errForeignFrame):
		a.countUnreadable(r, err)
		a.log.Warn("refusing a stored frame written for another cluster (rebuilt, or etcd restored from elsewhere?); starting cold, the next LIST replaces it",
			"resource", r.info.Name, "err", err)
	case errors.Is(err, store.ErrVersion), errors.Is(err, store.ErrCorrupt):
		a.countUnreadable(r, err)
		a.log.Warn("discarding a stored frame that does not read back; the next LIST rebuilds it", "resource", r.info.Name, "err", err)
	case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
	default:
		a.log.Warn("reading stored frames failed; starting cold", "resource", r.info.Name, "err", err)
		a.persist.Fail(err)
	}
}

// countUnreadable counts a stored frame discarded because err says it does
// not read back (krm_store_frames_unreadable_total).
func (a *Agent) countUnreadable(r *runner, err error) {
	reason := "corrupt"
	switch {
	case errors.Is(err, store.ErrVersion):
		reason = "version"
	case errors.Is(err, errForeignFrame):
		reason = "foreign"
	}
	a.persist.CountUnreadable(r.info.Name, reason)
}

// errForeignFrame is wrapped by foreignFrame's errors.
var errForeignFrame = errors.New("frame of another cluster")

// foreignFrame returns an error wrapping errForeignFrame when f was written
// for a cluster whose kube-system UID is not this one's. Keys carry the UID,
// so only a frame put there by hand, or read under the name because the UID
// could not be read, gets here; serving it would show another cluster's
// objects.
func (a *Agent) foreignFrame(f *store.Frame) error {
	if f.Header.ClusterUID == a.clusterUID {
		return nil
	}
	return fmt.Errorf("%w: the %s %s frame was written for cluster %q (kube-system UID %q), this is %q (kube-system UID %q)",
		errForeignFrame, f.Header.Resource, f.Header.Source, f.Header.Cluster, f.Header.ClusterUID, a.cluster, a.clusterUID)
}

// replay applies the events the store kept after resourceVersion from, in
// order, and returns how many it read. A failure leaves the frames as they
// are: the first LIST brings everything in.
func (a *Agent) replay(ctx context.Context, r *runner, from uint64) int {
	if a.persist.Events() == nil {
		return 0
	}
	n := 0
	for {
		evs, err := a.persist.Events().Events(ctx, a.keyCluster, r.info.Name, from, persist.ReplayPage)
		if err != nil {
			a.storeReadFailed(ctx, r, err)
			return n
		}
		for _, ev := range evs {
			r.agg.Apply(ev.Type, ev.Row, aggregate.Replayed)
			from = ev.Row.ResourceVersion
		}
		n += len(evs)
		if len(evs) < persist.ReplayPage {
			return n
		}
	}
}

// readyDetail says what a ready agent serves short of the best: stored
// frames not yet verified by this run (stale), or a degraded store. "" when
// neither.
func (a *Agent) readyDetail() string {
	var parts, stale []string
	for _, r := range a.runners {
		if r.agg.IsStale() {
			stale = append(stale, r.info.Name)
		}
	}
	if len(stale) > 0 {
		sort.Strings(stale)
		parts = append(parts, "serving stored frames of "+strings.Join(stale, ", ")+" (stale) until their first LIST")
	}
	for _, r := range a.runners {
		if n := r.agg.ForgottenDeletions(); n > 0 {
			parts = append(parts, fmt.Sprintf("%d deletions of %s left out of the drift report while its LISTs fail", n, r.info.Name))
		}
	}
	if d := a.roleDetail(); d != "" {
		parts = append(parts, d)
	}
	if st := a.persist.Status(); !st.Healthy {
		parts = append(parts, fmt.Sprintf("store %s degraded, serving from memory: %s", st.Kind, st.Message))
	}
	if len(parts) == 0 {
		return ""
	}
	return "ok; " + strings.Join(parts, "; ")
}
