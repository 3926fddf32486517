// Package api is krm's versioned HTTP API: the wire types, the server
// handlers and a Go client, so the plugin and any Go program share them.
//
// Everything lives under /api/v1/. A list answers with a body shaped like a
// Kubernetes List (apiVersion, kind, metadata.resourceVersion, items) so any
// Kubernetes decoder reads it; krm's own metadata travels beside it in the
// top-level "krm" field.
package api

import (
	"encoding/json"
	"time"

	"github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

// Version is the API version in every path.
const Version = "v1"

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
)

// ResourceList is the body of GET /api/v1/resources.
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

// FrameHeader is the served frame's header.
type FrameHeader struct {
	Cluster         string    `json:"cluster,omitempty"`
	Resource        string    `json:"resource"`
	View            string    `json:"view"` // aggregated, verified or streamed
	ResourceVersion string    `json:"resourceVersion,omitempty"`
	VerifiedAt      time.Time `json:"verifiedAt,omitzero"`
	// VerifiedResourceVersion is the last LIST's resourceVersion.
	VerifiedResourceVersion string `json:"verifiedResourceVersion,omitempty"`
	// Rows counts the view's live objects before filtering; Returned
	// counts the items of this response.
	Rows     int `json:"rows"`
	Returned int `json:"returned"`
}

// RowMeta is krm's provenance for one item, in the items' order.
type RowMeta struct {
	UID             string    `json:"uid"`
	Namespace       string    `json:"namespace,omitempty"`
	Name            string    `json:"name"`
	ResourceVersion string    `json:"resourceVersion"`
	Source          string    `json:"source"` // verified or streamed
	ObservedAt      time.Time `json:"observedAt,omitzero"`
}

// ListMeta is the "krm" field of a list.
type ListMeta struct {
	Header FrameHeader `json:"header"`
	Rows   []RowMeta   `json:"rows"`
}

// ObjectMeta is the "krm" field of a single-object answer.
type ObjectMeta struct {
	Header FrameHeader `json:"header"`
	Row    RowMeta     `json:"row"`
}

// Object is the body of GET .../{name}: the object's fields at the top level
// (it decodes as the Kubernetes object), plus "krm".
// The server writes it by splicing; clients decode it with DecodeObject.

// Event is one line of a ?watch=true stream (newline-delimited JSON).
type Event struct {
	// Type is ADDED, MODIFIED, DELETED, or ERROR.
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object,omitempty"`
	Row    *RowMeta        `json:"krm,omitempty"`
	// Message explains an ERROR event.
	Message string `json:"message,omitempty"`
}

// Error is the body of every error answer.
type Error struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }
