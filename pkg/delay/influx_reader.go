package delay

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"
	"github.com/influxdata/influxdb-client-go/v2/api/query"
)

// InfluxReader computes delay statistics from the samples InfluxWriter
// wrote, with Flux queries. Quantiles use quantile(method:
// "exact_selector"), which is nearest-rank like Window, so both give the
// same figures for the same samples (Mean may differ in the last
// nanoseconds, from float rounding). Unmeasured counts come from the
// MeasurementUnmeasured points.
type InfluxReader struct {
	cfg     InfluxConfig
	cluster string
	client  influxdb2.Client
	query   api.QueryAPI
}

// NewInfluxReader returns a reader of the samples of cluster (empty: of all
// clusters) in the bucket of cfg. Only URL, Token, Org, Bucket and Timeout
// of cfg are used. Close it when done.
func NewInfluxReader(cfg InfluxConfig, cluster string) (*InfluxReader, error) {
	cfg, err := cfg.complete()
	if err != nil {
		return nil, err
	}
	client := cfg.client()
	return &InfluxReader{cfg: cfg, cluster: cluster, client: client, query: client.QueryAPI(cfg.Org)}, nil
}

// Close releases the reader's connections.
func (r *InfluxReader) Close() { r.client.Close() }

// Stats is Window.Stats over the samples in InfluxDB: per resource and event
// type, the samples received at or after since that match resource and
// event (empty matches all), sorted by resource then event.
func (r *InfluxReader) Stats(ctx context.Context, since time.Time, resource, event string) ([]Stats, error) {
	var q strings.Builder
	fmt.Fprintf(&q, "data = %s\n  |> group(columns: [\"resource\", \"event\"])\n", r.from(Measurement, "delay_seconds", since, resource, event))
	for _, a := range []struct{ name, fn string }{
		{"count", "count()"},
		{"mean", "mean()"},
		{"min", "min()"},
		{"max", "max()"},
		{"p50", `quantile(q: 0.5, method: "exact_selector")`},
		{"p90", `quantile(q: 0.9, method: "exact_selector")`},
		{"p99", `quantile(q: 0.99, method: "exact_selector")`},
	} {
		fmt.Fprintf(&q, "data |> %s |> yield(name: %q)\n", a.fn, a.name)
	}
	fmt.Fprintf(&q, "%s\n  |> group(columns: [\"resource\", \"event\"])\n  |> sum()\n  |> yield(name: \"unmeasured\")\n",
		r.from(MeasurementUnmeasured, "count", since, resource, event))

	byKey := make(map[seriesKey]*Stats)
	err := r.run(ctx, q.String(), func(rec *query.FluxRecord) error {
		k := seriesKey{resource: stringValue(rec, "resource"), event: stringValue(rec, "event")}
		st := byKey[k]
		if st == nil {
			st = &Stats{Resource: k.resource, Event: k.event}
			byKey[k] = st
		}
		switch rec.Result() {
		case "count":
			return intInto(&st.Count, rec)
		case "unmeasured":
			return intInto(&st.Unmeasured, rec)
		case "mean":
			return durationInto(&st.Mean, rec)
		case "min":
			return durationInto(&st.Min, rec)
		case "max":
			return durationInto(&st.Max, rec)
		case "p50":
			return durationInto(&st.P50, rec)
		case "p90":
			return durationInto(&st.P90, rec)
		case "p99":
			return durationInto(&st.P99, rec)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Stats, 0, len(byKey))
	for _, st := range byKey {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b Stats) int {
		return cmp.Or(cmp.Compare(a.Resource, b.Resource), cmp.Compare(a.Event, b.Event))
	})
	return out, nil
}

// Series is Window.Series over the samples in InfluxDB.
func (r *InfluxReader) Series(ctx context.Context, since time.Time, step time.Duration, resource, event string) ([]Point, error) {
	start := rangeStart(since)
	var q strings.Builder
	fmt.Fprintf(&q, "data = %s\n  |> group()\n", r.from(Measurement, "delay_seconds", since, resource, event))
	// Each aggregate as aggregateWindow's fn, and as a call over the whole
	// range for step <= 0 (one bucket, which starts at the range start).
	for _, a := range []struct{ name, windowFn, call string }{
		{"count", "count", "count()"},
		{"p50", `(column, tables=<-) => tables |> quantile(q: 0.5, method: "exact_selector", column: column)`, `quantile(q: 0.5, method: "exact_selector")`},
		{"p90", `(column, tables=<-) => tables |> quantile(q: 0.9, method: "exact_selector", column: column)`, `quantile(q: 0.9, method: "exact_selector")`},
		{"p99", `(column, tables=<-) => tables |> quantile(q: 0.99, method: "exact_selector", column: column)`, `quantile(q: 0.99, method: "exact_selector")`},
		{"max", "max", "max()"},
	} {
		if step > 0 {
			fmt.Fprintf(&q, "data |> aggregateWindow(every: %dns, fn: %s, createEmpty: false, timeSrc: \"_start\") |> yield(name: %q)\n",
				step.Nanoseconds(), a.windowFn, a.name)
		} else {
			fmt.Fprintf(&q, "data |> %s |> yield(name: %q)\n", a.call, a.name)
		}
	}

	byTime := make(map[int64]*Point)
	err := r.run(ctx, q.String(), func(rec *query.FluxRecord) error {
		at := start
		if step > 0 {
			at = rec.Time().UTC()
		}
		p := byTime[at.UnixNano()]
		if p == nil {
			p = &Point{At: at}
			byTime[at.UnixNano()] = p
		}
		switch rec.Result() {
		case "count":
			var n int64
			if err := intInto(&n, rec); err != nil {
				return err
			}
			p.Count = int(n)
		case "p50":
			return durationInto(&p.P50, rec)
		case "p90":
			return durationInto(&p.P90, rec)
		case "p99":
			return durationInto(&p.P99, rec)
		case "max":
			return durationInto(&p.Max, rec)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Point, 0, len(byTime))
	for _, p := range byTime {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b Point) int { return a.At.Compare(b.At) })
	return out, nil
}

// from returns the Flux source of the points of measurement's field that
// match the reader's cluster and resource and event (empty matches all),
// received at or after since.
func (r *InfluxReader) from(measurement, field string, since time.Time, resource, event string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "from(bucket: %s)\n  |> range(start: %s)\n  |> filter(fn: (r) => r._measurement == %s and r._field == %s",
		fluxString(r.cfg.Bucket), rangeStart(since).Format(time.RFC3339Nano), fluxString(measurement), fluxString(field))
	for _, t := range [...]struct{ k, v string }{{"cluster", r.cluster}, {"resource", resource}, {"event", event}} {
		if t.v != "" {
			fmt.Fprintf(&b, " and r.%s == %s", t.k, fluxString(t.v))
		}
	}
	b.WriteString(")")
	return b.String()
}

// run runs a Flux query and calls fn for each record.
func (r *InfluxReader) run(ctx context.Context, flux string, fn func(*query.FluxRecord) error) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	res, err := r.query.Query(ctx, flux)
	if err != nil {
		return fmt.Errorf("querying delay samples in InfluxDB %s bucket %s: %w", r.cfg.URL, r.cfg.Bucket, authError(err, r.cfg.Bucket))
	}
	defer res.Close()
	for res.Next() {
		if err := fn(res.Record()); err != nil {
			return fmt.Errorf("reading delay statistics from InfluxDB %s: %w", r.cfg.URL, err)
		}
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("reading delay statistics from InfluxDB %s: %w", r.cfg.URL, err)
	}
	return nil
}

// fluxString quotes s as a Flux string literal.
func fluxString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`, "\n", `\n`, "\r", `\r`, "\t", `\t`).Replace(s) + `"`
}

func stringValue(rec *query.FluxRecord, key string) string {
	s, _ := rec.ValueByKey(key).(string)
	return s
}

func intInto(dst *int64, rec *query.FluxRecord) error {
	switch v := rec.Value().(type) {
	case int64:
		*dst = v
	case nil:
	default:
		return fmt.Errorf("%s of %s %s is %T, want an integer", rec.Result(), stringValue(rec, "resource"), stringValue(rec, "event"), v)
	}
	return nil
}

func durationInto(dst *time.Duration, rec *query.FluxRecord) error {
	switch v := rec.Value().(type) {
	case float64:
		*dst = time.Duration(math.Round(v * float64(time.Second)))
	case nil:
	default:
		return fmt.Errorf("%s of %s %s is %T, want a float", rec.Result(), stringValue(rec, "resource"), stringValue(rec, "event"), v)
	}
	return nil
}
