package agent

import (
	"fmt"
	"time"

	"github.com/krm-project/krm/pkg/agent/aggregate"
	"github.com/krm-project/krm/pkg/agent/aggregate/aggregatetest"
	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/store"
)

// The runner's and the store writer's tests drive an aggregator as the
// aggregate package's own tests do.

var t0 = aggregatetest.T0

const (
	added    = api.EventAdded
	modified = api.EventModified
	deleted  = api.EventDeleted
)

var row = aggregatetest.Row

func listed(rv uint64, rows ...*store.Row) aggregate.Verification {
	return aggregate.Verification{Rows: rows, RV: rv, At: t0}
}

// view summarises a snapshot as name -> rv/source.
func view(a *aggregate.Aggregator, v store.Source) map[string]string {
	out := map[string]string{}
	for _, r := range a.Snapshot(v).Rows.Slice() {
		out[r.Name] = fmt.Sprintf("%d/%s", r.ResourceVersion, r.Source)
	}
	return out
}

func newTestAggregator() *aggregate.Aggregator {
	return aggregate.New("test", "pods", func() time.Time { return t0 })
}
