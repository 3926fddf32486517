// Package api is the contract between the agent's cache and its HTTP
// server: the interfaces the server reads the cache through (Backend,
// Resource, Snapshot, Change) and the agent-side names of krm.io's types.
// The server is pkg/server, the Go client pkg/client.
package api

import "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"

// DefaultResources are the resources an agent watches unless told otherwise.
var DefaultResources = []string{"pods", "deployments", "persistentvolumeclaims", "services", "ingresses", "nodes"}

// Freshness headers, set on every read.
const (
	HeaderVerifiedAt              = v1alpha1.HeaderVerifiedAt
	HeaderVerifiedResourceVersion = v1alpha1.HeaderVerifiedResourceVersion
	HeaderResourceVersion         = v1alpha1.HeaderResourceVersion
	HeaderStreamLag               = v1alpha1.HeaderStreamLag
	HeaderStale                   = v1alpha1.HeaderStale
	HeaderAgentVersion            = v1alpha1.HeaderAgentVersion
)

// The wire types of krm's own state live in krm.io/v1alpha1; these names
// are theirs.
type (
	ResourceInfo   = v1alpha1.ResourceInfo
	PrinterColumn  = v1alpha1.PrinterColumn
	ObjectCounts   = v1alpha1.ObjectCounts
	DriftCounts    = v1alpha1.DriftCounts
	ResourceStatus = v1alpha1.ResourceState
	StoreStatus    = v1alpha1.StoreStatus
	DriftEntry     = v1alpha1.DriftEntry
	// UnverifiedChange is an object changed since the last LIST.
	UnverifiedChange = v1alpha1.UnverifiedChange
	DriftReport      = v1alpha1.DriftState
	DelayStats       = v1alpha1.DelayStats
	DelayPoint       = v1alpha1.DelayPoint
	DelayReport      = v1alpha1.DelayState
)

// Drift kinds in the ledger, and change types of the unverified part.
const (
	MissedAdded    = v1alpha1.MissedAdded
	MissedDeleted  = v1alpha1.MissedDeleted
	MissedModified = v1alpha1.MissedModified
	ChangeAdded    = v1alpha1.ChangeAdded
	ChangeModified = v1alpha1.ChangeModified
	ChangeDeleted  = v1alpha1.ChangeDeleted
	// MaxUnverified bounds a drift report's unverified changes.
	MaxUnverified = v1alpha1.MaxUnverified
)

// ResourceList is the agent's status with every resource's, as the server
// turns it into krm.io's AgentStatus and ResourceStatuses.
type ResourceList struct {
	AgentVersion string           `json:"agentVersion,omitempty"`
	Cluster      string           `json:"cluster,omitempty"`
	Store        StoreStatus      `json:"store"`
	Resources    []ResourceStatus `json:"resources"`
	// Role is "leader" or "follower" when replicas elect a leader (the
	// leader watches and writes the store; followers serve what it wrote);
	// Leader is the leader's identity.
	Role   string `json:"role,omitempty"`
	Leader string `json:"leader,omitempty"`
}
