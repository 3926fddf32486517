package render

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// fixtureNow is the clock of every fixture: their timestamps are written
// relative to it.
var fixtureNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// goldenVariants are the kubectl get flag sets every fixture is printed with;
// the suffix names the golden file.
var goldenVariants = []struct {
	suffix string
	opts   TableOptions
}{
	{"", TableOptions{}},
	{"-wide", TableOptions{Wide: true}},
	{"-all-namespaces", TableOptions{WithNamespace: true}},
	{"-show-labels", TableOptions{ShowLabels: true}},
	{"-no-headers", TableOptions{NoHeaders: true}},
	{"-label-columns", TableOptions{LabelColumns: []string{"app", "tier", "app.kubernetes.io/part-of"}}},
	{"-all-namespaces-wide-show-labels-no-headers", TableOptions{WithNamespace: true, Wide: true, ShowLabels: true, NoHeaders: true}},
}

// readFixture decodes testdata/<name>.json, a list as kube-apiserver returns
// it: items without apiVersion and kind.
func readFixture(t *testing.T, name string) *unstructured.UnstructuredList {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := runtime.Decode(unstructured.UnstructuredJSONScheme, data)
	if err != nil {
		t.Fatalf("decoding %s: %v", name, err)
	}
	list, ok := obj.(*unstructured.UnstructuredList)
	if !ok {
		t.Fatalf("%s holds a %T, want a list", name, obj)
	}
	return list
}

func render(t *testing.T, obj runtime.Object, opts TableOptions) string {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return fixtureNow }
	}
	var buf bytes.Buffer
	p := &TablePrinter{Options: opts}
	if err := p.PrintObj(obj, &buf); err != nil {
		t.Fatalf("PrintObj: %v", err)
	}
	return buf.String()
}

// testGolden prints testdata/<fixture>.json with every variant and compares
// with testdata/<fixture><suffix>.golden.
func testGolden(t *testing.T, fixture string) {
	t.Helper()
	list := readFixture(t, fixture)
	for _, v := range goldenVariants {
		t.Run(strings.TrimPrefix(fixture+v.suffix, "-"), func(t *testing.T) {
			checkGolden(t, fixture+v.suffix, render(t, list.DeepCopy(), v.opts))
		})
	}
}

// rows prints fixture with opts and returns its cells by name.
func rows(t *testing.T, fixture string, opts TableOptions) map[string][]string {
	t.Helper()
	opts.NoHeaders = false
	m := map[string][]string{}
	for _, cells := range cutRows(render(t, readFixture(t, fixture), opts)) {
		m[cells[0]] = cells
	}
	return m
}

// cutRows cuts a printed table's rows into cells at the offsets where the
// header's columns start, as a reader's eye does, so empty cells and cells
// with spaces come out right.
func cutRows(table string) [][]string {
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	var starts []int
	header := lines[0]
	for i := 0; i < len(header); i++ {
		if header[i] != ' ' && (i == 0 || strings.HasSuffix(header[:i], "   ")) {
			starts = append(starts, i)
		}
	}
	var rows [][]string
	for _, line := range lines[1:] {
		var cells []string
		for i, s := range starts {
			end := len(line)
			if i+1 < len(starts) {
				end = min(starts[i+1], len(line))
			}
			cells = append(cells, strings.TrimSpace(line[min(s, len(line)):end]))
		}
		rows = append(rows, cells)
	}
	return rows
}

func TestSortsLikeTheAPIServer(t *testing.T) {
	list := readFixture(t, "generic-widgets")
	// Reverse, so that sorting has something to do.
	items := list.Items
	for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
		items[i], items[j] = items[j], items[i]
	}
	for _, ns := range []string{"a", "a-b", "a.b", "ab"} {
		obj := items[0].DeepCopy()
		obj.SetNamespace(ns)
		obj.SetName("x")
		list.Items = append(list.Items, *obj)
	}
	got := render(t, list, TableOptions{WithNamespace: true, NoHeaders: true})
	var order []string
	for _, line := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
		f := strings.Fields(line)
		order = append(order, f[0]+"/"+f[1])
	}
	// etcd keys are "<namespace>/<name>", and '-' and '.' sort before '/'.
	want := []string{"a-b/x", "a.b/x", "a/x", "ab/x", "default/gizmo", "default/no-timestamp", "team-a/doohickey"}
	if diff := cmp.Diff(want, order); diff != "" {
		t.Errorf("row order (-want +got):\n%s", diff)
	}
}

func TestExtraColumns(t *testing.T) {
	list := readFixture(t, "generic-widgets")
	source := ExtraColumn{Header: "Source", Value: func(obj *unstructured.Unstructured) string {
		if obj.GetName() == "gizmo" {
			return "streamed"
		}
		return "verified"
	}}
	verified := ExtraColumn{Header: "Verified", Wide: true, Value: func(*unstructured.Unstructured) string { return "3s" }}
	opts := TableOptions{ExtraColumns: []ExtraColumn{source, verified}, LabelColumns: []string{"app"}, ShowLabels: true}

	want := "" +
		"NAME           AGE         SOURCE     APP    LABELS\n" +
		"gizmo          24h         streamed   toys   app=toys\n" +
		"no-timestamp   <unknown>   verified          <none>\n" +
		"doohickey      2m          verified          <none>\n"
	if diff := cmp.Diff(want, render(t, list.DeepCopy(), opts)); diff != "" {
		t.Errorf("default (-want +got):\n%s", diff)
	}

	opts.Wide = true
	want = "" +
		"NAME           AGE         SOURCE     VERIFIED   APP    LABELS\n" +
		"gizmo          24h         streamed   3s         toys   app=toys\n" +
		"no-timestamp   <unknown>   verified   3s                <none>\n" +
		"doohickey      2m          verified   3s                <none>\n"
	if diff := cmp.Diff(want, render(t, list.DeepCopy(), opts)); diff != "" {
		t.Errorf("wide (-want +got):\n%s", diff)
	}
}

// kubectl get pods,services prints one table per resource, each with its own
// widths, a blank line between them, and kind-prefixed names.
func TestSeveralKinds(t *testing.T) {
	pods := readFixture(t, "pod-states")
	services := readFixture(t, "service-types")
	mixed := &unstructured.UnstructuredList{}
	mixed.Items = append(mixed.Items, pods.Items[0], services.Items[2], pods.Items[2], services.Items[0])

	want := "" +
		"NAME                       READY   STATUS    RESTARTS   AGE\n" +
		"pod/unschedulable          0/1     Pending   0          7m13s\n" +
		"pod/web-6d4cf56db6-abcde   1/1     Running   0          2d3h\n" +
		"\n" +
		"NAME                 TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)    AGE\n" +
		"service/headless     ClusterIP   None         <none>        5432/TCP   3h\n" +
		"service/kubernetes   ClusterIP   10.96.0.1    <none>        443/TCP    90d\n"
	if diff := cmp.Diff(want, render(t, mixed.DeepCopy(), TableOptions{WithKind: true})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	want = "" +
		"unschedulable          0/1   Pending   0     7m13s\n" +
		"web-6d4cf56db6-abcde   1/1   Running   0     2d3h\n" +
		"headless     ClusterIP   None        <none>   5432/TCP   3h\n" +
		"kubernetes   ClusterIP   10.96.0.1   <none>   443/TCP    90d\n"
	if diff := cmp.Diff(want, render(t, mixed.DeepCopy(), TableOptions{NoHeaders: true})); diff != "" {
		t.Errorf("--no-headers (-want +got):\n%s", diff)
	}
}

func TestEmptyListPrintsNothing(t *testing.T) {
	for _, opts := range []TableOptions{{}, {NoHeaders: true}, {ShowLabels: true, WithNamespace: true}} {
		if got := render(t, &unstructured.UnstructuredList{}, opts); got != "" {
			t.Errorf("%+v: printed %q, want nothing", opts, got)
		}
	}
}

func TestSingleObject(t *testing.T) {
	list := readFixture(t, "pod-states")
	got := render(t, &list.Items[0], TableOptions{})
	want := "" +
		"NAME                   READY   STATUS    RESTARTS   AGE\n" +
		"web-6d4cf56db6-abcde   1/1     Running   0          2d3h\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestRejectsOtherObjects(t *testing.T) {
	var buf bytes.Buffer
	p := &TablePrinter{}
	if err := p.PrintObj(&runtime.Unknown{}, &buf); err == nil {
		t.Error("printing a *runtime.Unknown succeeded, want an error")
	}
}

// kubectl lays out each 500-object page on its own rows; a wider name on the
// second page is not aligned with the first.
func TestPages(t *testing.T) {
	list := &unstructured.UnstructuredList{}
	for i := range 502 {
		name := fmt.Sprintf("w-%03d", i)
		if i >= 500 {
			name = fmt.Sprintf("x-wider-than-page-one-%d", i)
		}
		obj := unstructured.Unstructured{}
		obj.SetAPIVersion("example.com/v1")
		obj.SetKind("Widget")
		obj.SetName(name)
		obj.SetCreationTimestamp(metav1.NewTime(fixtureNow.Add(-time.Hour)))
		list.Items = append(list.Items, obj)
	}
	tests := []struct {
		opts TableOptions
		want []string // the last row of page one and the first of page two
	}{
		{TableOptions{}, []string{"w-499   60m", "x-wider-than-page-one-500   60m"}},
		{TableOptions{ChunkSize: -1}, []string{"w-499                       60m", "x-wider-than-page-one-500   60m"}},
		{TableOptions{ChunkSize: 501}, []string{"w-499                       60m", "x-wider-than-page-one-500   60m"}},
	}
	for _, tt := range tests {
		lines := strings.Split(render(t, list.DeepCopy(), tt.opts), "\n")
		if diff := cmp.Diff(tt.want, lines[500:502]); diff != "" {
			t.Errorf("ChunkSize %d (-want +got):\n%s", tt.opts.ChunkSize, diff)
		}
	}
}
