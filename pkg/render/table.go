// Package render turns the objects krm serves into output for people: tables
// that are byte-for-byte what `kubectl get` prints for the same objects.
//
// kubectl's tables are made in two halves. kube-apiserver builds the rows
// (k8s.io/kubernetes/pkg/printers/internalversion), and kubectl lays them out
// (k8s.io/cli-runtime/pkg/printers). krm serves objects from its own store,
// not from kube-apiserver, so each kind's file here rebuilds the server half
// on the v1 types, following upstream line by line, and the layout is left to
// cli-runtime's own printer so that padding, header case, wide columns,
// NAMESPACE, LABELS and -L columns cannot drift from kubectl's.
//
// The server half is a Converter, which krm-agent also uses to answer
// as=Table requests. Its cells leave what depends on the clock (AGE, a pod's
// "(5m ago)") as Relative values, so that a row can be made once per object
// version and read at any time.
package render

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/printers"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

// TableOptions shape a table the way kubectl get's flags do.
type TableOptions struct {
	Wide          bool // -o wide
	NoHeaders     bool // --no-headers
	ShowLabels    bool // --show-labels
	WithNamespace bool // -A; ignored for cluster-scoped objects, as kubectl does
	// WithKind prefixes names with the lower-cased kind ("pod/web-1"), as
	// kubectl does when one command lists several resources.
	WithKind bool
	// LabelColumns are -L keys; each becomes a column after the kind's own.
	LabelColumns []string
	// ExtraColumns come after the kind's columns and before the label columns.
	ExtraColumns []ExtraColumn
	// Now is the clock AGE is measured against. Default time.Now.
	Now func() time.Time
	// PrinterColumns are custom resources' additionalPrinterColumns, by
	// group and kind; a kind without its own printer and without columns
	// here gets NAME and AGE.
	PrinterColumns map[schema.GroupKind][]krmv1alpha1.PrinterColumn
	// KeepOrder prints rows in the order given, as after kubectl's
	// --sort-by, instead of kube-apiserver's listing order.
	KeepOrder bool
	// ChunkSize is kubectl's --chunk-size. kubectl receives a long list in
	// pages of this many objects and sizes the columns of each page on that
	// page's rows alone, so a wide cell after the first page sticks out of
	// the columns above it; render does the same. 0 means kubectl's
	// default, 500; a negative value means a single page (--chunk-size=0).
	ChunkSize int
}

// defaultChunkSize is kubectl get's --chunk-size default.
const defaultChunkSize = 500

// ExtraColumn is a column krm adds to kubectl's, such as SOURCE.
type ExtraColumn struct {
	Header string
	// Wide columns appear only with -o wide.
	Wide  bool
	Value func(obj *unstructured.Unstructured) string
}

// TablePrinter prints objects as kubectl get prints them.
type TablePrinter struct {
	Options TableOptions
}

// PrintObj prints an *unstructured.UnstructuredList or an
// *unstructured.Unstructured. Items need apiVersion and kind, which lists
// decoded from the API or a watch always carry. Rows come in the order
// kube-apiserver lists objects in, whatever order obj has them in; obj is
// not modified. Items of several kinds are
// printed as one table per kind, separated by a blank line, as kubectl get
// pods,services does. An empty list prints nothing: kubectl says "No
// resources found" on stderr, which is the caller's to say.
func (p *TablePrinter) PrintObj(obj runtime.Object, w io.Writer) error {
	var items []unstructured.Unstructured
	switch o := obj.(type) {
	case *unstructured.UnstructuredList:
		items = o.Items
	case *unstructured.Unstructured:
		if o.IsList() {
			list, err := o.ToList()
			if err != nil {
				return err
			}
			items = list.Items
		} else {
			items = []unstructured.Unstructured{*o}
		}
	default:
		return fmt.Errorf("render: cannot print %T as a table; want unstructured objects", obj)
	}
	now := time.Now
	if p.Options.Now != nil {
		now = p.Options.Now
	}
	at := now()

	written := false
	for _, group := range groupByKind(items, p.Options.KeepOrder) {
		var buf bytes.Buffer
		if err := p.printGroup(group, at, &buf); err != nil {
			return err
		}
		if buf.Len() == 0 {
			continue
		}
		// kubectl separates the tables of several resources with a blank
		// line, but only between tables that printed something and only
		// when there are headers to tell them apart.
		if written && !p.Options.NoHeaders {
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
		written = true
	}
	return nil
}

type kindGroup struct {
	gk    schema.GroupKind
	items []*unstructured.Unstructured
}

// groupByKind keeps kinds in the order they first appear and sorts each
// kind's objects into the order kube-apiserver lists them in: by storage
// key, "namespace/name" compared as bytes. That is not the same as sorting
// by namespace then name: "a-b/x" comes before "a/x".
func groupByKind(items []unstructured.Unstructured, keepOrder bool) []kindGroup {
	var groups []kindGroup
	index := map[schema.GroupKind]int{}
	for i := range items {
		gk := items[i].GroupVersionKind().GroupKind()
		n, ok := index[gk]
		if !ok {
			n = len(groups)
			index[gk] = n
			groups = append(groups, kindGroup{gk: gk})
		}
		groups[n].items = append(groups[n].items, &items[i])
	}
	for _, g := range groups {
		if keepOrder {
			break
		}
		sort.SliceStable(g.items, func(i, j int) bool { return storageKey(g.items[i]) < storageKey(g.items[j]) })
	}
	return groups
}

func storageKey(obj *unstructured.Unstructured) string {
	if ns := obj.GetNamespace(); ns != "" {
		return ns + "/" + obj.GetName()
	}
	return obj.GetName()
}

func (p *TablePrinter) printGroup(g kindGroup, now time.Time, w io.Writer) error {
	k, err := NewConverter(g.gk, p.Options.PrinterColumns[g.gk])
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	columns := k.Columns
	for _, c := range p.Options.ExtraColumns {
		def := metav1.TableColumnDefinition{Name: c.Header, Type: "string"}
		if c.Wide {
			def.Priority = 1
		}
		columns = append(columns, def)
	}
	var rows []metav1.TableRow
	namespaced := false
	for _, obj := range g.items {
		cells, err := k.Cells(obj)
		if err != nil {
			return fmt.Errorf("render: %s %s: %w", g.gk.Kind, storageKey(obj), err)
		}
		cells = Resolve(cells, now)
		for _, c := range p.Options.ExtraColumns {
			cells = append(cells, c.Value(obj))
		}
		rows = append(rows, metav1.TableRow{Cells: cells, Object: runtime.RawExtension{Object: obj}})
		namespaced = namespaced || obj.GetNamespace() != ""
	}

	// kubectl drops NAMESPACE for cluster-scoped resources; without a REST
	// mapping, objects that all lack a namespace are the sign of one.
	printer := printers.NewTablePrinter(printers.PrintOptions{
		NoHeaders:     p.Options.NoHeaders,
		WithNamespace: p.Options.WithNamespace && namespaced,
		WithKind:      p.Options.WithKind,
		Kind:          g.gk,
		Wide:          p.Options.Wide,
		ShowLabels:    p.Options.ShowLabels,
		ColumnLabels:  p.Options.LabelColumns,
	})
	// One tabwriter for every page, as kubectl get has: the printer prints
	// the header once and lays out each page as it comes.
	tw := printers.GetNewTabWriter(w)
	chunk := p.Options.ChunkSize
	switch {
	case chunk == 0:
		chunk = defaultChunkSize
	case chunk < 0:
		chunk = len(rows)
	}
	for start := 0; start < len(rows); start += chunk {
		page := &metav1.Table{
			ColumnDefinitions: append([]metav1.TableColumnDefinition(nil), columns...),
			Rows:              rows[start:min(start+chunk, len(rows))],
		}
		if err := printer.PrintObj(page, tw); err != nil {
			return err
		}
	}
	return tw.Flush()
}

// fromUnstructured converts obj into a typed object, so that each kind's row
// reads like its upstream counterpart.
func fromUnstructured(obj *unstructured.Unstructured, into any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(obj.UnstructuredContent(), into)
}
