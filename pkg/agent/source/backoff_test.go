package source

import (
	"context"
	"testing"
	"time"
)

// Delays double from the minimum up to the cap, each within its 10%
// jitter, and Reset starts them over.
func TestBackoff(t *testing.T) {
	b := NewBackoff(100*time.Millisecond, time.Second)
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for round := range 2 {
		for i, w := range want {
			w *= time.Millisecond
			got := b.Next()
			if got < w || got > w+w/10 {
				t.Errorf("round %d, delay %d = %s, want %s plus up to 10%%", round, i, got, w)
			}
		}
		b.Reset()
	}
}

func TestWaitEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if Wait(ctx, time.Hour) {
		t.Error("Wait reported a full sleep on a cancelled context")
	}
	if !Wait(t.Context(), time.Millisecond) {
		t.Error("Wait reported a cancelled context")
	}
}
