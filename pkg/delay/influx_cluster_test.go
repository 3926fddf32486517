package delay

import (
	crand "crypto/rand"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/krm-project/krm/test/cluster/clustertest"
)

// TestInfluxAgreesWithWindow writes samples through InfluxWriter to the
// local cluster's InfluxDB 1.8 and checks that InfluxReader's statistics
// equal the Window's on the same samples.
func TestInfluxAgreesWithWindow(t *testing.T) {
	c := clustertest.Get(t)
	// InfluxDB is shared: this test's points carry their own cluster tag,
	// and the reader only reads those.
	cluster := "delaytest-" + strings.ToLower(crand.Text()[:12])
	cfg := InfluxConfig{URL: c.InfluxURL, Bucket: "krm", BatchSize: 100}

	reg := prometheus.NewRegistry()
	writer, err := NewInfluxWriter(cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	stop := startWriter(t, writer)
	window := NewWindow(10_000)

	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Now().Add(-30 * time.Minute).Truncate(time.Minute)
	// Mid-minute, so the first bucket of a series is clipped to it; samples
	// before it are out of range.
	since := base.Add(2*time.Minute + 30*time.Second)
	const n = 900
	resources := []string{"pods", "deployments", "services"}
	var points int
	for i := range n {
		at := base.Add(time.Duration(i)*1900*time.Millisecond + time.Duration(rng.IntN(1000)))
		resource := resources[rng.IntN(len(resources))]
		if i%23 == 0 {
			window.RecordUnmeasured(resource, Deleted, at)
			writer.RecordUnmeasured(cluster, resource, Deleted, at)
			points++
			continue
		}
		s := Sample{Cluster: cluster, Resource: resource, Namespace: "ns" + string(rune('a'+i%3)), Event: Added, ResourceVersion: uint64(1000 + i), At: at}
		s.Delay = time.Duration(rng.IntN(5000)) * time.Millisecond
		if rng.IntN(3) == 0 {
			s.Event = Deleted
			// Mostly before the grace period ends: negative.
			s.Delay = time.Duration(rng.IntN(33000)-30000) * time.Millisecond
		}
		window.Record(s)
		writer.Record(s)
		points++
	}
	// Another cluster's samples, which the reader must leave out.
	writer.Record(Sample{Cluster: cluster + "-other", Resource: "pods", Event: Added, Delay: time.Hour, At: base.Add(10 * time.Minute)})
	points++
	stop()
	if got := metric(t, reg, "krm_influx_points_written_total"); got != float64(points) {
		t.Fatalf("krm_influx_points_written_total = %v, want %d (write errors: %v)", got, points, metric(t, reg, "krm_influx_write_errors_total"))
	}

	reader, err := NewInfluxReader(cfg, cluster)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	ctx := t.Context()

	// Means are computed in float by both, in different units and order.
	approxMean := cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Mean" },
		cmp.Comparer(func(a, b time.Duration) bool { return (a - b).Abs() <= time.Microsecond }))
	for _, f := range []struct{ resource, event string }{{"", ""}, {"pods", ""}, {"", Deleted}, {"services", Added}} {
		want := window.Stats(since, f.resource, f.event)
		if len(want) == 0 {
			t.Fatalf("the window has no stats for %+v: the test data is wrong", f)
		}
		got, err := reader.Stats(ctx, since, f.resource, f.event)
		if err != nil {
			t.Fatalf("InfluxReader.Stats(%+v): %v", f, err)
		}
		if diff := cmp.Diff(want, got, approxMean, cmpopts.IgnoreFields(Stats{}, "Truncated")); diff != "" {
			t.Errorf("Stats(resource %q, event %q): window (-) and InfluxDB (+) differ:\n%s", f.resource, f.event, diff)
		}
	}

	for _, f := range []struct {
		step            time.Duration
		resource, event string
	}{{time.Minute, "", ""}, {7 * time.Minute, "pods", Deleted}, {0, "", Added}} {
		want := window.Series(since, f.step, f.resource, f.event)
		got, err := reader.Series(ctx, since, f.step, f.resource, f.event)
		if err != nil {
			t.Fatalf("InfluxReader.Series(%+v): %v", f, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Series(step %v, resource %q, event %q): window (-) and InfluxDB (+) differ:\n%s", f.step, f.resource, f.event, diff)
		}
	}

	if got, err := reader.Stats(ctx, time.Now(), "", ""); err != nil || len(got) != 0 {
		t.Errorf("Stats since now = %+v, %v; want nothing", got, err)
	}
}
