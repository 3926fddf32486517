package aggregate

import (
	"maps"

	"github.com/krm-project/krm/pkg/store"
)

// rowSet is one of the Aggregator's views: its rows by UID, for events and
// LISTs, and in key order, for reads. An event changes it in O(log n); a
// snapshot of it is O(1) (store.Rows.View).
type rowSet struct {
	byUID map[string]*store.Row
	rows  *store.Rows
}

func newRowSet(size int) *rowSet {
	return &rowSet{byUID: make(map[string]*store.Row, size), rows: store.NewRows()}
}

// rowSetOf builds a set of rows; later rows replace earlier ones of the same
// UID.
func rowSetOf(rows []*store.Row) *rowSet {
	v := newRowSet(len(rows))
	for _, r := range rows {
		v.set(r)
	}
	return v
}

func (v *rowSet) get(uid string) *store.Row { return v.byUID[uid] }

func (v *rowSet) len() int { return len(v.byUID) }

// set inserts r or replaces the row of its UID.
func (v *rowSet) set(r *store.Row) {
	if old := v.byUID[r.UID]; old != nil && (old.Namespace != r.Namespace || old.Name != r.Name) {
		v.rows.Delete(old)
	}
	v.byUID[r.UID] = r
	v.rows.Set(r)
}

// delete removes the row of uid, if any.
func (v *rowSet) delete(uid string) {
	if old := v.byUID[uid]; old != nil {
		delete(v.byUID, uid)
		v.rows.Delete(old)
	}
}

// clone returns a copy that shares the rows, and the tree's structure until
// either copy changes.
func (v *rowSet) clone() *rowSet {
	return &rowSet{byUID: maps.Clone(v.byUID), rows: v.rows.Clone()}
}

// replayLog keeps the events newer than the verified resourceVersion, for
// the next LIST to be overlaid with: the newest event of each object only,
// since applying an object's events in order leaves it as its newest does.
// It holds at most one event per object changed since the LIST, however
// many events arrive.
type replayLog struct {
	events []event
	at     map[string]int // uid -> index in events
	// dead counts forgotten events, left as holes until compacted.
	dead int
}

// add records ev, replacing an older event of the same object.
func (l *replayLog) add(ev event) {
	if i, ok := l.at[ev.row.UID]; ok {
		if ev.row.ResourceVersion > l.events[i].row.ResourceVersion {
			l.events[i] = ev
		}
		return
	}
	if l.at == nil {
		l.at = map[string]int{}
	}
	if l.dead > len(l.events)/2 {
		l.compact()
	}
	l.at[ev.row.UID] = len(l.events)
	l.events = append(l.events, ev)
}

// compact closes the holes forgotten events left.
func (l *replayLog) compact() {
	kept := l.events[:0]
	for _, e := range l.events {
		if e.row != nil {
			l.at[e.row.UID] = len(kept)
			kept = append(kept, e)
		}
	}
	clear(l.events[len(kept):])
	l.events, l.dead = kept, 0
}

func (l *replayLog) len() int { return len(l.events) - l.dead }

// forget drops the event of uid, if any, leaving a hole that add closes
// once they are half the log.
func (l *replayLog) forget(uid string) {
	i, ok := l.at[uid]
	if !ok {
		return
	}
	delete(l.at, uid)
	l.events[i] = event{}
	l.dead++
}

// reset empties the log.
func (l *replayLog) reset() {
	clear(l.events)
	l.events = l.events[:0]
	clear(l.at)
	l.dead = 0
}

// keepAfter drops the events at or below rv and calls fn, in the order
// they were first logged, for each one kept.
func (l *replayLog) keepAfter(rv uint64, fn func(event)) {
	kept := l.events[:0]
	clear(l.at)
	for _, e := range l.events {
		if e.row != nil && e.row.ResourceVersion > rv {
			l.at[e.row.UID] = len(kept)
			kept = append(kept, e)
			fn(e)
		}
	}
	clear(l.events[len(kept):])
	l.events, l.dead = kept, 0
}
