package agent

import (
	"encoding/json"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/krm-project/krm/pkg/store"
)

// selectableFields lists, per kind, the field-selector keys kubectl users
// use beyond metadata.name and metadata.namespace. Each is a dotted path into
// the object; its string value is extracted once, when the row is built.
var selectableFields = map[string][]string{
	"Pod":                   {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"},
	"Node":                  {"spec.unschedulable"},
	"Service":               {"spec.type", "spec.clusterIP"},
	"PersistentVolumeClaim": {"spec.storageClassName", "spec.volumeName", "status.phase"},
	"Deployment":            {},
	"Ingress":               {"spec.ingressClassName"},
}

// rowBuilder turns received objects into rows for one resource.
type rowBuilder struct {
	kind   string
	fields []string
	now    func() time.Time
}

func newRowBuilder(kind string, now func() time.Time) *rowBuilder {
	return &rowBuilder{kind: kind, fields: selectableFields[kind], now: now}
}

// build makes a row from obj and its Table cells (nil when krm renders the
// kind itself) without modifying obj: the object may be shared with other
// consumers of the watch, so managedFields are left out of a shallow copy
// instead of being deleted in place.
func (b *rowBuilder) build(obj *unstructured.Unstructured, cells []byte, source store.Source) (*store.Row, error) {
	rv, err := store.ParseResourceVersion(obj.GetResourceVersion())
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", b.kind, key(obj.GetNamespace(), obj.GetName()), err)
	}
	data, err := json.Marshal(withoutManagedFields(obj.Object))
	if err != nil {
		return nil, fmt.Errorf("encoding %s %s: %w", b.kind, key(obj.GetNamespace(), obj.GetName()), err)
	}
	r := &store.Row{
		UID:             string(obj.GetUID()),
		Namespace:       obj.GetNamespace(),
		Name:            obj.GetName(),
		ResourceVersion: rv,
		Source:          source,
		ObservedAt:      b.now(),
		Object:          data,
		Labels:          obj.GetLabels(),
		Cells:           cells,
	}
	if len(b.fields) > 0 {
		r.Fields = make(map[string]string, len(b.fields))
		for _, f := range b.fields {
			r.Fields[f] = fieldValue(obj.Object, f)
		}
	}
	return r, nil
}

func withoutManagedFields(obj map[string]any) map[string]any {
	meta, ok := obj["metadata"].(map[string]any)
	if !ok {
		return obj
	}
	if _, has := meta["managedFields"]; !has {
		return obj
	}
	metaCopy := make(map[string]any, len(meta))
	for k, v := range meta {
		if k != "managedFields" {
			metaCopy[k] = v
		}
	}
	objCopy := make(map[string]any, len(obj))
	for k, v := range obj {
		objCopy[k] = v
	}
	objCopy["metadata"] = metaCopy
	return objCopy
}

// fieldValue renders the value at a dotted path the way kube-apiserver's
// field selectors see it: strings as they are, booleans as true/false, a
// missing field as "".
func fieldValue(obj map[string]any, path string) string {
	var cur any = obj
	start := 0
	for i := 0; i <= len(path); i++ {
		if i < len(path) && path[i] != '.' {
			continue
		}
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[path[start:i]]
		start = i + 1
	}
	switch v := cur.(type) {
	case string:
		return v
	case bool:
		if v {
			return "true"
		}
		return "false"
	case nil:
		// kube-apiserver selects a missing boolean as false.
		if path == "spec.unschedulable" || path == "spec.hostNetwork" {
			return "false"
		}
		return ""
	default:
		return fmt.Sprint(v)
	}
}

func key(namespace, name string) string { return store.Key(namespace, name) }
