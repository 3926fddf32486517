package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/dynamic"

	"github.com/krm-project/krm/test/cluster/clustertest"
)

// TestPluginCustomResourceColumns: a custom resource with
// additionalPrinterColumns prints through kubectl krm get exactly as kubectl
// get prints it, default and wide, with every column type.
func TestPluginCustomResourceColumns(t *testing.T) {
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	// Unique per run: a short name shared by two CRDs is ambiguous to
	// kubectl, and CRDs of other runs may still be going away.
	suffix := rand.String(6)
	group := "e2e-" + suffix + ".krm.example.com"
	short := "wdg" + suffix
	gvr := createWidgetCRD(t, dyn, group, short,
		printerColumn("Size", "integer", ".spec.size", 0),
		printerColumn("Color", "string", ".spec.color", 0),
		printerColumn("Ratio", "number", ".spec.ratio", 0),
		printerColumn("Ready", "boolean", ".status.ready", 1),
		printerColumn("Tags", "string", ".spec.tags", 1),
		printerColumn("Age", "date", ".metadata.creationTimestamp", 0),
	)
	widgets := dyn.Resource(gvr).Namespace(ns)
	specs := []map[string]any{
		{"size": int64(3), "color": "red", "ratio": 0.5, "tags": []any{"a", "b"}},
		{"size": int64(12), "color": "a much longer colour name", "ratio": int64(2)},
		{"color": "none of the rest"},
	}
	for i, spec := range specs {
		w := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": group + "/v1", "kind": "Widget",
			"metadata": map[string]any{"name": fmt.Sprintf("w%d", i)},
			"spec":     spec,
		}}
		if i == 0 {
			w.Object["status"] = map[string]any{"ready": true}
		}
		if _, err := widgets.Create(ctx, w, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	agent := startAgent(t, buildAgent(t), "--kubeconfig", c.Kubeconfig, "--resources", "widgets."+group,
		"--namespace", ns, "--verify-interval", "5s")
	agent.waitReady(t, 30*time.Second)
	p := buildPlugin(t, c)
	for _, args := range [][]string{
		{"get", "widgets." + group, "-n", ns},
		{"get", "widgets." + group, "-n", ns, "-o", "wide"},
		{"get", short, "-n", ns, "--show-labels"},
	} {
		r := sameAsKubectl(t, p, args, []string{"--agent-url", agent.URL})
		if r.code != 0 {
			t.Errorf("kubectl krm %v: %s", args, r)
		}
	}
}

// printerColumn is one of a CRD version's additionalPrinterColumns.
func printerColumn(name, typ, path string, priority int64) map[string]any {
	return map[string]any{"name": name, "type": typ, "jsonPath": path, "priority": priority}
}

// createWidgetCRD makes the namespaced CRD widgets.<group> (kind Widget,
// short name short) with columns, waits until it is served, and deletes it
// when the test ends.
func createWidgetCRD(t *testing.T, dyn dynamic.Interface, group, short string, columns ...map[string]any) schema.GroupVersionResource {
	t.Helper()
	ctx := t.Context()
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	cols := make([]any, len(columns))
	for i, c := range columns {
		cols[i] = c
	}
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": "widgets." + group},
		"spec": map[string]any{
			"group": group, "scope": "Namespaced",
			"names": map[string]any{"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": []any{short}},
			"versions": []any{map[string]any{
				"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{
					"type": "object", "x-kubernetes-preserve-unknown-fields": true,
				}},
				"additionalPrinterColumns": cols,
			}},
		},
	}}
	if _, err := dyn.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// t.Context is already cancelled when cleanups run.
	t.Cleanup(func() {
		_ = dyn.Resource(crdGVR).Delete(context.Background(), "widgets."+group, metav1.DeleteOptions{})
	})
	gvr := schema.GroupVersionResource{Group: group, Version: "v1", Resource: "widgets"}
	waitFor(t, 30*time.Second, "the widgets CRD to be served", func() error {
		_, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{})
		return err
	})
	return gvr
}
