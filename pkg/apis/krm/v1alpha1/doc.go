// Package v1alpha1 is krm's own API group, krm.io/v1alpha1: the agent's
// status, each cached resource's status, drift reports and stream-delay
// reports, as typed Kubernetes objects. It depends on nothing beyond
// apimachinery, so any Go program can decode what the agent serves.
//
// +k8s:deepcopy-gen=package
// +groupName=krm.io
package v1alpha1

import "k8s.io/apimachinery/pkg/runtime/schema"

// GroupName is krm's API group.
const GroupName = "krm.io"

// SchemeGroupVersion is the group and version of these types.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// Resource names of krm.io/v1alpha1, as discovery lists them.
const (
	ResourceAgentStatuses    = "agentstatuses"
	ResourceResourceStatuses = "resourcestatuses"
	ResourceDriftReports     = "driftreports"
	ResourceDelayReports     = "delayreports"
)

// AgentName is the name of the one AgentStatus an agent serves.
const AgentName = "agent"

// ProbeName is the name of the DelayReport of the agent's canary probe,
// which is not a cached resource.
const ProbeName = "probe"
