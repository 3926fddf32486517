package render

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pmezard/go-difflib/difflib"
	"k8s.io/apimachinery/pkg/util/duration"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

// HistoryPrinter prints an object's revisions: a table (REVISION,
// RESOURCEVERSION, AGE, EVENT, SOURCE, MANAGER, CHANGED), or with Diff the
// unified diffs between consecutive revisions.
type HistoryPrinter struct {
	Diff      bool
	NoHeaders bool
	Now       func() time.Time
}

// PrintObj prints a *krmv1alpha1.RevisionList.
func (p *HistoryPrinter) PrintObj(list *krmv1alpha1.RevisionList, w io.Writer) error {
	if p.Diff {
		return p.diffs(list, w)
	}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	rows := [][]any{}
	for _, r := range list.Items {
		rows = append(rows, []any{fmt.Sprint(r.Revision), r.ResourceVersion, duration.HumanDuration(now().Sub(r.ObservedAt)),
			r.Event, r.Source, orNone(lastManager(r.Managers)), orNone(strings.Join(r.Changed, ", "))})
	}
	header := []string{"REVISION", "RESOURCEVERSION", "AGE", "EVENT", "SOURCE", "MANAGER", "CHANGED"}
	return printRows(w, header, rows, p.NoHeaders)
}

// lastManager is the manager that wrote most recently: managedFields times
// have one-second resolution, so the last entry wins a tie.
func lastManager(ms []krmv1alpha1.ManagerEntry) string {
	best := -1
	for i, m := range ms {
		if best < 0 || m.Time >= ms[best].Time {
			best = i
		}
	}
	if best < 0 {
		return ""
	}
	m := ms[best]
	if m.Operation == "" {
		return m.Manager
	}
	return m.Manager + " (" + m.Operation + ")"
}

// diffs writes a unified YAML diff per revision against the one before it
// (against nothing for the first kept).
func (p *HistoryPrinter) diffs(list *krmv1alpha1.RevisionList, w io.Writer) error {
	var prev *krmv1alpha1.Revision
	for i := range list.Items {
		r := &list.Items[i]
		if prev != nil && prev.UID != r.UID {
			prev = nil
		}
		before := ""
		var err error
		if prev != nil {
			if before, err = toYAML(prev.Object); err != nil {
				return err
			}
		}
		after := ""
		if r.Event != "DELETED" {
			if after, err = toYAML(r.Object); err != nil {
				return err
			}
		}
		from, to := "/dev/null", revisionFile(r)
		if prev != nil {
			from = revisionFile(prev)
		}
		var buf bytes.Buffer
		fmt.Fprintf(&buf, "# revision %d: %s by %s at %s (resourceVersion %s, from the %s)\n", r.Revision, r.Event,
			orNone(lastManager(r.Managers)), r.ObservedAt.UTC().Format(time.RFC3339), r.ResourceVersion, r.Source)
		d, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{A: splitLines(before), B: splitLines(after), FromFile: from, ToFile: to, Context: 3})
		if err != nil {
			return err
		}
		buf.WriteString(d)
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
		prev = r
	}
	return nil
}

func revisionFile(r *krmv1alpha1.Revision) string {
	return fmt.Sprintf("%s/%s@%s", r.Resource, keyOf(r.Namespace, r.ObjectName), r.ResourceVersion)
}
