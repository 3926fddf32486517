package api

import (
	"context"
	"time"
)

// ProbeResource is the resource name of the agent's canary probe rows:
// not a watched resource, but a delay report of its own.
const ProbeResource = "probe"

// DelayQuery selects delay statistics: "" resource or event means all.
type DelayQuery struct {
	Resource string
	Event    string // ADDED, DELETED or ""
	Since    time.Time
	// Step is the time series' bucket width.
	Step time.Duration
}

// DelaySource answers delay queries; the agent's delay recorder (memory)
// or an InfluxDB reader implements it.
type DelaySource interface {
	Delay(ctx context.Context, q DelayQuery) (*DelayReport, error)
}
