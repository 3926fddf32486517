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
	"strings"
	"time"
)

// Version is the API version in every path.
const Version = "v1"

// DefaultResources are the resources an agent watches unless told otherwise.
var DefaultResources = []string{"pods", "deployments", "persistentvolumeclaims", "services", "ingresses", "nodes"}

// Freshness headers, set on every read.
const (
	HeaderVerifiedAt      = "X-Krm-Verified-At"      // RFC 3339, the last LIST's time
	HeaderResourceVersion = "X-Krm-Resource-Version" // the served view's resourceVersion
	HeaderStreamLag       = "X-Krm-Stream-Lag"       // Go duration since the watch last spoke, or "disconnected"
	HeaderStale           = "X-Krm-Stale"            // "true" while serving a restart's stored frames, before the first LIST
	HeaderAgentVersion    = "X-Krm-Agent-Version"
)

// ResourceInfo names a watched resource as discovery resolved it.
type ResourceInfo struct {
	// Name is the key used in API paths: the plural, group-qualified
	// outside the core and common groups' collisions (e.g. "pods",
	// "deployments", "certificates.cert-manager.io").
	Name       string   `json:"name"`
	Group      string   `json:"group,omitempty"`
	Version    string   `json:"version"`
	Resource   string   `json:"resource"` // plural
	Kind       string   `json:"kind"`
	Namespaced bool     `json:"namespaced"`
	ShortNames []string `json:"shortNames,omitempty"`
	// SelectableFields are the field-selector keys besides metadata.name
	// and metadata.namespace (e.g. spec.nodeName, status.phase for pods).
	SelectableFields []string `json:"selectableFields,omitempty"`
	// PrinterColumns are a custom resource's additionalPrinterColumns, for
	// tables like kubectl's; empty for built-in kinds.
	PrinterColumns []PrinterColumn `json:"printerColumns,omitempty"`
}

// PrinterColumn is one of a CRD's additionalPrinterColumns.
type PrinterColumn struct {
	Name     string `json:"name"`
	Type     string `json:"type"` // integer, number, string, boolean or date
	Format   string `json:"format,omitempty"`
	JSONPath string `json:"jsonPath"`
	Priority int32  `json:"priority,omitempty"`
}

// Names are the names the resource answers to, as kubectl accepts them:
// the key, the plural, the kind in lower case, plural.group and the short
// names. The agent resolves API paths and the plugin its arguments by them.
func (r ResourceInfo) Names() []string {
	names := []string{r.Name, r.Resource, strings.ToLower(r.Kind)}
	if r.Group != "" {
		names = append(names, r.Resource+"."+r.Group)
	}
	return append(names, r.ShortNames...)
}

// APIVersion is group/version, or version for the core group.
func (r ResourceInfo) APIVersion() string {
	if r.Group == "" {
		return r.Version
	}
	return r.Group + "/" + r.Version
}

// ObjectCounts counts live objects per view (tombstones excluded).
type ObjectCounts struct {
	Verified   int `json:"verified"`
	Streamed   int `json:"streamed"`
	Aggregated int `json:"aggregated"`
}

// DriftCounts counts what one verification found the stream had missed.
type DriftCounts struct {
	MissedAdded    int `json:"missedAdded"`
	MissedDeleted  int `json:"missedDeleted"`
	MissedModified int `json:"missedModified"`
}

// Total is the sum of the three counts.
func (d DriftCounts) Total() int { return d.MissedAdded + d.MissedDeleted + d.MissedModified }

// ResourceStatus is one resource's entry in GET /api/v1/resources.
type ResourceStatus struct {
	ResourceInfo `json:",inline"`

	// VerifiedAt is when the last LIST completed; zero before the first.
	VerifiedAt              time.Time `json:"verifiedAt,omitzero"`
	VerifiedResourceVersion string    `json:"verifiedResourceVersion,omitempty"`
	// StreamedResourceVersion is the newest resourceVersion the watch
	// delivered (events or bookmarks).
	StreamedResourceVersion string       `json:"streamedResourceVersion,omitempty"`
	Objects                 ObjectCounts `json:"objects"`
	StreamConnected         bool         `json:"streamConnected"`
	LastEventAt             time.Time    `json:"lastEventAt,omitzero"`
	Events                  int64        `json:"events"`
	// EventsPerMinute counts the events of the last minute.
	EventsPerMinute float64 `json:"eventsPerMinute"`
	Verifications   int64   `json:"verifications"`
	// LastDrift is what the last verification found; TotalDrift sums all.
	LastDrift  DriftCounts `json:"lastDrift"`
	TotalDrift DriftCounts `json:"totalDrift"`
	// Stale is true while the frames come from a warm restart and no new
	// LIST has landed yet.
	Stale     bool   `json:"stale,omitempty"`
	LastError string `json:"lastError,omitempty"`
}

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

// StoreStatus says where frames are kept and whether that works.
type StoreStatus struct {
	Kind    string `json:"kind"` // memory or redis
	Healthy bool   `json:"healthy"`
	// Message explains an unhealthy store.
	Message string `json:"message,omitempty"`
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

// Drift kinds in the ledger.
const (
	MissedAdded    = "MissedAdded"
	MissedDeleted  = "MissedDeleted"
	MissedModified = "MissedModified"
)

// DriftEntry is one event the stream missed, found by a LIST.
type DriftEntry struct {
	Kind      string `json:"kind"` // MissedAdded, MissedDeleted or MissedModified
	UID       string `json:"uid"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// StreamedResourceVersion is what the stream held ("" if nothing);
	// VerifiedResourceVersion what the LIST had ("" if it had nothing).
	StreamedResourceVersion string    `json:"streamedResourceVersion,omitempty"`
	VerifiedResourceVersion string    `json:"verifiedResourceVersion,omitempty"`
	FoundAt                 time.Time `json:"foundAt"`
	// ListResourceVersion is the resourceVersion of the LIST that found it.
	ListResourceVersion string `json:"listResourceVersion"`
	// Object is the object as the LIST had it, or as the stream held it for
	// MissedDeleted.
	Object json.RawMessage `json:"object,omitempty"`
}

// Change types of the unverified part of a drift report.
const (
	ChangeAdded    = "Added"
	ChangeModified = "Modified"
	ChangeDeleted  = "Deleted"
)

// UnverifiedChange is an object the streamed view holds that the last LIST
// has not confirmed: added, modified or deleted since verification.
type UnverifiedChange struct {
	Type      string `json:"type"` // Added, Modified or Deleted
	UID       string `json:"uid"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// ResourceVersion is the streamed one; VerifiedResourceVersion the
	// LIST's ("" for Added).
	ResourceVersion         string    `json:"resourceVersion"`
	VerifiedResourceVersion string    `json:"verifiedResourceVersion,omitempty"`
	ObservedAt              time.Time `json:"observedAt,omitzero"`
	// Object is the streamed object; Verified the LIST's copy ("" for Added).
	Object   json.RawMessage `json:"object,omitempty"`
	Verified json.RawMessage `json:"verified,omitempty"`
}

// DriftReport is the body of GET /api/v1/resources/{resource}/drift.
type DriftReport struct {
	Resource                string             `json:"resource"`
	VerifiedAt              time.Time          `json:"verifiedAt,omitzero"`
	VerifiedResourceVersion string             `json:"verifiedResourceVersion,omitempty"`
	Ledger                  []DriftEntry       `json:"ledger"`
	Unverified              []UnverifiedChange `json:"unverified"`
}

// Error is the body of every error answer.
type Error struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }
