package render

import (
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/duration"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

// Relative is a cell whose text depends on when it is read, e.g. an AGE.
// Its text is Prefix + HumanDuration(now - Time) + Suffix; a zero Time
// reads "<unknown>" in place of the duration, as upstream's
// translateTimestampSince and the CRD convertor's date cells do.
//
// Cells keep a Relative rather than its text so that a row made once, when
// the object changed, can be served for as long as the object stays the
// same: only the Relatives are worked out again at each read.
type Relative struct {
	Prefix string
	Time   time.Time
	Suffix string
}

// At returns r's text as read at now.
func (r Relative) At(now time.Time) string {
	if r.Time.IsZero() {
		return r.Prefix + "<unknown>" + r.Suffix
	}
	return r.Prefix + duration.HumanDuration(now.Sub(r.Time)) + r.Suffix
}

// age is upstream's translateTimestampSince, left for the reader's clock.
func age(ts metav1.Time) Relative {
	return Relative{Time: ts.Time}
}

// Converter makes kube-apiserver's Table columns and row cells for one kind.
type Converter struct {
	// Columns are what kube-apiserver sends as the Table's
	// columnDefinitions; priority 1 columns are the -o wide ones.
	Columns []metav1.TableColumnDefinition
	row     func(obj *unstructured.Unstructured) ([]any, error)
}

// kinds lists the kinds with kube-apiserver's own printers. A kind not here
// is printed as kube-apiserver prints custom resources.
var kinds = map[schema.GroupKind]Converter{
	{Group: "", Kind: "Pod"}:                      {podColumns, podRow},
	{Group: "apps", Kind: "Deployment"}:           {deploymentColumns, deploymentRow},
	{Group: "", Kind: "PersistentVolumeClaim"}:    {persistentVolumeClaimColumns, persistentVolumeClaimRow},
	{Group: "", Kind: "Service"}:                  {serviceColumns, serviceRow},
	{Group: "networking.k8s.io", Kind: "Ingress"}: {ingressColumns, ingressRow},
	{Group: "", Kind: "Node"}:                     {nodeColumns, nodeRow},
}

// HasPrinter reports whether gk has one of kube-apiserver's own printers
// here. A kind without one, and without printer columns, prints NAME and AGE
// unless its cells come from kube-apiserver.
func HasPrinter(gk schema.GroupKind) bool {
	_, ok := kinds[gk]
	return ok
}

// NewConverter returns the converter for gk: a built-in kind's own printer;
// else, when printerColumns is not empty, the custom resource's
// additionalPrinterColumns as kube-apiserver's CRD table convertor serves
// them (NAME, then the columns as the CRD lists them); else NAME and AGE,
// what kube-apiserver serves for a CRD without printer columns. The only
// error is a printer column whose JSONPath does not parse.
func NewConverter(gk schema.GroupKind, printerColumns []krmv1alpha1.PrinterColumn) (*Converter, error) {
	k, builtIn := kinds[gk]
	switch {
	case builtIn:
	case len(printerColumns) > 0:
		var err error
		if k, err = customResourceConverter(printerColumns); err != nil {
			return nil, fmt.Errorf("%s: %w", gk, err)
		}
	default:
		k = Converter{genericColumns, genericRow}
	}
	// The column definitions of built-in kinds are package state; a
	// caller that edits its copy must not change everyone's.
	return &Converter{Columns: slices.Clone(k.Columns), row: k.row}, nil
}

// Cells returns obj's row cells, one for each of c.Columns. Time-relative
// cells are Relative values; everything else is final (string, int64,
// bool, float64 or nil, as kube-apiserver's printers put in a Table). It
// may be called from several goroutines at once.
func (c *Converter) Cells(obj *unstructured.Unstructured) ([]any, error) {
	return c.row(obj)
}

// Resolve returns cells with each Relative replaced by its text at now. It
// does not modify cells, which may be shared by concurrent readers.
func Resolve(cells []any, now time.Time) []any {
	out := make([]any, len(cells))
	for i, cell := range cells {
		if r, ok := cell.(Relative); ok {
			cell = r.At(now)
		}
		out[i] = cell
	}
	return out
}
