package v1alpha1

import (
	"encoding/json"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AgentStatus is the agent as a whole: its version, the cluster it caches,
// its store, and, with leader election, its role. There is one, named
// "agent".
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type AgentStatus struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Status            AgentState `json:"status"`
}

// AgentState is the status of an AgentStatus.
type AgentState struct {
	AgentVersion string      `json:"agentVersion,omitempty"`
	Cluster      string      `json:"cluster,omitempty"`
	Store        StoreStatus `json:"store"`
	// Role is "leader" or "follower" when replicas elect a leader (the
	// leader watches and writes the store; followers serve what it wrote);
	// Leader is the leader's identity.
	Role   string `json:"role,omitempty"`
	Leader string `json:"leader,omitempty"`
	// Ready is what /readyz says; ReadyMessage why, or what the agent
	// serves short of the best.
	Ready        bool   `json:"ready"`
	ReadyMessage string `json:"readyMessage,omitempty"`
}

// AgentStatusList is a list of AgentStatus.
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type AgentStatusList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AgentStatus `json:"items"`
}

// StoreStatus says where frames are kept and whether that works.
type StoreStatus struct {
	Kind    string `json:"kind"` // memory or redis
	Healthy bool   `json:"healthy"`
	// Message explains an unhealthy store.
	Message string `json:"message,omitempty"`
}

// ResourceStatus is one cached resource's state, named after the resource
// ("pods", "deployments", "certificates.cert-manager.io").
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type ResourceStatus struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Status            ResourceState `json:"status"`
}

// ResourceStatusList is a list of ResourceStatus.
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type ResourceStatusList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ResourceStatus `json:"items"`
}

// ResourceInfo names a watched resource as discovery resolved it.
type ResourceInfo struct {
	// Name is the resource's key: the plural, group-qualified outside
	// the core group's collisions (e.g. "pods", "deployments",
	// "certificates.cert-manager.io").
	Name       string   `json:"name"`
	Group      string   `json:"group,omitempty"`
	Version    string   `json:"version"`
	Resource   string   `json:"resource"` // plural
	Kind       string   `json:"kind"`
	Namespaced bool     `json:"namespaced"`
	ShortNames []string `json:"shortNames,omitempty"`
	// Categories are discovery's groupings, such as "all" for kubectl get
	// all.
	Categories []string `json:"categories,omitempty"`
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
	// Description is the CRD's own, if it gives one.
	Description string `json:"description,omitempty"`
}

// Names are the names the resource answers to, as kubectl accepts them:
// the key, the plural, the kind in lower case, plural.group and the short
// names.
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

// ResourceState is the status of a ResourceStatus: what is cached and how
// fresh it is.
type ResourceState struct {
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
	// DriftPending counts objects a landed LIST and the stream disagree on
	// that wait for the watch to deliver up to that LIST's resourceVersion:
	// drift is judged only up to what the watch delivered, so each is
	// settled by its event arriving (no drift) or by the watch passing the
	// LIST without it (drift). A quiet watch passes it at its next
	// bookmark, about once a minute.
	DriftPending int `json:"driftPending,omitempty"`
	// DriftUnjudged counts candidates given up on undecided: the watch
	// restarted past them, or more than 10,000 were waiting.
	DriftUnjudged int64 `json:"driftUnjudged,omitempty"`
	// Stale is true while the frames come from a warm restart and no new
	// LIST has landed yet.
	Stale     bool   `json:"stale,omitempty"`
	LastError string `json:"lastError,omitempty"`
	// ForgottenDeletions counts deleted objects whose tombstones were
	// dropped since the last LIST to keep memory bounded while LISTs fail:
	// their deletions are applied but missing from the drift report's
	// unverified changes.
	ForgottenDeletions int64 `json:"forgottenDeletions,omitempty"`
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

// DriftReport is what one resource's stream got wrong (the ledger) and what
// it holds that no LIST has confirmed yet, named after the resource.
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type DriftReport struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Status            DriftState `json:"status"`
}

// DriftReportList is a list of DriftReport.
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type DriftReportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DriftReport `json:"items"`
}

// DriftState is the status of a DriftReport.
type DriftState struct {
	Resource                string             `json:"resource"`
	VerifiedAt              time.Time          `json:"verifiedAt,omitzero"`
	VerifiedResourceVersion string             `json:"verifiedResourceVersion,omitempty"`
	Ledger                  []DriftEntry       `json:"ledger"`
	Unverified              []UnverifiedChange `json:"unverified"`
	// UnverifiedOmitted counts the unverified changes left out after the
	// first MaxUnverified (in namespace/name order), to bound the report.
	UnverifiedOmitted int `json:"unverifiedOmitted,omitempty"`
}

// MaxUnverified bounds the unverified changes a drift report lists; each
// holds up to two copies of an object, so a report stays under a few MB
// however much changed since the last LIST.
const MaxUnverified = 1000

// DelayStats summarises the stream delay of one resource and event type, in
// seconds.
type DelayStats struct {
	Resource   string  `json:"resource"`
	Event      string  `json:"event"`
	Count      int64   `json:"count"`
	Unmeasured int64   `json:"unmeasured"`
	Min        float64 `json:"minSeconds"`
	P50        float64 `json:"p50Seconds"`
	P90        float64 `json:"p90Seconds"`
	P99        float64 `json:"p99Seconds"`
	Max        float64 `json:"maxSeconds"`
	Mean       float64 `json:"meanSeconds"`
	// Truncated says the in-memory window no longer holds every sample of
	// the range.
	Truncated bool `json:"truncated,omitempty"`
}

// DelayPoint is one bucket of the delay time series.
type DelayPoint struct {
	At    time.Time `json:"at"`
	Count int       `json:"count"`
	P50   float64   `json:"p50Seconds"`
	P90   float64   `json:"p90Seconds"`
	P99   float64   `json:"p99Seconds"`
	Max   float64   `json:"maxSeconds"`
}

// DelayReport is one resource's stream delay (or the canary probe's, named
// "probe"), named after the resource.
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type DelayReport struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Status            DelayState `json:"status"`
}

// DelayReportList is a list of DelayReport.
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type DelayReportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DelayReport `json:"items"`
}

// DelayState is the status of a DelayReport.
type DelayState struct {
	// Source is "influxdb" or "memory": where the statistics came from.
	Source string    `json:"source"`
	Since  time.Time `json:"since"`
	Step   string    `json:"step"`
	// Resolution is the caveat every display of delay must carry.
	Resolution string `json:"resolution"`
	// Warning says why InfluxDB was not used when it is configured.
	Warning string       `json:"warning,omitempty"`
	Stats   []DelayStats `json:"stats"`
	Series  []DelayPoint `json:"series"`
}
