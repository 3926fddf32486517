package delay

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Event types that carry a stream delay. They are the watch event types, so
// string(watchEvent.Type) can be passed where an event is expected.
const (
	Added   = "ADDED"
	Deleted = "DELETED"
)

// Resolution is the resolution of the object timestamps delays are measured
// against.
const Resolution = time.Second

// ResolutionNote is the caveat to show wherever a delay is shown.
const ResolutionNote = "object timestamps have 1-second resolution"

// Sample is the stream delay of one fresh watch event.
type Sample struct {
	Cluster   string
	Resource  string
	Namespace string // empty for cluster-scoped objects
	Event     string // Added or Deleted
	// Delay is At minus the object's creation (ADDED) or deletion (DELETED)
	// timestamp. It is only as precise as Resolution and is negative for a
	// DELETED event received before the deletion's grace period ended.
	Delay           time.Duration
	ResourceVersion uint64
	// At is when the agent received the event.
	At time.Time
}

// Measure returns the stream delay of an event of type event for obj,
// received at receivedAt: receivedAt − creationTimestamp for Added and
// receivedAt − deletionTimestamp for Deleted. The timestamps have 1-second
// resolution (see Resolution). A negative delay is returned as it is.
//
// ok is false when obj lacks the timestamp: such an event is to be counted as
// unmeasured (Recorder.RecordUnmeasured). ok is also false for other event
// types (MODIFIED, BOOKMARK, ERROR), which carry no delay and are neither
// samples nor unmeasured; Measures tells them apart. Callers don't call
// Measure for events replayed by a relist or a watch resume: those are not
// fresh and are not samples.
func Measure(event string, obj metav1.Object, receivedAt time.Time) (d time.Duration, ok bool) {
	if obj == nil {
		return 0, false
	}
	switch event {
	case Added:
		ts := obj.GetCreationTimestamp()
		if ts.IsZero() {
			return 0, false
		}
		return receivedAt.Sub(ts.Time), true
	case Deleted:
		ts := obj.GetDeletionTimestamp()
		if ts == nil || ts.IsZero() {
			return 0, false
		}
		return receivedAt.Sub(ts.Time), true
	}
	return 0, false
}

// Measures reports whether events of type event carry a stream delay, that
// is whether one without the timestamp counts as unmeasured.
func Measures(event string) bool {
	return event == Added || event == Deleted
}
