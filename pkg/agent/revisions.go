package agent

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/krm-project/krm/pkg/agent/aggregate"
	"github.com/krm-project/krm/pkg/agent/source"
	"github.com/krm-project/krm/pkg/api"
	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/history"
	"github.com/krm-project/krm/pkg/store"
)

// The agent's side of history (pkg/history): the runner hands it every
// watched revision, with its managers read before managedFields is
// stripped, and every verifying LIST.

// managerNames shares managers' names and operations across resources.
var managerNames history.Interner

// recordHistory records a watch event's revision.
func (r *runner) recordHistory(typ string, obj *unstructured.Unstructured, row *store.Row) {
	if r.hist == nil {
		return
	}
	r.hist.Record(history.Entry{Event: typ, Source: history.Watch, Row: row, Managers: history.Managers(obj.Object, &managerNames)})
}

// listedManagers keeps the managers of an object a LIST decoded, for the
// history's base and its repairs.
func (r *runner) listedManagers(obj *unstructured.Unstructured, row *store.Row) {
	if r.hist == nil {
		return
	}
	if m := history.Managers(obj.Object, &managerNames); m != nil {
		if r.histManagers == nil {
			r.histManagers = map[string][]krmv1alpha1.ManagerEntry{}
		}
		r.histManagers[row.UID] = m
	}
}

// baseHistory makes this run's first LIST the history's base (later ones
// change nothing there).
func (r *runner) baseHistory(rows []*store.Row, rv uint64, at time.Time) {
	if r.hist == nil {
		return
	}
	r.hist.Base(history.Listed{Rows: rows, RV: rv, At: at, Managers: r.histManagers})
	r.histManagers = nil
}

// repairHistory records the drift the aggregator judged as revisions with
// source list: a missed ADDED or MODIFIED as the LIST had the object, a
// missed DELETED at the LIST's resourceVersion with the object as the
// watch last held it. So history repairs exactly what the drift ledger
// names, when it names it; and, the same way, the candidates the
// aggregator gave up on (the watch restarted past their LIST), which the
// views took from the LIST.
func (r *runner) repairHistory(found aggregate.Judged) {
	if r.hist == nil || len(found.Entries) == 0 {
		return
	}
	repairs := make([]history.Entry, 0, len(found.Entries))
	for _, e := range found.Entries {
		row := &store.Row{UID: e.UID, Namespace: e.Namespace, Name: e.Name, ObservedAt: e.FoundAt, Object: e.Object}
		rv := e.VerifiedResourceVersion
		event := history.Added
		switch e.Kind {
		case api.MissedModified:
			event = history.Modified
		case api.MissedDeleted:
			event, rv = history.Deleted, e.ListResourceVersion
		}
		v, err := store.ParseResourceVersion(rv)
		if err != nil {
			r.log.Error("a drift entry without a resourceVersion; history does not record its repair", "resource", r.info.Name,
				"kind", e.Kind, "object", key(e.Namespace, e.Name), "err", err)
			continue
		}
		row.ResourceVersion = v
		repairs = append(repairs, history.Entry{Event: event, Source: history.List, Row: row, Managers: found.Managers[e.UID]})
	}
	r.hist.Repair(repairs)
}

// runHistory loads what the store kept of the history and keeps it trimmed
// and written until ctx is done.
func (r *runner) runHistory(ctx context.Context) {
	if r.hist == nil {
		return
	}
	if err := r.hist.Load(ctx); err != nil {
		r.log.Error("loading the history kept in the store; starting a new one", "resource", r.info.Name, "err", err)
	}
	r.hist.Run(ctx, func(err error) {
		r.log.Warn("writing history to the store", "resource", r.info.Name, "err", err)
	})
}

// newHistory returns resource's history log, nil when history is off.
func newHistory(c Config, keyCluster, resource string, resources int) *history.Log {
	if c.HistoryRetention <= 0 {
		return nil
	}
	opts := history.Options{Resource: resource, Retention: c.HistoryRetention, Now: c.Now}
	if c.HistoryMaxBytes > 0 {
		opts.MaxBytes = max(1, c.HistoryMaxBytes/int64(max(1, resources)))
	}
	if rs, ok := c.Store.(*store.Redis); ok {
		opts.Persist = history.NewRedis(rs.Client(), keyCluster)
	}
	return history.NewLog(opts)
}

// History implements api.Historian.
func (r *runner) History() *history.Log { return r.hist }

// HistorySnapshot implements api.Historian: the view rebuilt from history
// at time at, or at resourceVersion rv when at is zero.
func (r *runner) HistorySnapshot(at time.Time, rv uint64) (*api.Snapshot, error) {
	if r.hist == nil {
		return nil, api.ErrHistoryOff
	}
	var items []history.Item
	var err error
	if at.IsZero() {
		items, err = r.hist.ViewAtResourceVersion(rv)
	} else {
		items, rv, err = r.hist.ViewAt(at)
	}
	if err != nil {
		return nil, err
	}
	rows := make([]*store.Row, 0, len(items))
	for _, it := range items {
		obj, err := source.DecodeObject(it.Object)
		if err != nil {
			return nil, fmt.Errorf("a revision of %s %s in history: %w", r.info.Name, key(it.Namespace, it.Name), err)
		}
		row, err := r.rows.build(obj, nil, store.Verified)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	snap := &api.Snapshot{Rows: store.NewView(rows...), VerifiedResourceVersion: rv}
	snap.Header.Cluster, snap.Header.Resource, snap.Header.Source = r.cluster, r.info.Name, store.Verified
	snap.Header.ResourceVersion, snap.Header.Rows = rv, len(rows)
	if !at.IsZero() {
		snap.Header.VerifiedAt = at
	}
	return snap, nil
}
