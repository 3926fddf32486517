package render

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/krm-project/krm/pkg/api"
)

// StatusPrinter prints the agent's per-resource status as a table.
type StatusPrinter struct {
	NoHeaders bool
	Wide      bool
	Now       func() time.Time
}

// PrintObj prints one row per watched resource.
func (p *StatusPrinter) PrintObj(list *api.ResourceList, w io.Writer) error {
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	headers := []string{"RESOURCE", "VERIFIED", "RESOURCEVERSION", "OBJECTS", "STREAM", "EVENTS/MIN", "DRIFT", "STORE"}
	if p.Wide {
		headers = append(headers, "EVENTS", "LISTS", "TOTAL-DRIFT", "LAST-ERROR")
	}
	var rows [][]any
	for _, r := range list.Resources {
		verified := since(r.VerifiedAt, now, "<never>")
		if r.Stale {
			verified += " (stale)"
		}
		stream := "disconnected"
		if r.StreamConnected {
			stream = "connected"
		}
		store := list.Store.Kind
		if list.Store.Kind != "" && !list.Store.Healthy {
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
	return p.printRole(list, w)
}

// printRole says, under the table, which role the answering replica has
// when replicas elect a leader: the plugin reaches one of them.
func (p *StatusPrinter) printRole(list *api.ResourceList, w io.Writer) error {
	if list.Role == "" || p.NoHeaders {
		return nil
	}
	var err error
	switch list.Role {
	case "leader":
		_, err = fmt.Fprintf(w, "\nReplica: the leader (%s); it watches, verifies and writes the store.\n", orNone(list.Leader))
	case "follower":
		_, err = fmt.Fprintf(w, "\nReplica: a follower, serving what the leader %s wrote to the store.\n", orNone(list.Leader))
	default:
		_, err = fmt.Fprintf(w, "\nReplica: %s; leader %s.\n", list.Role, orNone(list.Leader))
	}
	return err
}

// driftCell shows missed ADDED, DELETED and MODIFIED events, or 0.
func driftCell(d api.DriftCounts) string {
	if d.Total() == 0 {
		return "0"
	}
	return fmt.Sprintf("+%d -%d ~%d", d.MissedAdded, d.MissedDeleted, d.MissedModified)
}
