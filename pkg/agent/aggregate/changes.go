package aggregate

import (
	"github.com/krm-project/krm/pkg/api"
)

// historySize is how many changes of the aggregated view each resource keeps
// for watches that resume from a resourceVersion. Each entry points at rows
// the views may already have dropped, so it bounds that memory too.
const historySize = 4096

// changeHistory is a ring of the aggregated view's last changes in
// resourceVersion order. A watch from resourceVersion rv is served from it
// when every change after rv is still held: rv >= floor.
type changeHistory struct {
	ring []api.Change
	next int // where the next change goes
	n    int // changes held
	// floor is the oldest resourceVersion a watch can resume from: the
	// newest change evicted from the ring, or the point the history was
	// (re)started at, when the views were replaced wholesale.
	floor uint64
	// last is the resourceVersion of the newest change held or the floor.
	last uint64
}

func newChangeHistory(size int) *changeHistory {
	return &changeHistory{ring: make([]api.Change, size)}
}

// add records c; its ResourceVersion must be set. A change older than the
// newest is recorded at the newest's resourceVersion: watchers resuming
// after it must not miss it.
func (h *changeHistory) add(c api.Change) api.Change {
	c.ResourceVersion = max(c.ResourceVersion, h.last)
	if h.n == len(h.ring) {
		h.floor = h.ring[h.next].ResourceVersion
	} else {
		h.n++
	}
	h.ring[h.next] = c
	h.next = (h.next + 1) % len(h.ring)
	h.last = c.ResourceVersion
	return c
}

// reset forgets every change: watches can resume only from rv on.
func (h *changeHistory) reset(rv uint64) {
	clear(h.ring)
	h.next, h.n = 0, 0
	h.floor, h.last = rv, rv
}

// since returns the changes after rv, oldest first, or false when some of
// them are no longer held (rv is older than the floor).
func (h *changeHistory) since(rv uint64) ([]api.Change, bool) {
	if rv < h.floor {
		return nil, false
	}
	start := (h.next - h.n + len(h.ring)) % len(h.ring)
	var out []api.Change
	for i := range h.n {
		c := h.ring[(start+i)%len(h.ring)]
		if c.ResourceVersion > rv {
			out = append(out, c)
		}
	}
	return out, true
}
