package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/krm-project/krm/pkg/api"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// printerColumns fills in the additionalPrinterColumns of watched custom
// resources, so the plugin can print their tables as kubectl does. A
// resource that is not a CRD, or a CRD the agent may not read, keeps
// kubectl's default columns (NAME, AGE).
func printerColumns(dyn dynamic.Interface, res []resolved, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range res {
		r := &res[i]
		// A CRD's group has a dot; the core group and apps, batch, policy
		// and their like are built in.
		if !strings.Contains(r.gvr.Group, ".") {
			continue
		}
		crd, err := dyn.Resource(crdGVR).Get(ctx, r.gvr.Resource+"."+r.gvr.Group, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			continue
		case apierrors.IsForbidden(err):
			// The manifests' ClusterRole grants no CRD reads: expected
			// for built-in groups such as networking.k8s.io.
			log.Info("may not read the CRD for its printer columns; if it is a custom resource, tables show NAME and AGE",
				"resource", r.info.Name, "err", err)
			continue
		case err != nil:
			log.Warn("cannot read the CRD for its printer columns; tables show NAME and AGE",
				"resource", r.info.Name, "err", err)
			continue
		}
		cols, err := crdColumns(crd, r.gvr.Version)
		if err != nil {
			log.Warn("ignoring malformed printer columns", "resource", r.info.Name, "err", err)
			continue
		}
		r.info.PrinterColumns = cols
	}
}

// crdColumns reads spec.versions[version].additionalPrinterColumns.
func crdColumns(crd *unstructured.Unstructured, version string) ([]api.PrinterColumn, error) {
	versions, _, err := unstructured.NestedSlice(crd.Object, "spec", "versions")
	if err != nil {
		return nil, err
	}
	for _, v := range versions {
		vm, ok := v.(map[string]any)
		if !ok || vm["name"] != version {
			continue
		}
		raw, _, err := unstructured.NestedSlice(vm, "additionalPrinterColumns")
		if err != nil {
			return nil, err
		}
		var cols []api.PrinterColumn
		for _, c := range raw {
			cm, ok := c.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("printer column %v is not an object", c)
			}
			col := api.PrinterColumn{}
			col.Name, _ = cm["name"].(string)
			col.Type, _ = cm["type"].(string)
			col.Format, _ = cm["format"].(string)
			col.JSONPath, _ = cm["jsonPath"].(string)
			col.Description, _ = cm["description"].(string)
			if p, ok := cm["priority"].(int64); ok {
				col.Priority = int32(p)
			}
			cols = append(cols, col)
		}
		return cols, nil
	}
	return nil, nil
}
