package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/util/jsonpath"

	"github.com/krm-project/krm/pkg/api"
)

// customResourceKind builds the table of a custom resource with
// additionalPrinterColumns, as kube-apiserver's CRD table convertor does
// (k8s.io/apiextensions-apiserver/pkg/registry/customresource/tableconvertor):
// NAME, then each column's JSONPath value formatted by its type.
func customResourceKind(cols []api.PrinterColumn) (kind, error) {
	k := kind{columns: []metav1.TableColumnDefinition{{Name: "Name", Type: "string", Format: "name"}}}
	var paths []*jsonpath.JSONPath
	for _, c := range cols {
		p := jsonpath.New(c.Name)
		if err := p.Parse(fmt.Sprintf("{%s}", c.JSONPath)); err != nil {
			return kind{}, fmt.Errorf("unrecognized column definition %q", c.JSONPath)
		}
		p.AllowMissingKeys(true)
		paths = append(paths, p)
		k.columns = append(k.columns, metav1.TableColumnDefinition{Name: c.Name, Type: c.Type, Format: c.Format, Priority: c.Priority})
	}
	k.row = func(obj *unstructured.Unstructured, now time.Time) ([]any, error) {
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
			cells = append(cells, cellForJSONValue(cols[i].Type, value, now))
		}
		return cells, nil
	}
	return k, nil
}

// cellForJSONValue is upstream's, with krm's clock for dates.
func cellForJSONValue(typ string, value any, now time.Time) any {
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
			if ts.IsZero() {
				return "<unknown>"
			}
			return duration.HumanDuration(now.Sub(ts.Time))
		}
	}
	return nil
}
