package render

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// genericColumns are what kube-apiserver prints for a resource it has no
// printer for, such as a custom resource without additionalPrinterColumns.
var genericColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name"},
	{Name: "Age", Type: "string"},
}

func genericRow(obj *unstructured.Unstructured, now time.Time) ([]any, error) {
	return []any{obj.GetName(), age(obj.GetCreationTimestamp(), now)}, nil
}
