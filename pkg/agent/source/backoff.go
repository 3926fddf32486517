package source

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Retry delays of the list and watch loops: the streamer and the probe's
// watch resume from WatchRetryMin, the verifier and the probe's first LIST
// from ListRetryMin, all doubling up to RetryMax.
const (
	WatchRetryMin = 100 * time.Millisecond
	ListRetryMin  = time.Second
	RetryMax      = 30 * time.Second
)

// Backoff is a loop's retry delay: exponential from a minimum up to a cap,
// with 10% jitter so that many loops failing together (every resource's
// watch when kube-apiserver restarts) do not retry in step. It is
// wait.Backoff, restarted from the minimum by Reset.
type Backoff struct {
	initial wait.Backoff
	cur     wait.Backoff
}

// NewBackoff starts at minimum and doubles up to maximum.
func NewBackoff(minimum, maximum time.Duration) *Backoff {
	b := wait.Backoff{Duration: minimum, Factor: 2, Jitter: 0.1, Steps: int(^uint(0) >> 1), Cap: maximum}
	return &Backoff{initial: b, cur: b}
}

// Next returns the delay before the next try and grows the following one.
func (b *Backoff) Next() time.Duration { return b.cur.Step() }

// Reset starts the delays over from the minimum, after a success.
func (b *Backoff) Reset() { b.cur = b.initial }

// Wait sleeps for d, reporting false if ctx ended first.
func Wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Result is a call's outcome as metrics label it: ok or error.
func Result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}
