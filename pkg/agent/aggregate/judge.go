package aggregate

import (
	"slices"
	"sort"

	"github.com/krm-project/krm/pkg/api"
	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/store"
)

// pendingLimit bounds the drift candidates that wait for the watch to
// deliver up to their LIST's resourceVersion. Past it the oldest LISTs'
// candidates are dropped undecided and counted (DriftUnjudged).
const pendingLimit = 10000

// judgment is the drift a landed LIST may expose that the watch has not yet
// been given the chance to deliver: the LIST is at rv, the watch had
// delivered less. Drift is judged only up to what the watch delivered,
// never by elapsed time: each candidate is settled when the watch delivers
// its event (not drift) or delivers everything up to rv without it (drift).
type judgment struct {
	rv    uint64
	seq   int64 // the Verification it belongs to
	cands map[string]*driftCandidate
}

// driftCandidate is one object a LIST and the stream disagree on.
type driftCandidate struct {
	entry api.DriftEntry
	// rv is the resourceVersion an ADDED or MODIFIED event must reach to
	// show the stream had it; a missed deletion waits for a DELETED event.
	rv uint64
	// managers are the field managers of the object the LIST decoded.
	managers []krmv1alpha1.ManagerEntry
}

// Judged is drift one judgment settled, for OnDrift: the entries, the
// field managers of the objects the LIST decoded (by UID; none for a
// missed deletion), the counts, and the LIST's resourceVersion. unjudged
// says the entries are candidates given up on (giveUp), not drift: they
// are in neither the ledger nor the counts.
type Judged struct {
	Entries  []api.DriftEntry
	Managers map[string][]krmv1alpha1.ManagerEntry
	Counts   api.DriftCounts
	ListRV   uint64
	Unjudged bool
}

// judgeEvent settles candidates the watch has now delivered. It runs
// before the event moves the stream's resourceVersion.
func (a *Aggregator) judgeEvent(typ, uid string, rv uint64) {
	for _, j := range a.pending {
		if rv > j.rv {
			continue // after that LIST: it cannot be the event it lacked
		}
		c := j.cands[uid]
		if c == nil {
			continue
		}
		if (c.entry.Kind == api.MissedDeleted && typ == deleted) || (c.entry.Kind != api.MissedDeleted && rv >= c.rv) {
			delete(j.cands, uid)
			a.pendingCount--
		}
	}
}

// judgeUpTo settles the LISTs at or below rv, which the watch has now
// delivered all of: what is still a candidate was missed.
func (a *Aggregator) judgeUpTo(rv uint64) {
	for len(a.pending) > 0 && a.pending[0].rv <= rv {
		j := a.pending[0]
		a.pending[0] = nil
		a.pending = a.pending[1:]
		a.pendingCount -= len(j.cands)
		found := make([]api.DriftEntry, 0, len(j.cands))
		var managers map[string][]krmv1alpha1.ManagerEntry
		for uid, c := range j.cands {
			found = append(found, c.entry)
			if c.managers != nil {
				if managers == nil {
					managers = map[string][]krmv1alpha1.ManagerEntry{}
				}
				managers[uid] = c.managers
			}
		}
		a.recordDrift(found, managers, j.seq, j.rv)
	}
	if len(a.pending) == 0 {
		a.pending = nil
	}
}

// deferJudgment queues a LIST's undecided candidates, within pendingLimit.
func (a *Aggregator) deferJudgment(j *judgment) {
	if len(j.cands) == 0 {
		return
	}
	for len(a.pending) > 0 && a.pendingCount+len(j.cands) > pendingLimit {
		a.dropJudgment(true)
	}
	if over := len(j.cands) - pendingLimit; over > 0 {
		dropped := map[string]*driftCandidate{}
		for uid, c := range j.cands {
			if over == 0 {
				break
			}
			delete(j.cands, uid)
			dropped[uid] = c
			a.unjudged++
			over--
		}
		a.giveUp(dropped, j.rv)
	}
	a.pending = append(a.pending, j)
	a.pendingCount += len(j.cands)
}

// dropJudgment gives up on the oldest LIST's candidates; handOver passes
// them to OnDrift as unjudged.
func (a *Aggregator) dropJudgment(handOver bool) {
	j := a.pending[0]
	n := len(j.cands)
	a.unjudged += int64(n)
	a.pendingCount -= n
	a.pending[0] = nil
	a.pending = a.pending[1:]
	if handOver {
		a.giveUp(j.cands, j.rv)
	}
}

// dropJudgments gives up on every waiting candidate: the watch will not
// deliver what they wait for (it restarts past them, or the timeline
// changed). They are counted, not guessed. handOver passes them to
// OnDrift as unjudged (not when the timeline changed: then the views
// start over from the LIST).
func (a *Aggregator) dropJudgments(handOver bool) {
	for len(a.pending) > 0 {
		a.dropJudgment(handOver)
	}
	a.pending = nil
}

// giveUp hands candidates that will not be judged to OnDrift, marked
// unjudged: not drift, but the LIST's word on objects whose events the
// watch may never deliver, which history records so that it holds what
// the views hold.
func (a *Aggregator) giveUp(cands map[string]*driftCandidate, listRV uint64) {
	if a.OnDrift == nil || len(cands) == 0 {
		return
	}
	found := Judged{Entries: make([]api.DriftEntry, 0, len(cands)), ListRV: listRV, Unjudged: true}
	for uid, c := range cands {
		found.Entries = append(found.Entries, c.entry)
		if c.managers != nil {
			if found.Managers == nil {
				found.Managers = map[string][]krmv1alpha1.ManagerEntry{}
			}
			found.Managers[uid] = c.managers
		}
	}
	a.OnDrift(found)
}

// watchFrom records that a watch (re)starts from rv. Events between what
// the stream delivered and rv will never arrive, so LISTs waiting on them
// cannot be judged.
func (a *Aggregator) WatchFrom(rv uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if rv > a.streamRV && len(a.pending) > 0 {
		a.dropJudgments(true)
	}
}

// recordDrift adds what a Verification found to the ledger and the counts,
// and hands it to OnDrift with the managers of the objects the LIST
// decoded. seq is the Verification's number: the last one's counts are
// LastDrift.
func (a *Aggregator) recordDrift(found []api.DriftEntry, managers map[string][]krmv1alpha1.ManagerEntry, seq int64, listRV uint64) {
	if len(found) == 0 {
		return
	}
	sort.Slice(found, func(i, j int) bool {
		return store.Key(found[i].Namespace, found[i].Name) < store.Key(found[j].Namespace, found[j].Name)
	})
	// The ledger is in the order of the LISTs that found its entries, and
	// by namespace/name within one LIST: a LIST's judgments that waited for
	// the watch join the ones it made at once, before any later LIST's.
	at := len(a.ledger)
	for at > 0 && a.ledger[at-1].ListResourceVersion != found[0].ListResourceVersion && ledgerRV(a.ledger[at-1]) > listRV {
		at--
	}
	a.ledger = slices.Insert(a.ledger, at, found...)
	if at > 0 && a.ledger[at-1].ListResourceVersion == found[0].ListResourceVersion {
		start := at - 1
		for start > 0 && a.ledger[start-1].ListResourceVersion == found[0].ListResourceVersion {
			start--
		}
		same := a.ledger[start : at+len(found)]
		sort.SliceStable(same, func(i, j int) bool {
			return store.Key(same[i].Namespace, same[i].Name) < store.Key(same[j].Namespace, same[j].Name)
		})
	}
	if over := len(a.ledger) - ledgerSize; over > 0 {
		a.ledger = append([]api.DriftEntry(nil), a.ledger[over:]...)
	}
	var d api.DriftCounts
	for _, e := range found {
		switch e.Kind {
		case api.MissedAdded:
			d.MissedAdded++
		case api.MissedDeleted:
			d.MissedDeleted++
		case api.MissedModified:
			d.MissedModified++
		}
	}
	if seq == a.verifications {
		a.lastDrift.MissedAdded += d.MissedAdded
		a.lastDrift.MissedDeleted += d.MissedDeleted
		a.lastDrift.MissedModified += d.MissedModified
	}
	a.totalDrift.MissedAdded += d.MissedAdded
	a.totalDrift.MissedDeleted += d.MissedDeleted
	a.totalDrift.MissedModified += d.MissedModified
	if a.OnDrift != nil {
		a.OnDrift(Judged{Entries: found, Managers: managers, Counts: d, ListRV: listRV})
	}
}

// ledgerRV is the resourceVersion of the LIST that found e.
func ledgerRV(e api.DriftEntry) uint64 {
	rv, _ := store.ParseResourceVersion(e.ListResourceVersion)
	return rv
}
