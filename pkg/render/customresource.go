package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/jsonpath"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

// customResourceConverter builds the table of a custom resource with
// additionalPrinterColumns, as kube-apiserver's CRD table convertor does
// (k8s.io/apiextensions-apiserver/pkg/registry/customresource/tableconvertor):
// NAME, then each column's JSONPath value formatted by its type.
func customResourceConverter(cols []krmv1alpha1.PrinterColumn) (Converter, error) {
	k := Converter{Columns: []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]},
	}}
	var paths []*jsonpath.JSONPath
	for _, c := range cols {
		p := jsonpath.New(c.Name)
		if err := p.Parse(fmt.Sprintf("{%s}", c.JSONPath)); err != nil {
			return Converter{}, fmt.Errorf("unrecognized column definition %q", c.JSONPath)
		}
		p.AllowMissingKeys(true)
		paths = append(paths, p)
		// The CRD's description, or upstream's when it gives none.
		desc := c.Description
		if desc == "" {
			desc = fmt.Sprintf("Custom resource definition column (in JSONPath format): %s", c.JSONPath)
		}
		k.Columns = append(k.Columns, metav1.TableColumnDefinition{Name: c.Name, Type: c.Type, Format: c.Format, Description: desc, Priority: c.Priority})
	}
	// A JSONPath keeps its range state in its own fields while it walks an
	// object, so one converter's rows are made one at a time.
	var mu sync.Mutex
	k.row = func(obj *unstructured.Unstructured) ([]any, error) {
		mu.Lock()
		defer mu.Unlock()
		cells := []any{obj.GetName()}
		var buf bytes.Buffer
		for i, p := range paths {
			results, err := p.FindResults(obj.UnstructuredContent())
			if err != nil || len(results) == 0 || len(results[0]) == 0 {
				cells = append(cells, nil)
				continue
			}
			value := results[0][0].Interface()
			if cols[i].Type == "string" {
				if err := p.PrintResults(&buf, []reflect.Value{reflect.ValueOf(value)}); err != nil {
					cells = append(cells, nil)
					continue
				}
				cells = append(cells, buf.String())
				buf.Reset()
				continue
			}
			cells = append(cells, cellForJSONValue(cols[i].Type, value))
		}
		return cells, nil
	}
	return k, nil
}

// cellForJSONValue is upstream's, but leaves a date for the reader's clock.
func cellForJSONValue(typ string, value any) any {
	if value == nil {
		return nil
	}
	switch typ {
	case "integer":
		switch v := value.(type) {
		case int64:
			return v
		case float64:
			return int64(v)
		case json.Number:
			if i, err := v.Int64(); err == nil {
				return i
			}
		}
	case "number":
		switch v := value.(type) {
		case int64:
			return float64(v)
		case float64:
			return v
		case json.Number:
			if f, err := v.Float64(); err == nil {
				return f
			}
		}
	case "boolean":
		if b, ok := value.(bool); ok {
			return b
		}
	case "string":
		if s, ok := value.(string); ok {
			return s
		}
	case "date":
		if s, ok := value.(string); ok {
			var ts metav1.Time
			if err := ts.UnmarshalQueryParameter(s); err != nil {
				return "<invalid>"
			}
			return age(ts)
		}
	}
	return nil
}
