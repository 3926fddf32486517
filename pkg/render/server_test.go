package render

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

// kindFixtures are the fixtures of each kind with a printer of its own, and
// of one without.
var kindFixtures = []string{
	"pod-states", "pod-init-containers", "deployment-states", "persistentvolumeclaim-states",
	"service-types", "ingress-variants", "node-roles", "generic-widgets",
}

// A Table made from cached cells must show what kubectl get shows: every
// cell, resolved at the same clock, is the text the printer put in its row.
func TestCellsMatchPrintedRows(t *testing.T) {
	for _, fixture := range kindFixtures {
		t.Run(fixture, func(t *testing.T) {
			list := readFixture(t, fixture)
			printed := cutRows(render(t, list.DeepCopy(), TableOptions{Wide: true, KeepOrder: true}))
			if len(printed) != len(list.Items) {
				t.Fatalf("printed %d rows for %d objects", len(printed), len(list.Items))
			}
			for i := range list.Items {
				obj := &list.Items[i]
				c, err := NewConverter(obj.GroupVersionKind().GroupKind(), nil)
				if err != nil {
					t.Fatal(err)
				}
				cells, err := c.Cells(obj)
				if err != nil {
					t.Fatalf("%s: %v", obj.GetName(), err)
				}
				if len(cells) != len(c.Columns) {
					t.Fatalf("%s: %d cells for %d columns", obj.GetName(), len(cells), len(c.Columns))
				}
				var got []string
				for _, cell := range Resolve(cells, fixtureNow) {
					got = append(got, cellText(cell))
				}
				if diff := cmp.Diff(printed[i], got); diff != "" {
					t.Errorf("%s (-printed +cells):\n%s", obj.GetName(), diff)
				}
			}
		})
	}
}

// cellText is how kubectl's table printer writes a cell.
func cellText(cell any) string {
	switch v := cell.(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

// If AGE were made into text when the row is cached, it would stop at the
// age the object had then.
func TestAgeIsRelative(t *testing.T) {
	for _, fixture := range kindFixtures {
		list := readFixture(t, fixture)
		for i := range list.Items {
			obj := &list.Items[i]
			c, err := NewConverter(obj.GroupVersionKind().GroupKind(), nil)
			if err != nil {
				t.Fatal(err)
			}
			cells, err := c.Cells(obj)
			if err != nil {
				t.Fatal(err)
			}
			col := slices.IndexFunc(c.Columns, func(d metav1.TableColumnDefinition) bool { return d.Name == "Age" })
			want := Relative{Time: obj.GetCreationTimestamp().Time}
			if col < 0 || cells[col] != want {
				t.Errorf("%s %s: Age cell is %#v, want %#v", fixture, obj.GetName(), cells, want)
			}
		}
	}
}

func TestPodRestartsAreRelative(t *testing.T) {
	list := readFixture(t, "pod-states")
	c, err := NewConverter(schema.GroupKind{Kind: "Pod"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		obj := &list.Items[i]
		if obj.GetName() != "crashloop" {
			continue
		}
		cells, err := c.Cells(obj)
		if err != nil {
			t.Fatal(err)
		}
		r, ok := cells[3].(Relative)
		if !ok {
			t.Fatalf("RESTARTS cell is %#v, want a Relative", cells[3])
		}
		if got, want := r.At(fixtureNow.Add(time.Hour)), "5 (65m ago)"; got != want {
			t.Errorf("RESTARTS an hour on = %q, want %q", got, want)
		}
		return
	}
	t.Fatal("no crashloop pod in pod-states")
}

func TestRelativeAt(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		r    Relative
		want string
	}{
		{Relative{}, "<unknown>"},
		{Relative{Prefix: "3 (", Suffix: " ago)"}, "3 (<unknown> ago)"},
		{Relative{Time: now}, "0s"},
		{Relative{Time: now.Add(-90 * time.Second)}, "90s"},
		{Relative{Time: now.Add(-(7*time.Minute + 13*time.Second))}, "7m13s"},
		{Relative{Time: now.Add(-150 * time.Minute)}, "150m"},
		{Relative{Time: now.Add(-51 * time.Hour)}, "2d3h"},
		{Relative{Time: now.Add(-90 * 24 * time.Hour)}, "90d"},
		{Relative{Time: now.Add(-(3*365 + 10) * 24 * time.Hour)}, "3y10d"},
		// A clock behind the object's is upstream's "<invalid>".
		{Relative{Time: now.Add(time.Minute)}, "<invalid>"},
		{Relative{Prefix: "12 (", Time: now.Add(-150 * time.Minute), Suffix: " ago)"}, "12 (150m ago)"},
	}
	for _, tt := range tests {
		if got := tt.r.At(now); got != tt.want {
			t.Errorf("%+v.At(now) = %q, want %q", tt.r, got, tt.want)
		}
	}
}

func TestResolveLeavesCellsAlone(t *testing.T) {
	created := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	cells := []any{"web", Relative{Time: created}, int64(3), nil, true}
	before := slices.Clone(cells)

	got := Resolve(cells, created.Add(2*time.Minute))
	if diff := cmp.Diff([]any{"web", "2m", int64(3), nil, true}, got); diff != "" {
		t.Errorf("Resolve (-want +got):\n%s", diff)
	}
	got[0] = "changed"
	if diff := cmp.Diff(before, cells); diff != "" {
		t.Errorf("cells changed (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff([]any{"web", "5m", int64(3), nil, true}, Resolve(cells, created.Add(5*time.Minute))); diff != "" {
		t.Errorf("Resolve again (-want +got):\n%s", diff)
	}
}

func TestConverterColumns(t *testing.T) {
	metaDocs := metav1.ObjectMeta{}.SwaggerDoc()
	crd := []krmv1alpha1.PrinterColumn{{Name: "Size", Type: "integer", JSONPath: ".spec.size"}}
	var gks []schema.GroupKind
	for gk := range kinds {
		gks = append(gks, gk)
	}
	gks = append(gks, schema.GroupKind{Group: "example.com", Kind: "Widget"})
	for _, gk := range gks {
		for _, cols := range [][]krmv1alpha1.PrinterColumn{nil, crd} {
			c, err := NewConverter(gk, cols)
			if err != nil {
				t.Fatal(err)
			}
			name := c.Columns[0]
			if name.Name != "Name" || name.Type != "string" || name.Format != "name" || name.Description != metaDocs["name"] {
				t.Errorf("%s with %d printer columns: first column %+v, want kube-apiserver's Name column", gk, len(cols), name)
			}
			for _, col := range c.Columns {
				if col.Description == "" {
					t.Errorf("%s: column %s has no description", gk, col.Name)
				}
				if col.Name == "Age" && col.Description != metaDocs["creationTimestamp"] {
					t.Errorf("%s: Age described as %q, want creationTimestamp's doc", gk, col.Description)
				}
			}
		}
	}

	// Printer columns are for custom resources; a built-in kind keeps its own.
	c, err := NewConverter(schema.GroupKind{Kind: "Pod"}, crd)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Columns) != len(podColumns) {
		t.Errorf("pods with printer columns have %d columns, want the pod printer's %d", len(c.Columns), len(podColumns))
	}

	// Each converter has its own columns to edit.
	c.Columns[0].Name = "changed"
	if podColumns[0].Name != "Name" {
		t.Error("editing a converter's columns changed the pod printer's")
	}
}

func TestCustomResourceConverter(t *testing.T) {
	gk := schema.GroupKind{Group: "example.com", Kind: "Widget"}
	cols := []krmv1alpha1.PrinterColumn{
		{Name: "Size", Type: "integer", JSONPath: ".spec.size"},
		{Name: "Due", Type: "date", JSONPath: ".spec.due", Priority: 1},
		{Name: "Checked", Type: "date", JSONPath: ".status.checked"},
		{Name: "Missing", Type: "date", JSONPath: ".status.missing"},
		{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
	}
	c, err := NewConverter(gk, cols)
	if err != nil {
		t.Fatal(err)
	}
	wantColumns := []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]},
		{Name: "Size", Type: "integer", Description: "Custom resource definition column (in JSONPath format): .spec.size"},
		{Name: "Due", Type: "date", Priority: 1, Description: "Custom resource definition column (in JSONPath format): .spec.due"},
		{Name: "Checked", Type: "date", Description: "Custom resource definition column (in JSONPath format): .status.checked"},
		{Name: "Missing", Type: "date", Description: "Custom resource definition column (in JSONPath format): .status.missing"},
		{Name: "Age", Type: "date", Description: "Custom resource definition column (in JSONPath format): .metadata.creationTimestamp"},
	}
	if diff := cmp.Diff(wantColumns, c.Columns); diff != "" {
		t.Errorf("columns (-want +got):\n%s", diff)
	}

	created := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "example.com/v1", "kind": "Widget",
		"metadata": map[string]any{"name": "w1", "creationTimestamp": "2026-03-01T11:00:00Z"},
		"spec":     map[string]any{"size": int64(3), "due": "not a date"},
		"status":   map[string]any{"checked": "2026-03-01T11:59:30Z"},
	}}
	cells, err := c.Cells(obj)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"w1", int64(3), "<invalid>", Relative{Time: created.Add(59*time.Minute + 30*time.Second)}, nil, Relative{Time: created}}
	if diff := cmp.Diff(want, cells); diff != "" {
		t.Errorf("cells (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]any{"w1", int64(3), "<invalid>", "30s", nil, "60m"}, Resolve(cells, created.Add(time.Hour))); diff != "" {
		t.Errorf("resolved (-want +got):\n%s", diff)
	}

	if _, err := NewConverter(gk, []krmv1alpha1.PrinterColumn{{Name: "Bad", Type: "string", JSONPath: ".spec[x"}}); err == nil {
		t.Error("a printer column with a broken JSONPath made a converter")
	}
}
