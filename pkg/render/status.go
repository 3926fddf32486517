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
	return printRows(w, headers, rows, p.NoHeaders)
}

// driftCell shows missed ADDED, DELETED and MODIFIED events, or 0.
func driftCell(d api.DriftCounts) string {
	if d.Total() == 0 {
		return "0"
	}
	return fmt.Sprintf("+%d -%d ~%d", d.MissedAdded, d.MissedDeleted, d.MissedModified)
}
