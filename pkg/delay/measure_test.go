package delay

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMeasure(t *testing.T) {
	created := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	due := metav1.NewTime(created.Add(30 * time.Second))
	withCreation := &metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(created)}
	withDeletion := &metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(created), DeletionTimestamp: &due}
	received := created.Add(1500 * time.Millisecond)

	type want struct {
		d  time.Duration
		ok bool
	}
	for _, tc := range []struct {
		name  string
		event string
		obj   metav1.Object
		want  want
	}{
		{"added", Added, withCreation, want{1500 * time.Millisecond, true}},
		{"added without creationTimestamp", Added, &metav1.ObjectMeta{}, want{0, false}},
		{"deleted before the grace period ends is negative", Deleted, withDeletion, want{-28500 * time.Millisecond, true}},
		{"deleted without deletionTimestamp", Deleted, withCreation, want{0, false}},
		{"modified carries no delay", "MODIFIED", withDeletion, want{0, false}},
		{"nil object", Added, nil, want{0, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := Measure(tc.event, tc.obj, received)
			if got := (want{d, ok}); got != tc.want {
				t.Errorf("Measure(%s) = %v, %v; want %v, %v", tc.event, d, ok, tc.want.d, tc.want.ok)
			}
		})
	}
}

func TestMeasureNegativeAdded(t *testing.T) {
	created := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	obj := &metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(created)}
	d, ok := Measure(Added, obj, created.Add(-2*time.Second))
	if !ok || d != -2*time.Second {
		t.Errorf("Measure(ADDED, received 2s before creation) = %v, %v; want -2s, true (a skewed clock is shown, not hidden)", d, ok)
	}
}

func TestMeasures(t *testing.T) {
	for event, want := range map[string]bool{Added: true, Deleted: true, "MODIFIED": false, "BOOKMARK": false, "": false} {
		if got := Measures(event); got != want {
			t.Errorf("Measures(%q) = %v, want %v", event, got, want)
		}
	}
}
