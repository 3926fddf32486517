package render

import (
	"fmt"
	"io"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/printers"

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
	tw := printers.GetNewTabWriter(w)
	if err := printers.NewTablePrinter(printers.PrintOptions{NoHeaders: p.NoHeaders, Wide: p.Wide}).PrintObj(p.Table(list), tw); err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := p.printErrors(list, w); err != nil {
		return err
	}
	return p.printRole(w)
}

// printErrors lists, under the table, each resource's last error: the
// wide table has them in a column, the default one would hide why a
// resource is never verified or disconnected.
func (p *StatusPrinter) printErrors(list *krmv1alpha1.ResourceStatusList, w io.Writer) error {
	if p.Wide || p.NoHeaders {
		return nil
	}
	first := true
	for i := range list.Items {
		r := list.Items[i].Status
		if r.LastError == "" {
			continue
		}
		if first {
			if _, err := fmt.Fprintln(w, "\nErrors:"); err != nil {
				return err
			}
			first = false
		}
		if _, err := fmt.Fprintf(w, "  %s: %s\n", r.Name, r.LastError); err != nil {
			return err
		}
	}
	return nil
}

// statusColumns are the status table's; priority 1 is -o wide's.
var statusColumns = []metav1.TableColumnDefinition{
	{Name: "Resource", Type: "string", Format: "name", Description: "The cached resource."},
	{Name: "Verified", Type: "string", Description: "How long ago the last verifying LIST landed."},
	{Name: "ResourceVersion", Type: "string", Description: "The last LIST's resourceVersion."},
	{Name: "Objects", Type: "string", Description: "Objects in the aggregated view."},
	{Name: "Stream", Type: "string", Description: "Whether the watch is connected."},
	{Name: "Events/Min", Type: "string", Description: "Watch events of the last minute."},
	{Name: "Drift", Type: "string", Description: "What the last LIST found the stream had missed: +added -deleted ~modified."},
	{Name: "Store", Type: "string", Description: "Where frames are kept, and whether that works."},
	{Name: "Events", Type: "string", Priority: 1, Description: "Watch events since the agent started."},
	{Name: "Lists", Type: "string", Priority: 1, Description: "Verifying LISTs since the agent started."},
	{Name: "Total-Drift", Type: "string", Priority: 1, Description: "Drift found by every LIST since the agent started."},
	{Name: "Last-Error", Type: "string", Priority: 1, Description: "The last error of the watch or the LIST."},
}

// Table is the status as a meta.k8s.io/v1 Table: what the plugin prints,
// and what the agent answers `kubectl get resourcestatuses` with.
func (p *StatusPrinter) Table(list *krmv1alpha1.ResourceStatusList) *metav1.Table {
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	t := &metav1.Table{ColumnDefinitions: append([]metav1.TableColumnDefinition(nil), statusColumns...)}
	store := p.Agent.Store.Kind
	if p.Agent.Store.Kind != "" && !p.Agent.Store.Healthy {
		store += " (degraded)"
	}
	for i := range list.Items {
		r := list.Items[i].Status
		verified := since(r.VerifiedAt, now, "<never>")
		if r.Stale {
			verified += " (stale)"
		}
		stream := "disconnected"
		if r.StreamConnected {
			stream = "connected"
		}
		t.Rows = append(t.Rows, metav1.TableRow{
			Cells: []any{
				r.Name, verified, orNone(r.VerifiedResourceVersion), strconv.Itoa(r.Objects.Aggregated), stream,
				strconv.FormatFloat(r.EventsPerMinute, 'f', 1, 64), driftCell(r.LastDrift), orNone(store),
				strconv.FormatInt(r.Events, 10), strconv.FormatInt(r.Verifications, 10), driftCell(r.TotalDrift), orNone(r.LastError),
			},
			Object: runtime.RawExtension{Object: &list.Items[i]},
		})
	}
	return t
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
