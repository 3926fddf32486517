package delay

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

func TestRecorderFansOut(t *testing.T) {
	sink, srv := newLineSink(t)
	reg := prometheus.NewRegistry()
	influx, err := NewInfluxWriter(InfluxConfig{URL: srv.URL, Bucket: "krm", FlushInterval: time.Hour}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	stop := startWriter(t, influx)
	now := time.Unix(1_777_000_100, 0)
	rec, err := NewRecorder(RecorderOptions{Window: NewWindow(10), Registerer: reg, Influx: influx, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}

	at := time.Unix(1_777_000_000, 0)
	rec.Record(Sample{Cluster: "c1", Resource: "pods", Namespace: "ns", Event: Added, Delay: 2 * time.Second, ResourceVersion: 7, At: at})
	rec.Record(Sample{Cluster: "c1", Resource: "pods", Namespace: "ns", Event: Deleted, Delay: -20 * time.Second, ResourceVersion: 8, At: at.Add(time.Second)})
	rec.RecordUnmeasured("c1", "pods", Deleted)
	stop()

	wantStats := []Stats{
		{Resource: "pods", Event: Added, Count: 1, Min: 2 * time.Second, P50: 2 * time.Second, P90: 2 * time.Second, P99: 2 * time.Second, Max: 2 * time.Second, Mean: 2 * time.Second},
		{Resource: "pods", Event: Deleted, Count: 1, Unmeasured: 1, Min: -20 * time.Second, P50: -20 * time.Second, P90: -20 * time.Second, P99: -20 * time.Second, Max: -20 * time.Second, Mean: -20 * time.Second},
	}
	if diff := cmp.Diff(wantStats, rec.Window().Stats(time.Time{}, "", "")); diff != "" {
		t.Errorf("window Stats (-want +got):\n%s", diff)
	}

	if got := metric(t, reg, "krm_stream_delay_seconds", "resource", "pods", "event", Added); got != 1 {
		t.Errorf("krm_stream_delay_seconds{pods,ADDED} count = %v, want 1", got)
	}
	// The negative DELETED delay lands in the le=-10 bucket, not below.
	buckets := bucketCounts(t, reg, "krm_stream_delay_seconds", "resource", "pods", "event", Deleted)
	if got := [3]uint64{buckets[-30], buckets[-10], buckets[0]}; got != [3]uint64{0, 1, 1} {
		t.Errorf("krm_stream_delay_seconds{pods,DELETED} buckets le=-30,-10,0 = %v, want [0 1 1]", got)
	}
	if got := metric(t, reg, "krm_stream_delay_unmeasured_total", "resource", "pods", "event", Deleted); got != 1 {
		t.Errorf("krm_stream_delay_unmeasured_total{pods,DELETED} = %v, want 1", got)
	}

	want := []string{
		`krm_stream_delay,cluster=c1,event=ADDED,namespace=ns,resource=pods delay_seconds=2,resource_version=7i 1777000000000000000`,
		`krm_stream_delay,cluster=c1,event=DELETED,namespace=ns,resource=pods delay_seconds=-20,resource_version=8i 1777000001000000000`,
		`krm_stream_delay_unmeasured,cluster=c1,event=DELETED,resource=pods count=1i 1777000100000000000`,
	}
	if diff := cmp.Diff(want, sink.Lines()); diff != "" {
		t.Errorf("lines written to InfluxDB (-want +got):\n%s", diff)
	}
}

// Two recorders on one registry share the metrics instead of failing.
func TestRecorderSharesRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := NewRecorder(RecorderOptions{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewRecorder(RecorderOptions{Registerer: reg})
	if err != nil {
		t.Fatalf("second NewRecorder on the same registry: %v", err)
	}
	a.Record(Sample{Resource: "pods", Event: Added, Delay: time.Second, At: t0})
	b.Record(Sample{Resource: "pods", Event: Added, Delay: time.Second, At: t0})
	if got := metric(t, reg, "krm_stream_delay_seconds", "resource", "pods", "event", Added); got != 2 {
		t.Errorf("krm_stream_delay_seconds{pods,ADDED} count = %v, want 2", got)
	}
	if a.Window() == b.Window() || a.Window().Size() != DefaultWindowSize {
		t.Errorf("each recorder without a Window gets its own of DefaultWindowSize")
	}
}

func TestNewRecorderRegistrationConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	// Same name, different labels: not the recorder's metric.
	reg.MustRegister(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "krm_stream_delay_unmeasured_total", Help: "other"}, []string{"kind"}))
	if _, err := NewRecorder(RecorderOptions{Registerer: reg}); err == nil {
		t.Error("NewRecorder succeeded with a conflicting metric registered, want an error")
	}
}

func BenchmarkRecorderRecord(b *testing.B) {
	rec, err := NewRecorder(RecorderOptions{Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	s := Sample{Cluster: "c", Resource: "pods", Namespace: "default", Event: Added, Delay: time.Second, At: t0}
	b.ReportAllocs()
	for b.Loop() {
		s.At = s.At.Add(time.Millisecond)
		rec.Record(s)
	}
}
