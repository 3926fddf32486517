package agent

import (
	"fmt"
	"sort"
	"strings"
)

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

// roleDetail is the leader election's part of /readyz's sentence.
func (a *Agent) roleDetail() string {
	role, leader := a.election.status()
	if role != roleFollower {
		return ""
	}
	if leader == "" {
		return "following the leader through the store; no leader yet"
	}
	return "following the leader " + leader + " through the store"
}
