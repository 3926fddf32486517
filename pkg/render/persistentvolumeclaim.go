package render

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

var persistentVolumeClaimColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]},
	{Name: "Status", Type: "string", Description: corev1.PersistentVolumeClaimStatus{}.SwaggerDoc()["phase"]},
	{Name: "Volume", Type: "string", Description: corev1.PersistentVolumeClaimSpec{}.SwaggerDoc()["volumeName"]},
	{Name: "Capacity", Type: "string", Description: corev1.PersistentVolumeClaimStatus{}.SwaggerDoc()["capacity"]},
	{Name: "Access Modes", Type: "string", Description: corev1.PersistentVolumeClaimStatus{}.SwaggerDoc()["accessModes"]},
	{Name: "StorageClass", Type: "string", Description: "StorageClass of the pvc"},
	{Name: "VolumeAttributesClass", Type: "string", Description: "VolumeAttributesClass of the pvc"},
	{Name: "Age", Type: "string", Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]},
	{Name: "VolumeMode", Type: "string", Priority: 1, Description: corev1.PersistentVolumeClaimSpec{}.SwaggerDoc()["volumeMode"]},
}

// betaStorageClassAnnotation still overrides spec.storageClassName in
// kubectl's STORAGECLASS column.
const betaStorageClassAnnotation = "volume.beta.kubernetes.io/storage-class"

// persistentVolumeClaimRow follows printPersistentVolumeClaim in
// k8s.io/kubernetes/pkg/printers/internalversion (v1.37).
func persistentVolumeClaimRow(obj *unstructured.Unstructured) ([]any, error) {
	var pvc corev1.PersistentVolumeClaim
	if err := fromUnstructured(obj, &pvc); err != nil {
		return nil, err
	}
	phase := pvc.Status.Phase
	if pvc.DeletionTimestamp != nil {
		phase = "Terminating"
	}

	volumeAttributesClass := "<unset>"
	if pvc.Spec.VolumeAttributesClassName != nil {
		volumeAttributesClass = *pvc.Spec.VolumeAttributesClassName
	}
	// Capacity and access modes are the bound volume's, so an unbound
	// claim shows neither, not what it asked for.
	capacity := ""
	accessModes := ""
	if pvc.Spec.VolumeName != "" {
		accessModes = accessModesString(pvc.Status.AccessModes)
		storage := pvc.Status.Capacity[corev1.ResourceStorage]
		capacity = storage.String()
	}
	volumeMode := "<unset>"
	if pvc.Spec.VolumeMode != nil {
		volumeMode = string(*pvc.Spec.VolumeMode)
	}
	return []any{
		pvc.Name, string(phase), pvc.Spec.VolumeName, capacity, accessModes,
		storageClass(&pvc), volumeAttributesClass, age(pvc.CreationTimestamp), volumeMode,
	}, nil
}

func storageClass(pvc *corev1.PersistentVolumeClaim) string {
	if class, found := pvc.Annotations[betaStorageClassAnnotation]; found {
		return class
	}
	if pvc.Spec.StorageClassName != nil {
		return *pvc.Spec.StorageClassName
	}
	return ""
}

// accessModesString lists the modes in a fixed order, whatever order the
// object has them in.
func accessModesString(modes []corev1.PersistentVolumeAccessMode) string {
	has := map[corev1.PersistentVolumeAccessMode]bool{}
	for _, m := range modes {
		has[m] = true
	}
	var s []string
	for _, m := range []struct {
		mode  corev1.PersistentVolumeAccessMode
		short string
	}{
		{corev1.ReadWriteOnce, "RWO"},
		{corev1.ReadOnlyMany, "ROX"},
		{corev1.ReadWriteMany, "RWX"},
		{corev1.ReadWriteOncePod, "RWOP"},
	} {
		if has[m.mode] {
			s = append(s, m.short)
		}
	}
	return strings.Join(s, ",")
}
