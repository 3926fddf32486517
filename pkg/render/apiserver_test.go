package render_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/render"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// tableAccept asks kube-apiserver for a meta.k8s.io/v1 Table, as kubectl get
// does.
const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"

// TestConvertersMatchAPIServer: a Converter gives the column definitions
// kube-apiserver sends with as=Table, descriptions included, and the same
// cells, of the same JSON types, for the same objects.
func TestConvertersMatchAPIServer(t *testing.T) {
	c := clustertest.Get(t)
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client := cs.Discovery().RESTClient()

	ns := clustertest.Namespace(t, c)
	w := &workload{t: t, cs: cs, ns: ns, mark: ns}
	t.Cleanup(w.release)
	w.pods()
	w.deployments()
	w.services()
	w.ingresses()
	w.claims()

	group := "columns-" + rand.String(6) + ".krm.example.com"
	columns := []krmv1alpha1.PrinterColumn{
		{Name: "Size", Type: "integer", JSONPath: ".spec.size"},
		{Name: "Ratio", Type: "number", JSONPath: ".spec.ratio", Priority: 1},
		{Name: "Color", Type: "string", JSONPath: ".spec.color"},
		{Name: "Tags", Type: "string", JSONPath: ".spec.tags", Priority: 1},
		{Name: "Ready", Type: "boolean", JSONPath: ".status.ready"},
		{Name: "Due", Type: "date", JSONPath: ".spec.due"},
		{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
	}
	createCRD(t, dyn, group, "widgets", "Widget", columns)
	createCRD(t, dyn, group, "gadgets", "Gadget", nil)
	widgets := dyn.Resource(schema.GroupVersionResource{Group: group, Version: "v1", Resource: "widgets"}).Namespace(ns)
	gadgets := dyn.Resource(schema.GroupVersionResource{Group: group, Version: "v1", Resource: "gadgets"}).Namespace(ns)
	for i, spec := range []map[string]any{
		{"size": int64(3), "ratio": 0.5, "color": "red", "tags": []any{"a", "b"}, "due": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)},
		{"size": 2.7, "ratio": int64(2), "due": "not a date"},
		{"color": "none of the rest"},
	} {
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": group + "/v1", "kind": "Widget",
			"metadata": map[string]any{"name": fmt.Sprintf("w%d", i)},
			"spec":     spec,
		}}
		if i == 0 {
			obj.Object["status"] = map[string]any{"ready": true}
		}
		create(t, widgets, obj)
	}
	create(t, gadgets, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": group + "/v1", "kind": "Gadget", "metadata": map[string]any{"name": "g0"},
	}})

	waitForWorkload(t, cs, []string{ns})
	settle(t, dyn, []schema.GroupVersionResource{podsGVR, deploymentsGVR, claimsGVR, servicesGVR, ingressesGVR}, []string{ns})

	for _, tt := range []struct {
		path    string
		columns []krmv1alpha1.PrinterColumn
	}{
		{path: "/api/v1/namespaces/" + ns + "/pods"},
		{path: "/apis/apps/v1/namespaces/" + ns + "/deployments"},
		{path: "/api/v1/namespaces/" + ns + "/persistentvolumeclaims"},
		{path: "/api/v1/namespaces/" + ns + "/services"},
		{path: "/apis/networking.k8s.io/v1/namespaces/" + ns + "/ingresses"},
		{path: "/api/v1/nodes"},
		{path: "/apis/" + group + "/v1/namespaces/" + ns + "/widgets", columns: columns},
		{path: "/apis/" + group + "/v1/namespaces/" + ns + "/gadgets"},
	} {
		t.Run(tt.path, func(t *testing.T) { compareTable(t, client, tt.path, tt.columns) })
	}
}

// compareTable gets path as a Table with whole objects in its rows, and
// converts the same objects. kube-apiserver reads its clock while it builds
// the rows; ages change only on whole seconds, so one of the seconds between
// asking and receiving gives the same cells.
func compareTable(t *testing.T, client rest.Interface, path string, columns []krmv1alpha1.PrinterColumn) {
	t.Helper()
	t0 := time.Now()
	table := getTable(t, client, path)
	t1 := time.Now()
	if len(table.Rows) == 0 {
		t.Fatalf("%s: no rows to compare", path)
	}
	for i, row := range table.Rows {
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(row.Object.Raw); err != nil {
			t.Fatalf("%s row %d: decoding its object: %v", path, i, err)
		}
		conv, err := render.NewConverter(obj.GroupVersionKind().GroupKind(), columns)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if diff := cmp.Diff(table.ColumnDefinitions, conv.Columns); diff != "" {
				t.Errorf("%s: columns (-kube-apiserver +converter):\n%s", path, diff)
			}
		}
		cells, err := conv.Cells(obj)
		if err != nil {
			t.Fatalf("%s %s: %v", path, obj.GetName(), err)
		}
		var diff string
		for now := t0.Truncate(time.Second); !now.After(t1); now = now.Add(time.Second) {
			if diff = cmp.Diff(row.Cells, onTheWire(t, render.Resolve(cells, now))); diff == "" {
				break
			}
		}
		if diff != "" {
			t.Errorf("%s %s: cells (-kube-apiserver +converter):\n%s", path, obj.GetName(), diff)
		}
	}
}

// onTheWire is cells as a client reads them: a number cell of float64(2)
// reaches it as int64(2), as kube-apiserver's does.
func onTheWire(t *testing.T, cells []any) []any {
	t.Helper()
	data, err := json.Marshal(cells)
	if err != nil {
		t.Fatal(err)
	}
	var out []any
	if err := utiljson.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// getTable gets path as a Table. A resource just created may not be served
// for a moment.
func getTable(t *testing.T, client rest.Interface, path string) *metav1.Table {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		body, err := client.Get().AbsPath(path).Param("includeObject", "Object").
			SetHeader("Accept", tableAccept).DoRaw(t.Context())
		if err == nil {
			// Decoded as a client decodes JSON: whole numbers as int64.
			var table metav1.Table
			if err := utiljson.Unmarshal(body, &table); err != nil {
				t.Fatalf("decoding the Table of %s: %v", path, err)
			}
			if table.Kind != "Table" {
				t.Fatalf("GET %s answered a %s, want a Table", path, table.Kind)
			}
			return &table
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s as a Table: %v", path, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func create(t *testing.T, r dynamic.ResourceInterface, obj *unstructured.Unstructured) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := r.Create(t.Context(), obj, metav1.CreateOptions{})
		if err == nil {
			return
		}
		// A CRD just created is not served at once.
		if time.Now().After(deadline) {
			t.Fatalf("creating %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func createCRD(t *testing.T, dyn dynamic.Interface, group, plural, kind string, columns []krmv1alpha1.PrinterColumn) {
	t.Helper()
	version := map[string]any{
		"name": "v1", "served": true, "storage": true,
		"schema": map[string]any{"openAPIV3Schema": map[string]any{
			"type": "object", "x-kubernetes-preserve-unknown-fields": true,
		}},
	}
	if len(columns) > 0 {
		var cols []any
		for _, c := range columns {
			cols = append(cols, map[string]any{"name": c.Name, "type": c.Type, "jsonPath": c.JSONPath, "priority": int64(c.Priority)})
		}
		version["additionalPrinterColumns"] = cols
	}
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": plural + "." + group},
		"spec": map[string]any{
			"group": group, "scope": "Namespaced",
			"names":    map[string]any{"plural": plural, "kind": kind},
			"versions": []any{version},
		},
	}}
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	if _, err := dyn.Resource(crdGVR).Create(t.Context(), crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// t.Context is already cancelled when cleanups run.
	t.Cleanup(func() {
		_ = dyn.Resource(crdGVR).Delete(context.Background(), plural+"."+group, metav1.DeleteOptions{})
	})
}
