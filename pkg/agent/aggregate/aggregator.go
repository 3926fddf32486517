package aggregate

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/krm-project/krm/pkg/api"
	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/store"
)

// Watch event types as the Aggregator receives them.
const (
	added    = api.EventAdded
	modified = api.EventModified
	deleted  = api.EventDeleted
)

// ledgerSize bounds the drift ledger kept per resource.
const ledgerSize = 1000

// subscriberBuffer is how many changes a watcher may fall behind before it
// is dropped and told to watch again.
const subscriberBuffer = 4096

// Aggregator holds one resource's views and implements DESIGN.md's
// semantics:
//
//   - verified: the last LIST, as of verifiedRV;
//   - aggregated: verified plus every streamed event newer than verifiedRV,
//     applied in order; rows say whether they are verified or streamed;
//   - streamed: what the watch built. After each LIST it is repaired from the
//     aggregated view, and both then apply the same events, so the two share
//     one map (current). Deleted objects are kept as tombstones until the next
//     LIST, to be shown and diffed, never served.
//
// Per-event work is a few map operations by UID and one B-tree insert by
// namespace/name: O(log n) in the number of objects (BenchmarkApply). A
// LIST costs O(n): it judges drift and rebuilds the views.
type Aggregator struct {
	resource string
	cluster  string
	now      func() time.Time

	mu         sync.RWMutex
	verified   *rowSet // source verified
	verifiedRV uint64
	verifiedAt time.Time
	// mode is where the views come from: nothing yet, a previous run's
	// stored frames, another replica's, or this run's LISTs.
	mode mode

	current    *rowSet               // live rows of the aggregated/streamed view
	tombstones map[string]*store.Row // deleted since the last LIST
	// tombOrder is the tombstones' UIDs, oldest first (with UIDs of
	// objects created again since, skipped when met), to drop the oldest
	// when there are more than tombstoneLimit.
	tombOrder []string
	// forgotten counts tombstones dropped since the last LIST;
	// forgottenRV is the newest resourceVersion then, which a LIST must
	// reach before the views can do without them.
	forgotten   int64
	forgottenRV uint64
	changed     map[string]struct{} // uids changed since the last LIST
	// log keeps the events newer than verifiedRV, the newest per object:
	// the next LIST may be older than some of them, and they are applied
	// again on top of it.
	log replayLog

	streamRV        uint64 // newest resourceVersion the watch delivered
	streamConnected bool
	lastStreamAt    time.Time // last event or bookmark
	lastEventAt     time.Time
	events          int64
	perSecond       eventRate
	verifications   int64
	lastDrift       api.DriftCounts
	totalDrift      api.DriftCounts
	ledger          []api.DriftEntry
	lastError       [2]string // by ErrorSource
	// pending are LISTs' drift candidates waiting for the watch to deliver
	// up to their resourceVersion (judge.go), oldest first; pendingCount
	// sums their candidates, and unjudged counts those given up on.
	pending      []*judgment
	pendingCount int
	unjudged     int64
	// OnDrift, when set, is told of each drift recorded, and of the
	// candidates given up on (under mu: it must not call the Aggregator).
	OnDrift func(found Judged)

	// streamChanged, when set, is told (without blocking) each time the
	// watch connects or disconnects: the HA leader records it for
	// followers at once.
	streamChanged chan<- struct{}
	// viewMu serialises the views' snapshot caches (store.Rows.View)
	// between readers that share mu's read lock.
	viewMu sync.Mutex
	subs   map[*subscriber]struct{}
	// hist keeps the aggregated view's last changes for watches that
	// resume from a resourceVersion.
	hist *changeHistory
}

// mode is where an aggregator's views come from. It moves
//
//	empty -> warm (Load) -> live (Verify)
//	empty -> live (Verify)
//	any -> following (Follow) -> live (Verify, once this replica leads)
//
// and a LIST older than the last (etcd restored) starts live over.
type mode int

const (
	// empty: no LIST has landed and no frames were loaded.
	empty mode = iota
	// warm: frames a previous run stored, served marked stale until this
	// run's first LIST.
	warm
	// following: another replica's frames and events (leader election).
	following
	// live: this run's LISTs and watch.
	live
)

// eventRate counts events per second over the last minute, in O(1) per
// event: slot i holds the count of a second s with s%60 == i.
type eventRate struct {
	second [60]int64
	count  [60]int64
}

func (e *eventRate) add(t time.Time) {
	s := t.Unix()
	i := s % 60
	if e.second[i] != s {
		e.second[i], e.count[i] = s, 0
	}
	e.count[i]++
}

// lastMinute sums the events of the 60 seconds up to now.
func (e *eventRate) lastMinute(now time.Time) int64 {
	cut := now.Unix() - 60
	var n int64
	for i := range e.second {
		if e.second[i] > cut {
			n += e.count[i]
		}
	}
	return n
}

type event struct {
	typ string
	row *store.Row
}

type subscriber struct {
	view store.Source
	ch   chan api.Change
}

func New(cluster, resource string, now func() time.Time) *Aggregator {
	return &Aggregator{
		resource:   resource,
		cluster:    cluster,
		now:        now,
		verified:   newRowSet(0),
		current:    newRowSet(0),
		tombstones: map[string]*store.Row{},
		changed:    map[string]struct{}{},
		subs:       map[*subscriber]struct{}{},
		hist:       newChangeHistory(historySize),
	}
}

// Origin says where an event comes from.
type Origin int

const (
	// Received: this run's watch, or the leader's stream a follower
	// follows. It is counted in status and rates, and settles drift
	// judgments waiting for the watch.
	Received Origin = iota
	// Replayed: the store's events after its frames, on a warm start. Not
	// counted: status and rates are this run's.
	Replayed
)

// Apply records one event. Events at or below the verified resourceVersion
// are already reflected by the LIST (a resumed or restarted watch replays
// them) and change nothing.
func (a *Aggregator) Apply(typ string, row *store.Row, from Origin) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if from == Received {
		a.lastStreamAt = now
		if len(a.pending) > 0 {
			a.judgeEvent(typ, row.UID, row.ResourceVersion)
		}
	}
	if row.ResourceVersion > a.streamRV {
		a.streamRV = row.ResourceVersion
		a.judgeUpTo(a.streamRV)
	}
	if row.ResourceVersion <= a.verifiedRV {
		return
	}
	if from == Received {
		a.events++
		a.perSecond.add(now)
		a.lastEventAt = now
	}
	a.log.add(event{typ: typ, row: row})
	if ch, ok := a.applyLocked(typ, row); ok {
		a.emit(ch)
	}
}

// progress records a bookmark: the watch has seen everything up to rv.
func (a *Aggregator) Progress(rv uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lastStreamAt = a.now()
	if rv > a.streamRV {
		a.streamRV = rv
		a.judgeUpTo(rv)
		a.bookmark(rv)
	}
}

func (a *Aggregator) SetConnected(connected bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	changed := a.streamConnected != connected
	a.streamConnected = connected
	if connected {
		a.lastStreamAt = a.now()
	}
	if changed && a.streamChanged != nil {
		select {
		case a.streamChanged <- struct{}{}:
		default:
		}
	}
}

// streamState is the watch's state: connected, and its last event or
// bookmark.
func (a *Aggregator) StreamState() (bool, time.Time) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.streamConnected, a.lastStreamAt
}

// setLeaderStream makes a follower's stream state the leader's.
func (a *Aggregator) SetLeaderStream(connected bool, last time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.streamConnected, a.lastStreamAt = connected, last
}

// ErrorSource says which part of a resource an error came from.
type ErrorSource int

const (
	FromList   ErrorSource = iota // the verifier's LIST
	FromStream                    // the watch, or following the leader
)

// setError records the last outcome of one part: nil clears only that
// part's error, so a LIST that succeeds does not hide a watch that keeps
// failing (a ServiceAccount without the watch verb, say).
func (a *Aggregator) SetError(from ErrorSource, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	a.lastError[from] = msg
}

// lastErrors joins the parts' errors for status.
func (a *Aggregator) lastErrors() string {
	var msgs []string
	for _, m := range a.lastError {
		if m != "" {
			msgs = append(msgs, m)
		}
	}
	return strings.Join(msgs, "; ")
}

// resumeFrom is where the watch should (re)start: the newest resourceVersion
// it delivered, or the last LIST's.
func (a *Aggregator) ResumeFrom() uint64 {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return max(a.streamRV, a.verifiedRV)
}

// tombstoneLimit bounds the tombstones (and their events in the log) kept
// between LISTs: a deleted object's row is kept to show, diff and replay
// its deletion, and while LISTs fail, churn would otherwise grow them
// without end. Beyond max(tombstoneFloor, live objects), the oldest are
// dropped.
const tombstoneFloor = 4096

// boundTombstones drops the oldest tombstones beyond the limit. Their
// deletions stay applied to the views; what is lost is their place in the
// drift report and their replay over a LIST older than them, so the next
// LIST that lands must be at least as new as forgottenRV (needsRelist).
func (a *Aggregator) boundTombstones() {
	limit := max(tombstoneFloor, a.current.len())
	for len(a.tombstones) > limit && len(a.tombOrder) > 0 {
		uid := a.tombOrder[0]
		a.tombOrder[0] = ""
		a.tombOrder = a.tombOrder[1:]
		if _, ok := a.tombstones[uid]; !ok {
			continue // created again since
		}
		delete(a.tombstones, uid)
		delete(a.changed, uid)
		a.log.forget(uid)
		a.forgotten++
		a.forgottenRV = max(a.streamRV, a.forgottenRV)
	}
	// tombOrder keeps UIDs of tombstones removed by a re-creation: compact
	// it when it has grown well past what it tracks.
	if len(a.tombOrder) > 2*len(a.tombstones)+1024 {
		kept := a.tombOrder[:0]
		for _, uid := range a.tombOrder {
			if _, ok := a.tombstones[uid]; ok {
				kept = append(kept, uid)
			}
		}
		clear(a.tombOrder[len(kept):])
		a.tombOrder = kept
	}
}

// forgottenDeletions is status's ForgottenDeletions, without building the
// rest of the status.
func (a *Aggregator) ForgottenDeletions() int64 {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.forgotten
}

// needsRelist reports that tombstones were dropped after the LIST that
// just landed began: deletions it predates may show again until a newer
// LIST lands.
func (a *Aggregator) NeedsRelist() bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.forgotten > 0 && a.verifiedRV < a.forgottenRV
}

// applyLocked changes the current view; it reports the change for watchers,
// or false when the event is older than what the view holds.
func (a *Aggregator) applyLocked(typ string, row *store.Row) (api.Change, bool) {
	old := a.current.get(row.UID)
	if old != nil && old.ResourceVersion >= row.ResourceVersion {
		return api.Change{}, false
	}
	if t := a.tombstones[row.UID]; t != nil && t.ResourceVersion >= row.ResourceVersion {
		return api.Change{}, false
	}
	a.changed[row.UID] = struct{}{}
	if typ == deleted {
		tomb := *row
		tomb.Deleted = true
		tomb.Source = store.Streamed
		a.current.delete(row.UID)
		a.tombstones[row.UID] = &tomb
		a.tombOrder = append(a.tombOrder, row.UID)
		a.boundTombstones()
		if old == nil {
			return api.Change{}, false
		}
		return api.Change{Type: deleted, Row: row, Prev: old, ResourceVersion: row.ResourceVersion}, true
	}
	delete(a.tombstones, row.UID)
	a.current.set(row)
	if old == nil {
		return api.Change{Type: added, Row: row, ResourceVersion: row.ResourceVersion}, true
	}
	return api.Change{Type: modified, Row: row, Prev: old, ResourceVersion: row.ResourceVersion}, true
}

// Verification is one LIST handed to the Aggregator.
type Verification struct {
	Rows []*store.Row // source verified
	RV   uint64
	At   time.Time
	// managers are the field managers of the rows the LIST decoded, by
	// UID (nil without history): drift found hands them on with its
	// entries.
	Managers map[string][]krmv1alpha1.ManagerEntry
}

// verify lands a LIST: it records the drift it exposes, makes it the
// verified view, rebuilds the aggregated view from it and the newer events,
// and so repairs the streamed view. It returns the drift found.
func (a *Aggregator) Verify(v Verification) api.DriftCounts {
	a.mu.Lock()
	defer a.mu.Unlock()

	// The watch has delivered everything up to delivered: what the LIST
	// shows at or below it and the stream lacks was missed. The rest waits
	// for the watch (judge.go).
	delivered := a.streamRV
	// A LIST older than the last one: etcd was restored from a backup, or
	// the cluster rebuilt. What the views held is from another timeline.
	backwards := a.mode != empty && v.RV < a.verifiedRV
	judge := a.mode == live && !backwards // see Judging
	seq := a.verifications + 1
	var found []api.DriftEntry
	wait := &judgment{rv: v.RV, seq: seq, cands: map[string]*driftCandidate{}}
	listRV := store.FormatResourceVersion(v.RV)
	entry := func(kind string, streamed, listed *store.Row) {
		e := api.DriftEntry{Kind: kind, FoundAt: v.At, ListResourceVersion: listRV}
		r := listed
		if r == nil {
			r = streamed
		}
		e.UID, e.Namespace, e.Name, e.Object = r.UID, r.Namespace, r.Name, r.Object
		if streamed != nil {
			e.StreamedResourceVersion = store.FormatResourceVersion(streamed.ResourceVersion)
		}
		if listed != nil {
			e.VerifiedResourceVersion = store.FormatResourceVersion(listed.ResourceVersion)
		}
		if listed != nil && listed.ResourceVersion > delivered || listed == nil && v.RV > delivered {
			need := uint64(0)
			if listed != nil {
				need = listed.ResourceVersion
			}
			wait.cands[r.UID] = &driftCandidate{entry: e, rv: need, managers: v.Managers[r.UID]}
			return
		}
		found = append(found, e)
	}

	listed := newRowSet(len(v.Rows))
	for _, l := range v.Rows {
		s := a.current.get(l.UID)
		if judge {
			switch {
			case s == nil && a.tombstones[l.UID] == nil:
				entry(api.MissedAdded, nil, l)
			case s != nil && s.ResourceVersion < l.ResourceVersion:
				entry(api.MissedModified, s, l)
			}
		}
		// Keep one copy of each object's bytes: a row the LIST confirms
		// keeps the bytes the views already hold.
		if s != nil && s.ResourceVersion == l.ResourceVersion {
			l = confirmed(s)
		} else if v := a.verified.get(l.UID); v != nil && v.ResourceVersion == l.ResourceVersion {
			l = v
		}
		// The runner may hand over a streamed row it found at the LIST's
		// resourceVersion; in the verified view it is verified.
		l = confirmed(l)
		listed.set(l)
	}
	if judge {
		for uid, s := range a.current.byUID {
			if listed.get(uid) == nil && s.ResourceVersion <= v.RV {
				entry(api.MissedDeleted, s, nil)
			}
		}
	}

	restart := a.mode != live || backwards
	if a.mode == warm || a.mode == following || backwards {
		// The frames and events loaded from the store are an earlier run's
		// or another replica's, or etcd's revisions went back: this LIST
		// supersedes them all, and the stream's resourceVersion drops back
		// to it, so events after it are taken and frames say where the
		// cluster is.
		a.resetLocked()
		a.streamRV = v.RV
	}
	oldCurrent, oldVerified := a.current, a.verified
	a.verified = listed
	a.verifiedRV, a.verifiedAt = v.RV, v.At
	a.mode = live
	// The aggregated view starts as the verified one, sharing its rows and
	// its tree's structure, and takes the newer events on top.
	a.current = listed.clone()
	a.clearChanges()
	if v.RV >= a.forgottenRV {
		a.forgotten, a.forgottenRV = 0, 0
	}
	a.log.keepAfter(v.RV, func(e event) { a.applyLocked(e.typ, e.row) })
	a.verifications = seq
	a.lastDrift = api.DriftCounts{}
	a.recordDrift(found, v.Managers, seq, v.RV)
	a.deferJudgment(wait)
	a.rebuilt(oldCurrent, oldVerified, restart)
	return a.lastDrift
}

// rebuilt tells watchers how the views changed when they were rebuilt from a
// LIST or the leader's frames, and records the aggregated view's changes
// for watches that resume. restart says the old views were another run's or
// replica's (or empty): watches cannot resume across that.
func (a *Aggregator) rebuilt(oldCurrent, oldVerified *rowSet, restart bool) {
	head := max(a.verifiedRV, a.streamRV)
	changes := diffViews(oldCurrent.byUID, a.current.byUID)
	// etcd's revisions went back (a restore), or the repair is larger than
	// the history: a watch from before it must relist, as after compaction.
	if restart || head < a.hist.last || len(changes) > len(a.hist.ring)/2 {
		a.hist.reset(head)
		for _, ch := range changes {
			ch.ResourceVersion = head
			a.publish(ch, store.Aggregated, store.Streamed)
		}
	} else {
		for _, ch := range changes {
			ch.ResourceVersion = head
			a.emit(ch)
		}
	}
	if len(a.subs) > 0 {
		for _, ch := range diffViews(oldVerified.byUID, a.verified.byUID) {
			ch.ResourceVersion = a.verifiedRV
			a.publish(ch, store.Verified)
		}
	}
}

// rowAt returns the row the views hold for uid at resourceVersion rv, or nil.
func (a *Aggregator) RowAt(uid, rv string) *store.Row {
	v, err := store.ParseResourceVersion(rv)
	if err != nil {
		return nil
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	if r := a.current.get(uid); r != nil && r.ResourceVersion == v {
		return r
	}
	if r := a.verified.get(uid); r != nil && r.ResourceVersion == v {
		return r
	}
	return nil
}

// confirmed returns r marked as verified, sharing its bytes.
func confirmed(r *store.Row) *store.Row {
	if r.Source == store.Verified {
		return r
	}
	c := *r
	c.Source = store.Verified
	return &c
}

// diffViews lists the changes that turn view old into view new.
func diffViews(old, new map[string]*store.Row) []api.Change {
	var out []api.Change
	for uid, n := range new {
		o := old[uid]
		switch {
		case o == nil:
			out = append(out, api.Change{Type: added, Row: n})
		case o.ResourceVersion != n.ResourceVersion:
			out = append(out, api.Change{Type: modified, Row: n, Prev: o})
		}
	}
	for uid, o := range old {
		if new[uid] == nil {
			out = append(out, api.Change{Type: deleted, Row: o, Prev: o})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Row.Key() < out[j].Row.Key() })
	return out
}

// load seeds the views from frames kept in a store (a warm restart). They
// are served at once but marked stale, and the next LIST judges no drift
// against them.
func (a *Aggregator) Load(verified, aggregated *store.Frame) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.verified, a.current = framesViews(verified, aggregated)
	a.verifiedRV = verified.Header.ResourceVersion
	a.verifiedAt = verified.Header.VerifiedAt
	a.mode = warm
	a.hist.reset(max(a.verifiedRV, a.streamRV))
}

// framesViews builds the views from stored frames (a warm restart, or the
// leader's), holding one copy of each object: a row of the aggregated frame
// that the verified frame holds at the same resourceVersion is the verified
// row, and the duplicate decoded from the aggregated frame is dropped. With
// no aggregated frame, the aggregated view is the verified one.
func framesViews(verified, aggregated *store.Frame) (ver, cur *rowSet) {
	ver = rowSetOf(verified.Rows)
	if aggregated == nil {
		return ver, ver.clone()
	}
	cur = newRowSet(len(aggregated.Rows))
	for _, r := range aggregated.Rows {
		if r.Deleted {
			continue
		}
		if v := ver.get(r.UID); v != nil && v.ResourceVersion == r.ResourceVersion {
			r = v
		}
		cur.set(r)
	}
	return ver, cur
}

// frames returns the verified and aggregated frames, for the store.
func (a *Aggregator) Frames() (verified, aggregated *store.Frame) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	h := store.Header{Cluster: a.cluster, Resource: a.resource, ResourceVersion: a.verifiedRV, VerifiedAt: a.verifiedAt}
	verified = &store.Frame{Header: h}
	verified.Header.Source = store.Verified
	verified.Rows = a.viewLocked(store.Verified).Slice()
	aggregated = &store.Frame{Header: h}
	aggregated.Header.Source = store.Aggregated
	aggregated.Header.ResourceVersion = max(a.verifiedRV, a.streamRV)
	aggregated.Rows = a.viewLocked(store.Aggregated).Slice()
	return verified, aggregated
}

// viewLocked returns an immutable snapshot of the view's live rows, in key
// order: O(1), and the same View until the view changes. The caller holds
// a.mu (read or write); viewMu guards the views' snapshot caches between
// readers holding only the read lock.
func (a *Aggregator) viewLocked(view store.Source) *store.View {
	a.viewMu.Lock()
	defer a.viewMu.Unlock()
	if view == store.Verified {
		return a.verified.rows.View()
	}
	return a.current.rows.View()
}

func (a *Aggregator) snapshotLocked(view store.Source) *api.Snapshot {
	rows := a.viewLocked(view)
	rv := max(a.verifiedRV, a.streamRV)
	if view == store.Verified {
		rv = a.verifiedRV
	}
	snap := &api.Snapshot{
		Header: store.Header{
			Version: store.FrameVersion, Cluster: a.cluster, Resource: a.resource, Source: view,
			ResourceVersion: rv, VerifiedAt: a.verifiedAt, Rows: rows.Len(),
		},
		VerifiedResourceVersion: a.verifiedRV,
		Rows:                    rows,
		StreamConnected:         a.streamConnected,
		LastStreamAt:            a.lastStreamAt,
		Stale:                   a.mode == warm,
	}
	if a.mode == empty {
		snap.Unavailable = "the krm agent has not listed " + a.resource + " yet"
		if e := a.lastError[FromList]; e != "" {
			snap.Unavailable += ": " + e
		}
	}
	return snap
}

func (a *Aggregator) Snapshot(view store.Source) *api.Snapshot {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.snapshotLocked(view)
}

// subscribe registers a watcher of view; the channel closes when ctx ends
// or the watcher falls subscriberBuffer changes behind. With from > 0 it
// returns the aggregated view's changes after from up to the snapshot.
func (a *Aggregator) Subscribe(ctx context.Context, view store.Source, from uint64) (*api.Snapshot, []api.Change, <-chan api.Change, error) {
	s := &subscriber{view: view, ch: make(chan api.Change, subscriberBuffer)}
	a.mu.Lock()
	snap := a.snapshotLocked(view)
	var backlog []api.Change
	if from > 0 && from < snap.Header.ResourceVersion {
		var ok bool
		if view == store.Verified {
			// The verified view changes only by whole LISTs and keeps no
			// history: a watch of it resumes only from its current one.
			ok = false
		} else {
			backlog, ok = a.hist.since(from)
		}
		if !ok {
			a.mu.Unlock()
			oldest := a.hist.floor
			if view == store.Verified {
				oldest = snap.Header.ResourceVersion
			}
			return nil, nil, nil, &api.TooOldError{Requested: from, Oldest: oldest}
		}
	}
	a.subs[s] = struct{}{}
	a.mu.Unlock()
	go func() {
		<-ctx.Done()
		a.mu.Lock()
		defer a.mu.Unlock()
		if _, ok := a.subs[s]; ok {
			delete(a.subs, s)
			close(s.ch)
		}
	}()
	return snap, backlog, s.ch, nil
}

// emit records a change of the aggregated view and sends it to the
// watchers of the aggregated and streamed views.
func (a *Aggregator) emit(ch api.Change) {
	a.publish(a.hist.add(ch), store.Aggregated, store.Streamed)
}

// bookmark tells the aggregated and streamed views' watchers that they have
// every change up to rv. A watcher with no room skips it: the next change
// or bookmark carries the news.
func (a *Aggregator) bookmark(rv uint64) {
	if rv < a.hist.last {
		return
	}
	ch := api.Change{Type: api.EventBookmark, ResourceVersion: rv}
	for s := range a.subs {
		if s.view == store.Verified {
			continue
		}
		select {
		case s.ch <- ch:
		default:
		}
	}
}

// publish sends ch to the subscribers of the given views without blocking;
// one that is full is dropped.
func (a *Aggregator) publish(ch api.Change, views ...store.Source) {
	for s := range a.subs {
		for _, v := range views {
			if s.view != v {
				continue
			}
			select {
			case s.ch <- ch:
			default:
				delete(a.subs, s)
				close(s.ch)
			}
		}
	}
}

// counts returns the live objects per view.
func (a *Aggregator) countsLocked() api.ObjectCounts {
	return api.ObjectCounts{Verified: a.verified.len(), Streamed: a.current.len(), Aggregated: a.current.len()}
}

func (a *Aggregator) Status(info api.ResourceInfo) api.ResourceStatus {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return api.ResourceStatus{
		ResourceInfo:            info,
		VerifiedAt:              a.verifiedAt,
		VerifiedResourceVersion: store.FormatResourceVersion(a.verifiedRV),
		StreamedResourceVersion: store.FormatResourceVersion(a.streamRV),
		Objects:                 a.countsLocked(),
		StreamConnected:         a.streamConnected,
		LastEventAt:             a.lastEventAt,
		Events:                  a.events,
		EventsPerMinute:         float64(a.perSecond.lastMinute(a.now())),
		Verifications:           a.verifications,
		LastDrift:               a.lastDrift,
		TotalDrift:              a.totalDrift,
		DriftPending:            a.pendingCount,
		DriftUnjudged:           a.unjudged,
		Stale:                   a.mode == warm,
		LastError:               a.lastErrors(),
		ForgottenDeletions:      a.forgotten,
	}
}

// judging reports whether the next LIST will be judged for drift: there is
// an earlier LIST of this run to judge the stream against.
func (a *Aggregator) Judging() bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.mode == live
}

func (a *Aggregator) Ready() bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.mode != empty
}

// readiness says whether the resource has data to serve, and, when it has
// none, the error of its last failed LIST ("" while the first is still
// under way).
func (a *Aggregator) Readiness() (serving bool, listErr string) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.mode != empty, a.lastError[FromList]
}

// drift returns the ledger and the changes since the last LIST.
func (a *Aggregator) Drift() api.DriftReport {
	a.mu.RLock()
	defer a.mu.RUnlock()
	r := api.DriftReport{
		Resource:                a.resource,
		VerifiedAt:              a.verifiedAt,
		VerifiedResourceVersion: store.FormatResourceVersion(a.verifiedRV),
		Ledger:                  append([]api.DriftEntry{}, a.ledger...),
		Unverified:              []api.UnverifiedChange{},
	}
	for uid := range a.changed {
		v := a.verified.get(uid)
		c := api.UnverifiedChange{UID: uid}
		row := a.current.get(uid)
		switch {
		case row != nil && v == nil:
			c.Type = api.ChangeAdded
		case row != nil:
			c.Type = api.ChangeModified
		case v != nil:
			row = a.tombstones[uid]
			c.Type = api.ChangeDeleted
		default:
			continue // added and deleted again since the LIST: no net change
		}
		if row == nil {
			continue
		}
		c.Namespace, c.Name, c.ObservedAt, c.Object = row.Namespace, row.Name, row.ObservedAt, row.Object
		c.ResourceVersion = store.FormatResourceVersion(row.ResourceVersion)
		if v != nil {
			c.VerifiedResourceVersion = store.FormatResourceVersion(v.ResourceVersion)
			c.Verified = v.Object
		}
		r.Unverified = append(r.Unverified, c)
	}
	sort.Slice(r.Unverified, func(i, j int) bool {
		return store.Key(r.Unverified[i].Namespace, r.Unverified[i].Name) < store.Key(r.Unverified[j].Namespace, r.Unverified[j].Name)
	})
	if over := len(r.Unverified) - api.MaxUnverified; over > 0 {
		clear(r.Unverified[api.MaxUnverified:])
		r.Unverified = r.Unverified[:api.MaxUnverified]
		r.UnverifiedOmitted = over
	}
	return r
}

// follow replaces the views with the leader's frames. They are as fresh as
// the leader's, so not stale; but the first LIST after this replica takes
// over judges no drift against them.
func (a *Aggregator) Follow(verified, aggregated *store.Frame) {
	a.mu.Lock()
	defer a.mu.Unlock()
	oldCurrent, oldVerified := a.current, a.verified
	wasStale := a.mode == empty || a.mode == warm
	a.verified, a.current = framesViews(verified, aggregated)
	// What differs from the verified frame is what the leader streamed
	// since its LIST: the drift report's unverified changes.
	a.resetLocked()
	for uid, c := range a.current.byUID {
		if v := a.verified.get(uid); v == nil || v.ResourceVersion != c.ResourceVersion {
			a.changed[uid] = struct{}{}
		}
	}
	for uid, v := range a.verified.byUID {
		if a.current.get(uid) == nil {
			tomb := *v
			tomb.Deleted, tomb.Source = true, store.Streamed
			a.tombstones[uid] = &tomb
			a.changed[uid] = struct{}{}
		}
	}
	a.verifiedRV, a.verifiedAt = verified.Header.ResourceVersion, verified.Header.VerifiedAt
	a.streamRV = max(verified.Header.ResourceVersion, aggregated.Header.ResourceVersion)
	a.lastStreamAt = a.now()
	a.mode = following
	// The leader's frames replace the views: a watch resumes across them
	// only when they continue what this replica held.
	a.rebuilt(oldCurrent, oldVerified, wasStale)
}

// replayed records that the loaded aggregated frame holds the events up to
// rv, so the aggregated view says so before any event is replayed.
func (a *Aggregator) Replayed(rv uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.streamRV = max(a.streamRV, rv)
}

func (a *Aggregator) IsStale() bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.mode == warm
}

// Now is the aggregator's clock.
func (a *Aggregator) Now() time.Time { return a.now() }

// SetStreamChanged makes the aggregator tell ch (without blocking) each
// time the watch connects or disconnects.
func (a *Aggregator) SetStreamChanged(ch chan<- struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.streamChanged = ch
}

// clearChanges forgets what changed since the last LIST: the tombstones
// and the changed set.
func (a *Aggregator) clearChanges() {
	a.tombstones = map[string]*store.Row{}
	a.tombOrder = nil
	a.changed = map[string]struct{}{}
}

// resetLocked starts the views' history over when they are replaced from
// another timeline (stored frames, another replica's, a LIST that went
// backwards): the event log, the changes since the last LIST and the drift
// judgments waiting on the old stream.
func (a *Aggregator) resetLocked() {
	a.log.reset()
	a.clearChanges()
	a.dropJudgments(false)
}
