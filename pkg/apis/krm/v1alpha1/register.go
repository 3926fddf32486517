package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// SchemeBuilder adds krm.io/v1alpha1's kinds to a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds krm.io/v1alpha1's kinds to a scheme, so printers
	// and codecs know their apiVersion and kind.
	AddToScheme = SchemeBuilder.AddToScheme
)

// Resource qualifies a resource of this group, e.g. for a NotFound error.
func Resource(resource string) schema.GroupResource {
	return SchemeGroupVersion.WithResource(resource).GroupResource()
}

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(SchemeGroupVersion,
		&AgentStatus{}, &AgentStatusList{},
		&ResourceStatus{}, &ResourceStatusList{},
		&DriftReport{}, &DriftReportList{},
		&DelayReport{}, &DelayReportList{},
		&Revision{}, &RevisionList{},
	)
	metav1.AddToGroupVersion(scheme, SchemeGroupVersion)
	return nil
}
