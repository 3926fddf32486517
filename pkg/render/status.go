package render

import (
	"fmt"
	"io"
	"strconv"
	"time"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

// StatusPrinter prints the agent's per-resource status as a table.
type StatusPrinter struct {
	NoHeaders bool
	Wide      bool
	// Agent is the answering agent's own status: its store's health is
	// shown on every row, its replica role under the table.
	Agent krmv1alpha1.AgentState
	Now   func() time.Time
}

// PrintObj prints one row per watched resource.
func (p *StatusPrinter) PrintObj(list *krmv1alpha1.ResourceStatusList, w io.Writer) error {
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	headers := []string{"RESOURCE", "VERIFIED", "RESOURCEVERSION", "OBJECTS", "STREAM", "EVENTS/MIN", "DRIFT", "STORE"}
	if p.Wide {
		headers = append(headers, "EVENTS", "LISTS", "TOTAL-DRIFT", "LAST-ERROR")
	}
	var rows [][]any
	for _, item := range list.Items {
		r := item.Status
		verified := since(r.VerifiedAt, now, "<never>")
		if r.Stale {
			verified += " (stale)"
		}
		stream := "disconnected"
		if r.StreamConnected {
			stream = "connected"
		}
		store := p.Agent.Store.Kind
		if p.Agent.Store.Kind != "" && !p.Agent.Store.Healthy {
			store += " (degraded)"
		}
		row := []any{
			r.Name, verified, orNone(r.VerifiedResourceVersion), strconv.Itoa(r.Objects.Aggregated), stream,
			strconv.FormatFloat(r.EventsPerMinute, 'f', 1, 64), driftCell(r.LastDrift), orNone(store),
		}
		if p.Wide {
			row = append(row, strconv.FormatInt(r.Events, 10), strconv.FormatInt(r.Verifications, 10), driftCell(r.TotalDrift), orNone(r.LastError))
		}
		rows = append(rows, row)
	}
	if err := printRows(w, headers, rows, p.NoHeaders); err != nil {
		return err
	}
	return p.printRole(w)
}

// printRole says, under the table, which role the answering replica has
// when replicas elect a leader: the plugin reaches one of them.
func (p *StatusPrinter) printRole(w io.Writer) error {
	role, leader := p.Agent.Role, p.Agent.Leader
	if role == "" || p.NoHeaders {
		return nil
	}
	var err error
	switch role {
	case "leader":
		_, err = fmt.Fprintf(w, "\nReplica: the leader (%s); it watches, verifies and writes the store.\n", orNone(leader))
	case "follower":
		_, err = fmt.Fprintf(w, "\nReplica: a follower, serving what the leader %s wrote to the store.\n", orNone(leader))
	default:
		_, err = fmt.Fprintf(w, "\nReplica: %s; leader %s.\n", role, orNone(leader))
	}
	return err
}

// driftCell shows missed ADDED, DELETED and MODIFIED events, or 0.
func driftCell(d krmv1alpha1.DriftCounts) string {
	if d.Total() == 0 {
		return "0"
	}
	return fmt.Sprintf("+%d -%d ~%d", d.MissedAdded, d.MissedDeleted, d.MissedModified)
}
