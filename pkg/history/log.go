package history

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/store"
)

// Event types and sources as a revision stores them.
const (
	Added    = "ADDED"
	Modified = "MODIFIED"
	Deleted  = "DELETED"

	Watch = krmv1alpha1.RevisionSourceWatch
	List  = krmv1alpha1.RevisionSourceList
)

// DefaultRetention and DefaultMaxBytes are --history's and
// --history-max-bytes' defaults.
const (
	DefaultRetention = time.Hour
	DefaultMaxBytes  = 64 << 20
)

// revOverhead is what a revision costs beyond its patch, managers and
// changed paths: its fields and slice headers.
const revOverhead = 96

// rev is one revision. Its object is the next revision's with back applied;
// the newest revision's is the object's head.
type rev struct {
	rv       uint64
	at       time.Time
	event    string
	source   string
	managers []krmv1alpha1.ManagerEntry
	changed  []string
	back     []byte
}

func (r *rev) size() int64 {
	n := int64(revOverhead + len(r.back))
	for _, m := range r.managers {
		n += int64(48 + len(m.Time))
	}
	for _, c := range r.changed {
		n += int64(16 + len(c))
	}
	return n
}

// object is one object's kept revisions, oldest first, and its newest
// revision's bytes.
type object struct {
	uid, namespace, name string
	revs                 []rev
	head                 []byte
}

func (o *object) last() *rev { return &o.revs[len(o.revs)-1] }

// size is what the object costs beyond a live object's newest revision,
// which the views hold anyway.
func (o *object) size() int64 {
	var n int64
	for i := range o.revs[:len(o.revs)-1] {
		n += o.revs[i].size()
	}
	if o.last().event == Deleted {
		n += o.last().size() + int64(len(o.head)+len(o.uid)+len(o.namespace)+len(o.name)+64)
	}
	return n
}

// Options configure a Log.
type Options struct {
	// Resource names the resource as the agent does ("deployments.apps").
	Resource string
	// Retention is how long revisions are kept; MaxBytes bounds what they
	// take beyond each live object's newest revision.
	Retention time.Duration
	MaxBytes  int64
	Now       func() time.Time
	// Persist, when set, receives every revision and trim (Redis).
	Persist Persister
}

// Log is one resource's history. It is safe for concurrent use.
type Log struct {
	opts Options

	mu      sync.RWMutex
	objects map[string]*object
	byName  map[string][]string // namespace/name -> uids, oldest first
	bytes   int64
	// started is when the first LIST gave history its base, startRV that
	// LIST's resourceVersion; before, nothing can be answered.
	started bool
	// listed says this run's first LIST landed; until then a loaded
	// history has a gap that it closes.
	listed   bool
	startAt  time.Time
	startRV  uint64
	floorAt  time.Time // trimmed up to here: views before are not held
	floorRV  uint64
	maxRV    uint64 // newest resourceVersion recorded
	gaps     []Gap
	pending  []Record // for Persist
	trimmed  []string // uids dropped, for Persist
	trimAt   time.Time
	loadedAt time.Time // when a persisted history was loaded, zero if none
}

var metaType = metav1.TypeMeta{Kind: "Revision", APIVersion: krmv1alpha1.SchemeGroupVersion.String()}

// Gap is a time (and resourceVersion range) the agent was not watching:
// between a stopped agent's last write and its successor's first LIST.
type Gap struct {
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	FromRV uint64    `json:"fromRV"`
	ToRV   uint64    `json:"toRV"`
}

// NewLog returns an empty history.
func NewLog(opts Options) *Log {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Log{opts: opts, objects: map[string]*object{}, byName: map[string][]string{}}
}

// Resource is the resource the log keeps.
func (l *Log) Resource() string { return l.opts.Resource }

// Entry is one revision handed to the log.
type Entry struct {
	Event    string
	Source   string
	Row      *store.Row // its Object is kept, never modified
	Managers []krmv1alpha1.ManagerEntry
}

// Record adds a revision the watch delivered. A revision at or below the
// object's newest (a resumed watch's replay) changes nothing.
func (l *Log) Record(e Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recordLocked(e, e.Row.ObservedAt)
	l.boundLocked()
}

func (l *Log) recordLocked(e Entry, at time.Time) {
	row := e.Row
	o := l.objects[row.UID]
	r := rev{rv: row.ResourceVersion, at: at, event: e.Event, source: e.Source, managers: e.Managers}
	if o == nil {
		o = &object{uid: row.UID, namespace: row.Namespace, name: row.Name}
		l.objects[row.UID] = o
		k := row.Key()
		l.byName[k] = append(l.byName[k], row.UID)
	} else {
		last := o.last()
		if row.ResourceVersion <= last.rv || last.event == Deleted {
			return
		}
		// A repair judged late may carry its LIST's time, before a watch
		// event of the object observed since: an object's revisions keep
		// their order in time, which its views at a time rely on.
		if at.Before(last.at) {
			r.at = last.at
		}
		before := o.size()
		back, changed, err := Diff(o.head, row.Object)
		if err != nil {
			// Not JSON: keep the revision whole rather than lose it.
			back, changed = nil, nil
		}
		last.back = back
		if back == nil {
			last.back = wholePatch(o.head)
		}
		r.changed = changed
		l.bytes -= before
	}
	o.revs = append(o.revs, r)
	o.head = row.Object
	l.bytes += o.size()
	l.maxRV = max(l.maxRV, r.rv)
	if l.opts.Persist != nil {
		l.pending = append(l.pending, l.recordFor(o, len(o.revs)-1))
	}
}

// wholePatch is a patch that replaces the whole object with b.
func wholePatch(b []byte) []byte {
	return append(append([]byte(`[[[],`), b...), "]]"...)
}

// Listed is this run's first verifying LIST, handed to Base.
type Listed struct {
	Rows []*store.Row
	RV   uint64
	At   time.Time
	// Managers are the managers of the rows the LIST decoded, by UID; a
	// row the views already held at its resourceVersion has none here.
	Managers map[string][]krmv1alpha1.ManagerEntry
}

// Base makes this run's first LIST the history's base: every object it has
// that the log lacks (all of them, in a new log) is ADDED, one it has newer
// than the log MODIFIED, and one a loaded history holds that it lacks
// DELETED, each with source list; a loaded history's gap closes there.
// Later LISTs change nothing here: the events the watch missed that they
// expose reach the log through Repair, as the agent's drift judgment
// settles them, so history and the drift ledger never disagree.
func (l *Log) Base(v Listed) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.listed {
		return
	}
	seen := make(map[string]struct{}, len(v.Rows))
	for _, row := range v.Rows {
		seen[row.UID] = struct{}{}
		o := l.objects[row.UID]
		e := Entry{Source: List, Row: row, Managers: v.Managers[row.UID]}
		switch {
		case o == nil || o.last().event == Deleted:
			e.Event = Added
		case o.last().rv < row.ResourceVersion:
			e.Event = Modified
			if e.Managers == nil {
				e.Managers = o.last().managers
			}
		default:
			continue
		}
		l.recordLocked(e, v.At)
	}
	for uid, o := range l.objects {
		if _, ok := seen[uid]; ok || o.last().event == Deleted || o.last().rv > v.RV {
			continue
		}
		gone := store.Row{UID: uid, Namespace: o.namespace, Name: o.name, ResourceVersion: max(v.RV, o.last().rv+1), Object: o.head}
		l.recordLocked(Entry{Event: Deleted, Source: List, Row: &gone, Managers: o.last().managers}, v.At)
	}
	l.listed = true
	if !l.started {
		l.started, l.startAt, l.startRV = true, v.At, v.RV
	}
	if len(l.gaps) > 0 && l.gaps[len(l.gaps)-1].To.IsZero() {
		g := &l.gaps[len(l.gaps)-1]
		g.To, g.ToRV = v.At, v.RV
	}
	l.boundLocked()
}

// Repair records events the watch missed, as a verifying LIST exposed them
// and the agent judged them drift: Added and Modified carry the LIST's row
// (observed when the LIST landed), Deleted the row the watch last held
// with the LIST's resourceVersion. Each becomes a revision with source
// list. A repair the log cannot place changes nothing: one at or below the
// object's newest revision, a deletion of an object it does not hold, or
// any before the base.
func (l *Log) Repair(entries []Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.listed {
		return
	}
	for _, e := range entries {
		e.Source = List
		o := l.objects[e.Row.UID]
		live := o != nil && o.last().event != Deleted
		switch {
		case e.Event == Deleted && !live:
			continue
		case e.Event == Deleted:
			row := *e.Row
			row.ResourceVersion = max(row.ResourceVersion, o.last().rv+1)
			if row.Object == nil {
				row.Object = o.head
			}
			e.Row = &row
		case !live:
			e.Event = Added
		default:
			e.Event = Modified
		}
		if e.Managers == nil && live {
			e.Managers = o.last().managers
		}
		l.recordLocked(e, e.Row.ObservedAt)
	}
	l.boundLocked()
}

// boundLocked trims to the byte bound, dropping the oldest revisions first.
func (l *Log) boundLocked() {
	if l.opts.MaxBytes <= 0 || l.bytes <= l.opts.MaxBytes {
		return
	}
	now := l.opts.Now()
	from := l.floorAt
	if from.IsZero() || from.Before(l.startAt) {
		from = l.oldestLocked()
	}
	// Trim to 90% so that the next revisions do not trim again at once.
	target := l.opts.MaxBytes / 10 * 9
	for step := 1; l.bytes > target && step <= 16; step++ {
		cut := from.Add(now.Sub(from) * time.Duration(step) / 16)
		l.trimLocked(cut)
	}
}

func (l *Log) oldestLocked() time.Time {
	oldest := l.opts.Now()
	for _, o := range l.objects {
		if o.revs[0].at.Before(oldest) {
			oldest = o.revs[0].at
		}
	}
	return oldest
}

// Trim drops what is older than the retention.
func (l *Log) Trim() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.opts.Retention > 0 {
		l.trimLocked(l.opts.Now().Add(-l.opts.Retention))
	}
}

// trimLocked forgets the views before cut: each object keeps its newest
// revision at or before cut (its state at cut) and the later ones; an object
// deleted by cut goes.
func (l *Log) trimLocked(cut time.Time) {
	if !cut.After(l.floorAt) {
		return
	}
	for uid, o := range l.objects {
		k := -1
		for i := range o.revs {
			if o.revs[i].at.After(cut) {
				break
			}
			k = i
		}
		if k < 0 {
			continue
		}
		l.floorRV = max(l.floorRV, o.revs[k].rv)
		if k == 0 && o.revs[0].event != Deleted {
			continue
		}
		l.bytes -= o.size()
		if k == len(o.revs)-1 && o.revs[k].event == Deleted {
			delete(l.objects, uid)
			key := store.Row{Namespace: o.namespace, Name: o.name}
			l.dropName(key.Key(), uid)
			if l.opts.Persist != nil {
				l.trimmed = append(l.trimmed, uid)
			}
			continue
		}
		o.revs = append([]rev(nil), o.revs[k:]...)
		l.bytes += o.size()
	}
	l.floorAt = cut
	l.trimAt = cut
	for len(l.gaps) > 0 && !l.gaps[0].To.IsZero() && l.gaps[0].To.Before(cut) {
		l.gaps = l.gaps[1:]
	}
}

func (l *Log) dropName(k, uid string) {
	uids := l.byName[k]
	for i, u := range uids {
		if u == uid {
			uids = append(uids[:i:i], uids[i+1:]...)
			break
		}
	}
	if len(uids) == 0 {
		delete(l.byName, k)
	} else {
		l.byName[k] = uids
	}
}

// Bytes is what the history holds beyond each live object's newest
// revision: the figure --history-max-bytes bounds.
func (l *Log) Bytes() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.bytes
}

// Revisions counts the revisions held.
func (l *Log) Revisions() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	n := 0
	for _, o := range l.objects {
		n += len(o.revs)
	}
	return n
}

// TooOldError says history does not reach back to what was asked.
type TooOldError struct {
	// Reach is the oldest time (or resourceVersion) answered; zero when
	// history has not started.
	Reach   time.Time
	ReachRV uint64
	Gap     *Gap
}

func (e *TooOldError) Error() string {
	switch {
	case e.Gap != nil:
		return fmt.Sprintf("history has a gap from %s to %s (resourceVersions %d to %d): the agent was not watching",
			e.Gap.From.UTC().Format(time.RFC3339), e.Gap.To.UTC().Format(time.RFC3339), e.Gap.FromRV, e.Gap.ToRV)
	case e.Reach.IsZero():
		return "history has not started: the agent's first LIST has not landed"
	default:
		return fmt.Sprintf("history reaches back to %s (resourceVersion %d) only", e.Reach.UTC().Format(time.RFC3339), e.ReachRV)
	}
}

var errCorrupt = errors.New("history cannot rebuild a revision")

// Reach is the oldest time and resourceVersion whose view history answers.
func (l *Log) Reach() (time.Time, uint64, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	at, rv := l.reachLocked()
	return at, rv, l.started
}

func (l *Log) reachLocked() (time.Time, uint64) {
	at, rv := l.startAt, l.startRV
	if l.floorAt.After(at) {
		at = l.floorAt
	}
	return at, max(rv, l.floorRV)
}

// objectsOf rebuilds every revision's object of o, oldest first.
func objectsOf(o *object) ([][]byte, error) {
	out := make([][]byte, len(o.revs))
	cur := o.head
	out[len(out)-1] = cur
	for i := len(o.revs) - 2; i >= 0; i-- {
		prev, err := Apply(cur, o.revs[i].back)
		if err != nil {
			return nil, fmt.Errorf("%w %d of %s: %v", errCorrupt, i+1, o.name, err)
		}
		out[i], cur = prev, prev
	}
	return out, nil
}

// History lists the revisions of namespace/name (each object that had the
// name, by first revision), oldest first, observed at or after since.
func (l *Log) History(namespace, name string, since time.Time) ([]krmv1alpha1.Revision, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	k := (&store.Row{Namespace: namespace, Name: name}).Key()
	var out []krmv1alpha1.Revision
	for _, uid := range l.byName[k] {
		o := l.objects[uid]
		objs, err := objectsOf(o)
		if err != nil {
			return nil, err
		}
		for i := range o.revs {
			r := &o.revs[i]
			if r.at.Before(since) {
				continue
			}
			out = append(out, krmv1alpha1.Revision{
				TypeMeta:        metaType,
				Resource:        l.opts.Resource,
				Namespace:       o.namespace,
				ObjectName:      o.name,
				UID:             o.uid,
				Revision:        i + 1,
				ResourceVersion: store.FormatResourceVersion(r.rv),
				ObservedAt:      r.at.UTC(),
				Event:           r.event,
				Source:          r.source,
				Managers:        r.managers,
				Changed:         r.changed,
				Object:          objs[i],
			})
			out[len(out)-1].Name = o.uid + "-" + store.FormatResourceVersion(r.rv)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ObservedAt.Before(out[j].ObservedAt) })
	return out, nil
}

// Item is one object of a view rebuilt from history.
type Item struct {
	UID, Namespace, Name string
	ResourceVersion      uint64
	Object               []byte
}

// ViewAt rebuilds the view as the agent held it at t: every object whose
// newest revision observed at or before t is not DELETED. It returns the
// newest resourceVersion observed by then, or a *TooOldError when history
// does not reach t.
func (l *Log) ViewAt(t time.Time) ([]Item, uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	reach, reachRV := l.reachLocked()
	if !l.started || t.Before(reach) {
		return nil, 0, &TooOldError{Reach: reach, ReachRV: reachRV}
	}
	for i := range l.gaps {
		g := l.gaps[i]
		if !t.Before(g.From) && (g.To.IsZero() || t.Before(g.To)) {
			return nil, 0, &TooOldError{Reach: reach, ReachRV: reachRV, Gap: &g}
		}
	}
	var rv uint64
	items, err := l.viewLocked(func(r *rev) bool { return !r.at.After(t) }, &rv)
	return items, max(rv, reachRV), err
}

// ViewAtResourceVersion rebuilds the view at resourceVersion rv: every
// object whose newest revision at or below rv is not DELETED, as
// kube-apiserver's Exact LIST at rv would hold them. It returns a
// *TooOldError when history does not reach rv.
func (l *Log) ViewAtResourceVersion(rv uint64) ([]Item, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	reach, reachRV := l.reachLocked()
	if !l.started || rv < reachRV {
		return nil, &TooOldError{Reach: reach, ReachRV: reachRV}
	}
	for i := range l.gaps {
		g := l.gaps[i]
		if rv >= g.FromRV && (g.ToRV == 0 || rv < g.ToRV) {
			return nil, &TooOldError{Reach: reach, ReachRV: reachRV, Gap: &g}
		}
	}
	var newest uint64
	return l.viewLocked(func(r *rev) bool { return r.rv <= rv }, &newest)
}

func (l *Log) viewLocked(in func(*rev) bool, newest *uint64) ([]Item, error) {
	var out []Item
	for _, o := range l.objects {
		k := -1
		for i := range o.revs {
			if !in(&o.revs[i]) {
				break
			}
			k = i
		}
		if k < 0 {
			continue
		}
		*newest = max(*newest, o.revs[k].rv)
		if o.revs[k].event == Deleted {
			continue
		}
		obj := o.head
		if k < len(o.revs)-1 {
			objs, err := objectsOf(o)
			if err != nil {
				return nil, err
			}
			obj = objs[k]
		}
		out = append(out, Item{UID: o.uid, Namespace: o.namespace, Name: o.name, ResourceVersion: o.revs[k].rv, Object: obj})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := store.Row{Namespace: out[i].Namespace, Name: out[i].Name}, store.Row{Namespace: out[j].Namespace, Name: out[j].Name}
		if c := store.CompareKeys(&a, &b); c != 0 {
			return c < 0
		}
		return out[i].UID < out[j].UID
	})
	return out, nil
}
