package delay

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func sec(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// record adds samples of resource and event with the given delays, received
// one millisecond apart from at.
func record(w *Window, resource, event string, at time.Time, delays ...time.Duration) {
	for i, d := range delays {
		w.Record(Sample{Cluster: "c", Resource: resource, Event: event, Delay: d, At: at.Add(time.Duration(i) * time.Millisecond)})
	}
}

func TestWindowStats(t *testing.T) {
	w := NewWindow(100)
	// 10 ADDED pods delays 1s..10s, in shuffled order.
	record(w, "pods", Added, t0, sec(7), sec(1), sec(10), sec(3), sec(5), sec(2), sec(9), sec(4), sec(8), sec(6))
	// DELETED pods: negative delays are kept.
	record(w, "pods", Deleted, t0, sec(-28.5), sec(-3), sec(0.5))
	w.RecordUnmeasured("pods", Deleted, t0)
	w.RecordUnmeasured("pods", Deleted, t0)
	// Only unmeasured events for services.
	w.RecordUnmeasured("services", Deleted, t0)
	record(w, "deployments", Added, t0, sec(2))

	got := w.Stats(time.Time{}, "", "")
	want := []Stats{
		{Resource: "deployments", Event: Added, Count: 1, Min: sec(2), P50: sec(2), P90: sec(2), P99: sec(2), Max: sec(2), Mean: sec(2)},
		// Nearest rank: P50 is the 5th of 10, P90 the 9th, P99 the 10th.
		{Resource: "pods", Event: Added, Count: 10, Min: sec(1), P50: sec(5), P90: sec(9), P99: sec(10), Max: sec(10), Mean: sec(5.5)},
		// P50 of 3 is the 2nd, P90 and P99 the 3rd.
		{Resource: "pods", Event: Deleted, Count: 3, Unmeasured: 2, Min: sec(-28.5), P50: sec(-3), P90: sec(0.5), P99: sec(0.5), Max: sec(0.5), Mean: sec(-31.0 / 3)},
		{Resource: "services", Event: Deleted, Unmeasured: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestWindowStatsQuantilesOf100(t *testing.T) {
	w := NewWindow(0)
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	record(w, "pods", Added, t0, ds...)
	got := w.Stats(time.Time{}, "pods", Added)
	want := []Stats{{
		Resource: "pods", Event: Added, Count: 100,
		Min: time.Millisecond, P50: 50 * time.Millisecond, P90: 90 * time.Millisecond, P99: 99 * time.Millisecond,
		Max: 100 * time.Millisecond, Mean: 50500 * time.Microsecond,
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestWindowStatsFilters(t *testing.T) {
	w := NewWindow(10)
	record(w, "pods", Added, t0, sec(1))
	record(w, "pods", Deleted, t0, sec(2))
	record(w, "services", Added, t0, sec(3))
	record(w, "services", Deleted, t0, sec(4))

	type key struct{ Resource, Event string }
	keys := func(ss []Stats) []key {
		var out []key
		for _, s := range ss {
			out = append(out, key{s.Resource, s.Event})
		}
		return out
	}
	for _, tc := range []struct {
		resource, event string
		want            []key
	}{
		{"", "", []key{{"pods", Added}, {"pods", Deleted}, {"services", Added}, {"services", Deleted}}},
		{"pods", "", []key{{"pods", Added}, {"pods", Deleted}}},
		{"", Deleted, []key{{"pods", Deleted}, {"services", Deleted}}},
		{"services", Added, []key{{"services", Added}}},
		{"nodes", "", nil},
	} {
		if diff := cmp.Diff(tc.want, keys(w.Stats(time.Time{}, tc.resource, tc.event))); diff != "" {
			t.Errorf("Stats(resource %q, event %q) (-want +got):\n%s", tc.resource, tc.event, diff)
		}
	}
}

func TestWindowStatsSince(t *testing.T) {
	w := NewWindow(10)
	w.Record(Sample{Resource: "pods", Event: Added, Delay: sec(100), At: t0.Add(-time.Nanosecond)})
	w.Record(Sample{Resource: "pods", Event: Added, Delay: sec(1), At: t0})
	w.Record(Sample{Resource: "pods", Event: Added, Delay: sec(3), At: t0.Add(time.Minute)})
	w.RecordUnmeasured("pods", Added, t0.Add(-time.Second))
	w.RecordUnmeasured("pods", Added, t0.Add(time.Second))

	got := w.Stats(t0, "", "")
	want := []Stats{{Resource: "pods", Event: Added, Count: 2, Unmeasured: 1, Min: sec(1), P50: sec(1), P90: sec(3), P99: sec(3), Max: sec(3), Mean: sec(2)}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Stats since t0 (-want +got):\n%s", diff)
	}
	if got := w.Stats(t0.Add(2*time.Minute), "", ""); len(got) != 0 {
		t.Errorf("Stats after the last sample = %+v, want none", got)
	}
}

func TestWindowBoundedMemory(t *testing.T) {
	const size, n = 1000, 1_000_000
	w := NewWindow(size)
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Microsecond)
		w.Record(Sample{Resource: "pods", Event: Added, Delay: time.Duration(i), At: at})
		if i%10 == 0 {
			w.RecordUnmeasured("pods", Added, at)
		}
	}
	s := w.series[seriesKey{"pods", Added}]
	if len(s.samples.buf) != size || cap(s.samples.buf) != size {
		t.Errorf("sample ring has len %d, cap %d after %d samples; want both %d", len(s.samples.buf), cap(s.samples.buf), n, size)
	}
	if len(s.unmeasured.buf) != size || cap(s.unmeasured.buf) != size {
		t.Errorf("unmeasured ring has len %d, cap %d after %d events; want both %d", len(s.unmeasured.buf), cap(s.unmeasured.buf), n/10, size)
	}

	// The window holds the newest size samples and says it lost older ones.
	got := w.Stats(time.Time{}, "", "")
	want := []Stats{{
		Resource: "pods", Event: Added, Count: size, Unmeasured: size,
		Min: n - size, P50: n - size/2 - 1, P90: n - size/10 - 1, P99: n - size/100 - 1, Max: n - 1, Mean: n - size/2, // n - size/2 - 0.5 rounds up
		Truncated: true,
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	// A range that starts after the oldest sample held is complete.
	newest := t0.Add(time.Duration(n-size) * time.Microsecond)
	if got := w.Stats(newest, "", ""); len(got) != 1 || got[0].Truncated || got[0].Count != size {
		t.Errorf("Stats since the oldest sample held = %+v, want %d samples, not truncated", got, size)
	}
	if diff := cmp.Diff([]Totals{{Resource: "pods", Event: Added, Count: n, Unmeasured: n / 10}}, w.Totals("", "")); diff != "" {
		t.Errorf("Totals (-want +got):\n%s", diff)
	}
}

func TestWindowSeries(t *testing.T) {
	w := NewWindow(100)
	since := t0.Add(30 * time.Second)
	// Before since: left out.
	w.Record(Sample{Resource: "pods", Event: Added, Delay: sec(50), At: since.Add(-time.Nanosecond)})
	// First bucket [t0, t0+1m) is clipped to since.
	w.Record(Sample{Resource: "pods", Event: Added, Delay: sec(3), At: since})
	w.Record(Sample{Resource: "pods", Event: Deleted, Delay: sec(-2), At: t0.Add(59 * time.Second)})
	w.Record(Sample{Resource: "services", Event: Added, Delay: sec(1), At: t0.Add(45 * time.Second)})
	// [t0+1m, t0+2m) has nothing; [t0+2m, t0+3m):
	w.Record(Sample{Resource: "pods", Event: Added, Delay: sec(4), At: t0.Add(2 * time.Minute)})
	w.Record(Sample{Resource: "pods", Event: Added, Delay: sec(1), At: t0.Add(3*time.Minute - time.Nanosecond)})
	w.RecordUnmeasured("pods", Added, t0.Add(90*time.Second))

	got := w.Series(since, time.Minute, "", "")
	want := []Point{
		{At: since, Count: 3, P50: sec(1), P90: sec(3), P99: sec(3), Max: sec(3)},
		{At: t0.Add(2 * time.Minute), Count: 2, P50: sec(1), P90: sec(4), P99: sec(4), Max: sec(4)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Series (-want +got):\n%s", diff)
	}

	got = w.Series(since, time.Minute, "pods", Added)
	want = []Point{
		{At: since, Count: 1, P50: sec(3), P90: sec(3), P99: sec(3), Max: sec(3)},
		{At: t0.Add(2 * time.Minute), Count: 2, P50: sec(1), P90: sec(4), P99: sec(4), Max: sec(4)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Series of pods ADDED (-want +got):\n%s", diff)
	}

	got = w.Series(since, 0, "", Deleted)
	want = []Point{{At: since, Count: 1, P50: sec(-2), P90: sec(-2), P99: sec(-2), Max: sec(-2)}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Series of DELETED with step 0 (-want +got):\n%s", diff)
	}
}

func TestWindowSeriesAlignsToEpoch(t *testing.T) {
	w := NewWindow(10)
	// 7s buckets start at multiples of 7s since 1970, not since year 1.
	at := time.Unix(7*1000+3, 0)
	w.Record(Sample{Resource: "pods", Event: Added, Delay: sec(1), At: at})
	got := w.Series(time.Time{}, 7*time.Second, "", "")
	want := []Point{{At: time.Unix(7*1000, 0), Count: 1, P50: sec(1), P90: sec(1), P99: sec(1), Max: sec(1)}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Series (-want +got):\n%s", diff)
	}
}

func TestWindowConcurrent(t *testing.T) {
	w := NewWindow(64)
	var wg sync.WaitGroup
	const writers, perWriter = 4, 2000
	for g := range writers {
		wg.Go(func() {
			for i := range perWriter {
				at := t0.Add(time.Duration(i) * time.Millisecond)
				w.Record(Sample{Resource: "pods", Event: Added, Delay: time.Duration(g*perWriter + i), At: at})
				w.RecordUnmeasured("pods", Deleted, at)
			}
		})
	}
	done := make(chan struct{})
	readers := sync.WaitGroup{}
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				w.Stats(time.Time{}, "", "")
				w.Series(t0, time.Second, "pods", "")
				w.Totals("", "")
			}
		})
	}
	wg.Wait()
	close(done)
	readers.Wait()
	want := []Totals{
		{Resource: "pods", Event: Added, Count: writers * perWriter},
		{Resource: "pods", Event: Deleted, Unmeasured: writers * perWriter},
	}
	if diff := cmp.Diff(want, w.Totals("", "")); diff != "" {
		t.Errorf("Totals (-want +got):\n%s", diff)
	}
}

func BenchmarkWindowRecord(b *testing.B) {
	w := NewWindow(DefaultWindowSize)
	s := Sample{Cluster: "c", Resource: "pods", Namespace: "default", Event: Added, Delay: time.Second, At: t0}
	b.ReportAllocs()
	for b.Loop() {
		s.At = s.At.Add(time.Millisecond)
		w.Record(s)
	}
}

func BenchmarkWindowStats(b *testing.B) {
	w := NewWindow(DefaultWindowSize)
	for i := range DefaultWindowSize {
		w.Record(Sample{Resource: "pods", Event: Added, Delay: time.Duration(i), At: t0.Add(time.Duration(i))})
	}
	b.ReportAllocs()
	for b.Loop() {
		w.Stats(time.Time{}, "", "")
	}
}
