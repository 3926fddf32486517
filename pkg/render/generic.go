package render

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// genericColumns are what kube-apiserver serves for a custom resource
// without additionalPrinterColumns: its CRD table convertor with the one
// column apiextensions-apiserver's serveDefaultColumnsIfEmpty gives it.
var genericColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]},
	{Name: "Age", Type: "date", Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]},
}

// genericRow gives an object without a creationTimestamp "<unknown>" where
// upstream's JSONPath would find nothing and leave the cell empty; objects
// read from the API always have one.
func genericRow(obj *unstructured.Unstructured) ([]any, error) {
	return []any{obj.GetName(), age(obj.GetCreationTimestamp())}, nil
}
