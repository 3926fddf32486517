package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/krm-project/krm/pkg/history"
	"github.com/krm-project/krm/pkg/store"
)

// Backend is what the server needs from the agent.
type Backend interface {
	// Resources returns every watched resource's status, in a stable
	// order, with the agent's cluster and store health.
	Resources() ResourceList
	// Resource finds a watched resource by any name kubectl accepts for it:
	// the plural, the singular, a short name, the kind (case-insensitive)
	// or plural.group.
	Resource(name string) (Resource, bool)
	// Ready reports whether every resource has a verified frame; when not,
	// the sentence says which have none yet. A ready backend may say what
	// it serves short of the best (stale frames, a degraded store); /readyz
	// answers 200 with that sentence.
	Ready() (bool, string)
}

// Resource is one watched resource's cached state.
type Resource interface {
	Info() ResourceInfo
	Status() ResourceStatus
	// Snapshot returns an immutable view of the resource.
	Snapshot(view store.Source) *Snapshot
	// Subscribe returns the view's current snapshot and the changes made
	// to it after that snapshot, in order. With from > 0 it also returns
	// the changes after resourceVersion from up to the snapshot (the
	// backlog), or a *TooOldError when the agent no longer holds them all.
	// The channel is closed when ctx is done or when the subscriber falls
	// too far behind; the server then ends the watch with an ERROR event,
	// and the client watches again. Besides changes it carries BOOKMARK
	// progress: the view has every change up to its ResourceVersion.
	Subscribe(ctx context.Context, view store.Source, from uint64) (*Snapshot, []Change, <-chan Change, error)
	// Drift returns the drift ledger and the changes not yet verified.
	Drift() DriftReport
	// TableColumns are the Table columns kube-apiserver sent with the rows'
	// Cells, for a kind whose Table the agent asks kube-apiserver for; nil
	// when the server's own converter prints the kind, or before the first
	// Table arrived.
	TableColumns() []metav1.TableColumnDefinition
}

// Historian is what a Resource with history (pkg/history) adds.
type Historian interface {
	// History is the resource's revision log, nil when history is off.
	History() *history.Log
	// HistorySnapshot rebuilds the view from history at time at, or at
	// resourceVersion rv when at is zero; a *history.TooOldError when
	// history does not reach it, ErrHistoryOff when history is off.
	HistorySnapshot(at time.Time, rv uint64) (*Snapshot, error)
}

// ErrHistoryOff says the agent keeps no history (--history=0).
var ErrHistoryOff = errors.New("the agent keeps no history (--history=0); start it with --history=1h to keep revisions")

// Snapshot is an immutable, consistent view of one resource. Readers must
// not modify it or its rows.
type Snapshot struct {
	// Header.Source is the view; Header.ResourceVersion the view's newest
	// resourceVersion; Header.Rows the number of live rows.
	Header                  store.Header
	VerifiedResourceVersion uint64
	// Rows holds the live objects (never tombstones), sorted by Row.Key():
	// an immutable view that may share structure with later snapshots.
	Rows *store.View
	// StreamConnected and LastStreamAt (the watch's last event or bookmark)
	// give the X-Krm-Stream-Lag header.
	StreamConnected bool
	LastStreamAt    time.Time
	// Stale is true while the rows come from a warm restart's stored
	// frames, not yet verified by this run: the X-Krm-Stale header.
	Stale bool
	// Unavailable says why the resource has nothing to serve yet (no LIST
	// has landed, and no stored frame was loaded); "" when it has. Such a
	// snapshot is empty and must not be served as an empty list.
	Unavailable string
}

// Change is one change to a view, for watchers.
type Change struct {
	// Type is ADDED, MODIFIED, DELETED or BOOKMARK. For DELETED, Row is
	// the last state the view held; BOOKMARK has no rows.
	Type string
	Row  *store.Row
	// Prev is the row before a MODIFIED or DELETED change, so a filtered
	// watch can tell an object entering or leaving its selection.
	Prev *store.Row
	// ResourceVersion orders changes: the view holds every change up to it
	// once this one is applied. It is the row's own resourceVersion for
	// watched events, and the view's for a LIST's repairs.
	ResourceVersion uint64
}

// Change types.
const (
	EventAdded    = "ADDED"
	EventModified = "MODIFIED"
	EventDeleted  = "DELETED"
	EventBookmark = "BOOKMARK"
)

// TooOldError says a watch asked for changes after a resourceVersion older
// than the oldest the agent still holds: kube-apiserver's 410 Gone.
type TooOldError struct {
	Requested, Oldest uint64
}

func (e *TooOldError) Error() string {
	return fmt.Sprintf("too old resource version: %d (%d)", e.Requested, e.Oldest)
}
