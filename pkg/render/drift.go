package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pmezard/go-difflib/difflib"
	"sigs.k8s.io/yaml"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

// DriftPrinter prints what the stream holds that the last LIST has not
// confirmed, and what LISTs found the stream had missed.
type DriftPrinter struct {
	// Diff prints unified YAML diffs, verified against streamed, like
	// kubectl diff; otherwise a summary table.
	Diff      bool
	NoHeaders bool
	// History shows the whole drift ledger; otherwise only what the last
	// LIST found.
	History bool
	Now     func() time.Time
}

// DriftItem is one line of the summary: an unverified change or a ledger
// entry.
type DriftItem struct {
	Resource, Namespace, Name, Change string
	StreamedRV, VerifiedRV            string
	At                                time.Time
	// Before and After are the objects a diff compares; nil is absent.
	Before, After json.RawMessage
	Kind          string // "v1.Pod": the diff's file name prefix
}

// Items flattens the reports of list into what the printer shows. An empty
// result means no differences.
func (p *DriftPrinter) Items(list *krmv1alpha1.DriftReportList) []DriftItem {
	var out []DriftItem
	for _, rep := range list.Items {
		r := rep.Status
		resource := r.Resource
		if resource == "" {
			resource = rep.Name
		}
		for _, c := range r.Unverified {
			it := DriftItem{Resource: resource, Namespace: c.Namespace, Name: c.Name, Change: c.Type,
				StreamedRV: c.ResourceVersion, VerifiedRV: c.VerifiedResourceVersion, At: c.ObservedAt}
			switch c.Type {
			case krmv1alpha1.ChangeAdded:
				it.After = c.Object
			case krmv1alpha1.ChangeModified:
				it.Before, it.After = c.Verified, c.Object
			case krmv1alpha1.ChangeDeleted:
				it.Before = c.Verified
			}
			out = append(out, it)
		}
		for _, e := range r.Ledger {
			if !p.History && e.ListResourceVersion != r.VerifiedResourceVersion {
				continue
			}
			it := DriftItem{Resource: resource, Namespace: e.Namespace, Name: e.Name, Change: e.Kind,
				StreamedRV: e.StreamedResourceVersion, VerifiedRV: e.VerifiedResourceVersion, At: e.FoundAt}
			switch e.Kind {
			case krmv1alpha1.MissedAdded, krmv1alpha1.MissedModified:
				// The stream's copy of a missed modification is not kept;
				// the diff shows what the LIST brought.
				it.After = e.Object
			case krmv1alpha1.MissedDeleted:
				it.Before = e.Object
			}
			out = append(out, it)
		}
	}
	for i := range out {
		out[i].Kind = kindPrefix(out[i].Before, out[i].After)
	}
	return out
}

// PrintObj prints the items of the reports in list.
func (p *DriftPrinter) PrintObj(list *krmv1alpha1.DriftReportList, w io.Writer) error {
	items := p.Items(list)
	if p.Diff {
		for _, it := range items {
			if err := printDiff(w, it); err != nil {
				return err
			}
		}
		return nil
	}
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	rows := make([][]any, 0, len(items))
	for _, it := range items {
		rows = append(rows, []any{it.Resource, orNone(it.Namespace), it.Name, it.Change, orNone(it.StreamedRV), orNone(it.VerifiedRV), since(it.At, now, "<unknown>")})
	}
	if len(rows) == 0 {
		return nil
	}
	return printRows(w, []string{"RESOURCE", "NAMESPACE", "NAME", "CHANGE", "STREAMED", "VERIFIED", "AGE"}, rows, p.NoHeaders)
}

// kindPrefix is apiVersion and kind as kubectl diff names its files
// ("apps.v1.Deployment").
func kindPrefix(objs ...json.RawMessage) string {
	for _, o := range objs {
		var tm struct{ APIVersion, Kind string }
		if len(o) > 0 && json.Unmarshal(o, &tm) == nil && tm.Kind != "" {
			return strings.ReplaceAll(tm.APIVersion, "/", ".") + "." + tm.Kind
		}
	}
	return "unknown"
}

// printDiff writes one unified diff, verified (before) against streamed
// (after), in kubectl diff's layout.
func printDiff(w io.Writer, it DriftItem) error {
	before, err := toYAML(it.Before)
	if err != nil {
		return err
	}
	after, err := toYAML(it.After)
	if err != nil {
		return err
	}
	file := it.Kind + "."
	if it.Namespace != "" {
		file += it.Namespace + "."
	}
	file += it.Name
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "diff -u -N verified/%s streamed/%s\n", file, file)
	fmt.Fprintf(&buf, "# %s %s: %s (streamed resourceVersion %s, verified %s)\n", it.Resource, it.Change, keyOf(it.Namespace, it.Name), orNone(it.StreamedRV), orNone(it.VerifiedRV))
	d, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: splitLines(before), B: splitLines(after),
		FromFile: "verified/" + file, ToFile: "streamed/" + file, Context: 3,
	})
	if err != nil {
		return err
	}
	buf.WriteString(d)
	_, err = w.Write(buf.Bytes())
	return err
}

// splitLines cuts s after each newline. Unlike difflib.SplitLines it adds
// no empty last line, which would show as a blank context line and make an
// absent object one line long instead of none ("@@ -0,0 +1,n @@").
func splitLines(s string) []string {
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

func toYAML(obj json.RawMessage) (string, error) {
	if len(obj) == 0 || string(obj) == "null" {
		return "", nil
	}
	y, err := yaml.JSONToYAML(obj)
	if err != nil {
		return "", fmt.Errorf("rendering an object as YAML: %w", err)
	}
	return string(y), nil
}

func keyOf(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}
