package history

import (
	"context"
	"time"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

// Persister keeps a Log where a restarted agent finds it (Redis).
type Persister interface {
	// Write appends records, forgets the objects dropped, trims what is
	// older than cut and saves state, in one round trip where it can.
	Write(ctx context.Context, resource string, recs []Record, dropped []string, cut time.Time, st State) error
	// Load returns what Write kept.
	Load(ctx context.Context, resource string) (*Stored, error)
}

// Meta is a revision without its object, as persisted.
type Meta struct {
	RV       uint64                     `json:"rv"`
	At       time.Time                  `json:"at"`
	Event    string                     `json:"event"`
	Source   string                     `json:"source"`
	Managers []krmv1alpha1.ManagerEntry `json:"managers,omitempty"`
	Changed  []string                   `json:"changed,omitempty"`
}

func metaOf(r *rev) Meta {
	return Meta{RV: r.rv, At: r.at, Event: r.event, Source: r.source, Managers: r.managers, Changed: r.changed}
}

func (m Meta) rev() rev {
	return rev{rv: m.RV, at: m.At, event: m.Event, source: m.Source, managers: m.Managers, changed: m.Changed}
}

// Record is one revision as persisted: its metadata, the patch that turns
// its object back into the previous revision's (with that revision's
// metadata, so a trimmed stream still holds the object's state at its
// cut), and its whole object, which replaces the object's head.
type Record struct {
	UID       string `json:"uid"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Meta      Meta   `json:"meta"`
	Prev      *Meta  `json:"prev,omitempty"`
	Back      []byte `json:"back,omitempty"`
	// Head is the object at this revision; it is kept apart (one per
	// object), not in the stream.
	Head []byte `json:"-"`
}

// State is the log's own bookkeeping, persisted beside the revisions.
type State struct {
	Started   bool      `json:"started"`
	StartAt   time.Time `json:"startAt"`
	StartRV   uint64    `json:"startRV"`
	FloorAt   time.Time `json:"floorAt"`
	FloorRV   uint64    `json:"floorRV"`
	SeenUntil time.Time `json:"seenUntil"`
	SeenRV    uint64    `json:"seenRV"`
	Gaps      []Gap     `json:"gaps,omitempty"`
}

// Stored is what Load returns: the records in the order written, the
// newest record of each object kept (with its Head), and the state.
type Stored struct {
	Records []Record
	Heads   map[string]Record
	State   State
}

func (l *Log) recordFor(o *object, i int) Record {
	rec := Record{UID: o.uid, Namespace: o.namespace, Name: o.name, Meta: metaOf(&o.revs[i]), Head: o.head}
	if i > 0 {
		p := metaOf(&o.revs[i-1])
		rec.Prev, rec.Back = &p, o.revs[i-1].back
	}
	return rec
}

// flushInterval is how often Run writes to the Persister and trims.
const flushInterval = time.Second

// Run trims the log to its retention and writes it through to the
// Persister until ctx is done.
func (l *Log) Run(ctx context.Context, onError func(error)) {
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// A last write, so a successor sees how far this run watched.
			flush, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := l.Flush(flush); err != nil && onError != nil {
				onError(err)
			}
			cancel()
			return
		case <-t.C:
		}
		l.Trim()
		if err := l.Flush(ctx); err != nil && onError != nil {
			onError(err)
		}
	}
}

// maxPending bounds the records waiting for a Persister that fails; past
// it the oldest are dropped, and a restarted agent misses them.
const maxPending = 100_000

// Flush writes what is pending to the Persister.
func (l *Log) Flush(ctx context.Context) error {
	if l.opts.Persist == nil {
		return nil
	}
	l.mu.Lock()
	recs, dropped := l.pending, l.trimmed
	l.pending, l.trimmed = nil, nil
	cut := l.floorAt
	st := l.stateLocked()
	l.mu.Unlock()
	if !st.Started {
		// Nothing to keep before the base: a restart starts again.
		return nil
	}
	err := l.opts.Persist.Write(ctx, l.opts.Resource, recs, dropped, cut, st)
	if err != nil {
		l.mu.Lock()
		l.pending = append(recs, l.pending...)
		if over := len(l.pending) - maxPending; over > 0 {
			l.pending = l.pending[over:]
		}
		l.trimmed = append(dropped, l.trimmed...)
		l.mu.Unlock()
	}
	return err
}

func (l *Log) stateLocked() State {
	return State{Started: l.started, StartAt: l.startAt, StartRV: l.startRV, FloorAt: l.floorAt, FloorRV: l.floorRV,
		SeenUntil: l.opts.Now(), SeenRV: l.maxRV, Gaps: l.gaps}
}

// Load fills an empty log from its Persister: the revisions a previous run
// kept, with a gap from its last write to this run's first LIST.
func (l *Log) Load(ctx context.Context) error {
	if l.opts.Persist == nil {
		return nil
	}
	st, err := l.opts.Persist.Load(ctx, l.opts.Resource)
	if err != nil || st == nil || !st.State.Started {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	chains := map[string][]Record{}
	for _, r := range st.Records {
		chains[r.UID] = append(chains[r.UID], r)
	}
	for uid, head := range st.Heads {
		o := &object{uid: uid, namespace: head.Namespace, name: head.Name, head: head.Head}
		chain := chains[uid]
		if len(chain) == 0 || chain[len(chain)-1].Meta.RV != head.Meta.RV {
			chain = []Record{head}
		}
		if p := chain[0].Prev; p != nil && len(chain[0].Back) > 0 {
			r := p.rev()
			r.back = chain[0].Back
			o.revs = append(o.revs, r)
		}
		for i, rec := range chain {
			r := rec.Meta.rev()
			if i+1 < len(chain) {
				r.back = chain[i+1].Back
			}
			o.revs = append(o.revs, r)
		}
		l.objects[uid] = o
		k := key(o.namespace, o.name)
		l.byName[k] = append(l.byName[k], uid)
		l.bytes += o.size()
		l.maxRV = max(l.maxRV, o.last().rv)
	}
	s := st.State
	l.started, l.startAt, l.startRV = true, s.StartAt, s.StartRV
	l.floorAt, l.floorRV = s.FloorAt, s.FloorRV
	l.gaps = append(s.Gaps, Gap{From: s.SeenUntil, FromRV: s.SeenRV + 1})
	l.loadedAt = l.opts.Now()
	return nil
}

func key(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}
