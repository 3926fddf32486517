package render

import (
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

var nodeColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]},
	{Name: "Status", Type: "string", Description: "The status of the node"},
	{Name: "Roles", Type: "string", Description: "The roles of the node"},
	{Name: "Age", Type: "string", Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]},
	{Name: "Version", Type: "string", Description: corev1.NodeSystemInfo{}.SwaggerDoc()["kubeletVersion"]},
	{Name: "Internal-IP", Type: "string", Priority: 1, Description: corev1.NodeStatus{}.SwaggerDoc()["addresses"]},
	{Name: "External-IP", Type: "string", Priority: 1, Description: corev1.NodeStatus{}.SwaggerDoc()["addresses"]},
	{Name: "OS-Image", Type: "string", Priority: 1, Description: corev1.NodeSystemInfo{}.SwaggerDoc()["osImage"]},
	{Name: "Kernel-Version", Type: "string", Priority: 1, Description: corev1.NodeSystemInfo{}.SwaggerDoc()["kernelVersion"]},
	{Name: "Container-Runtime", Type: "string", Priority: 1, Description: corev1.NodeSystemInfo{}.SwaggerDoc()["containerRuntimeVersion"]},
}

const (
	labelNodeRolePrefix = "node-role.kubernetes.io/"
	nodeLabelRole       = "kubernetes.io/role"
)

// nodeRow follows printNode in
// k8s.io/kubernetes/pkg/printers/internalversion (v1.37).
func nodeRow(obj *unstructured.Unstructured) ([]any, error) {
	var node corev1.Node
	if err := fromUnstructured(obj, &node); err != nil {
		return nil, err
	}
	// Only the Ready condition makes STATUS; a node without one is
	// Unknown. If a node lists Ready twice, the last one wins.
	var status []string
	var ready *corev1.NodeCondition
	for i := range node.Status.Conditions {
		if node.Status.Conditions[i].Type == corev1.NodeReady {
			ready = &node.Status.Conditions[i]
		}
	}
	switch {
	case ready == nil:
		status = append(status, "Unknown")
	case ready.Status == corev1.ConditionTrue:
		status = append(status, string(ready.Type))
	default:
		status = append(status, "Not"+string(ready.Type))
	}
	if node.Spec.Unschedulable {
		status = append(status, "SchedulingDisabled")
	}

	roles := strings.Join(findNodeRoles(&node), ",")
	if len(roles) == 0 {
		roles = "<none>"
	}

	info := node.Status.NodeInfo
	osImage, kernelVersion, crVersion := info.OSImage, info.KernelVersion, info.ContainerRuntimeVersion
	if osImage == "" {
		osImage = "<unknown>"
	}
	if kernelVersion == "" {
		kernelVersion = "<unknown>"
	}
	if crVersion == "" {
		crVersion = "<unknown>"
	}
	if info.Architecture != "" {
		kernelVersion += " (" + info.Architecture + ")"
	}
	return []any{
		node.Name, strings.Join(status, ","), roles, age(node.CreationTimestamp), info.KubeletVersion,
		nodeAddress(&node, corev1.NodeInternalIP), nodeAddress(&node, corev1.NodeExternalIP), osImage, kernelVersion, crVersion,
	}, nil
}

// nodeAddress returns the node's first address of type t.
func nodeAddress(node *corev1.Node, t corev1.NodeAddressType) string {
	for _, address := range node.Status.Addresses {
		if address.Type == t {
			return address.Address
		}
	}
	return "<none>"
}

// findNodeRoles reads roles from node-role.kubernetes.io/<role> labels, whatever
// their value, and from the older kubernetes.io/role=<role> label.
func findNodeRoles(node *corev1.Node) []string {
	roles := map[string]bool{}
	for k, v := range node.Labels {
		switch {
		case strings.HasPrefix(k, labelNodeRolePrefix):
			if role := strings.TrimPrefix(k, labelNodeRolePrefix); len(role) > 0 {
				roles[role] = true
			}
		case k == nodeLabelRole && v != "":
			roles[v] = true
		}
	}
	list := make([]string, 0, len(roles))
	for r := range roles {
		list = append(list, r)
	}
	sort.Strings(list)
	return list
}
