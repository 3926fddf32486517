package delay

import (
	"context"
	"fmt"
	"time"

	"github.com/krm-project/krm/pkg/api"
)

// Source answers the API's delay queries: from InfluxDB when one is
// configured, from the in-memory window otherwise, or when InfluxDB fails.
type Source struct {
	Window *Window
	Influx *InfluxReader // optional
}

var _ api.DelaySource = (*Source)(nil)

// Delay implements api.DelaySource.
func (s *Source) Delay(ctx context.Context, q api.DelayQuery) (*api.DelayReport, error) {
	rep := &api.DelayReport{Since: q.Since, Step: q.Step.String(), Resolution: ResolutionNote}
	if s.Influx != nil {
		stats, err := s.Influx.Stats(ctx, q.Since, q.Resource, q.Event)
		var series []Point
		if err == nil {
			series, err = s.Influx.Series(ctx, q.Since, q.Step, q.Resource, q.Event)
		}
		if err == nil {
			rep.Source = "influxdb"
			fill(rep, stats, series)
			return rep, nil
		}
		rep.Warning = fmt.Sprintf("InfluxDB failed (%v); these statistics are the agent's in-memory window", err)
	}
	if s.Window == nil {
		return nil, fmt.Errorf("no delay window")
	}
	rep.Source = "memory"
	fill(rep, s.Window.Stats(q.Since, q.Resource, q.Event), s.Window.Series(q.Since, q.Step, q.Resource, q.Event))
	return rep, nil
}

func fill(rep *api.DelayReport, stats []Stats, series []Point) {
	rep.Stats = make([]api.DelayStats, 0, len(stats))
	for _, st := range stats {
		rep.Stats = append(rep.Stats, api.DelayStats{
			Resource: st.Resource, Event: st.Event, Count: st.Count, Unmeasured: st.Unmeasured,
			Min: seconds(st.Min), P50: seconds(st.P50), P90: seconds(st.P90), P99: seconds(st.P99),
			Max: seconds(st.Max), Mean: seconds(st.Mean), Truncated: st.Truncated,
		})
	}
	rep.Series = make([]api.DelayPoint, 0, len(series))
	for _, p := range series {
		rep.Series = append(rep.Series, api.DelayPoint{At: p.At, Count: p.Count, P50: seconds(p.P50), P90: seconds(p.P90), P99: seconds(p.P99), Max: seconds(p.Max)})
	}
}

func seconds(d time.Duration) float64 { return d.Seconds() }
