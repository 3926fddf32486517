package v1alpha1

import (
	"encoding/json"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ResourceRevisions is the resource that lists an object's history:
// GET /apis/krm.io/v1alpha1/revisions?resource=&namespace=&name=[&since=].
const ResourceRevisions = "revisions"

// Revision sources: the watch delivered the revision, or a verifying LIST
// found it (a repair of an event the watch missed, or, for the first LIST
// of a history, the object as it stood when history began).
const (
	RevisionSourceWatch = "watch"
	RevisionSourceList  = "list"
)

// Revision is one revision of one object as the agent saw it. Its name is
// "<object uid>-<resourceVersion>".
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type Revision struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Resource is the cached resource as the agent names it ("pods",
	// "deployments.apps"); Namespace is "" for a cluster-scoped object.
	Resource   string `json:"resource"`
	Namespace  string `json:"namespace,omitempty"`
	ObjectName string `json:"objectName"`
	UID        string `json:"uid"`
	// Revision is the 1-based ordinal within the object's kept history.
	Revision        int       `json:"revision"`
	ResourceVersion string    `json:"resourceVersion"`
	ObservedAt      time.Time `json:"observedAt"`
	// Event is ADDED, MODIFIED or DELETED.
	Event string `json:"event"`
	// Source is RevisionSourceWatch or RevisionSourceList.
	Source string `json:"source"`
	// Managers are the object's field managers at this revision, from
	// managedFields before the agent strips them.
	Managers []ManagerEntry `json:"managers,omitempty"`
	// Changed lists the field paths changed against the previous revision
	// (none for the first), e.g. "spec.replicas".
	Changed []string `json:"changed,omitempty"`
	// Object is the full object at this revision, managedFields stripped.
	Object json.RawMessage `json:"object,omitempty"`
}

// ManagerEntry is one managedFields entry, without its field set.
type ManagerEntry struct {
	Manager   string `json:"manager"`
	Operation string `json:"operation,omitempty"`
	// Time is as managedFields give it (RFC 3339, second resolution).
	Time string `json:"time,omitempty"`
}

// RevisionList is one object's revisions, oldest first.
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type RevisionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Revision `json:"items"`
}
