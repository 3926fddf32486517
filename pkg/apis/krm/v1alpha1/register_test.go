package v1alpha1

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Every kind the agent serves is known to a scheme built with AddToScheme,
// under krm.io/v1alpha1, so printers can set apiVersion and kind.
func TestAddToScheme(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	for kind, obj := range map[string]runtime.Object{
		"AgentStatus": &AgentStatus{}, "AgentStatusList": &AgentStatusList{},
		"ResourceStatus": &ResourceStatus{}, "ResourceStatusList": &ResourceStatusList{},
		"DriftReport": &DriftReport{}, "DriftReportList": &DriftReportList{},
		"DelayReport": &DelayReport{}, "DelayReportList": &DelayReportList{},
	} {
		gvks, _, err := scheme.ObjectKinds(obj)
		want := schema.GroupVersionKind{Group: "krm.io", Version: "v1alpha1", Kind: kind}
		if err != nil || len(gvks) != 1 || gvks[0] != want {
			t.Errorf("ObjectKinds(%T) = %v, %v; want %v", obj, gvks, err, want)
		}
	}
}
