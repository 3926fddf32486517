package delay

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

func TestInfluxWriterPoints(t *testing.T) {
	sink, srv := newLineSink(t)
	reg := prometheus.NewRegistry()
	w, err := NewInfluxWriter(InfluxConfig{URL: srv.URL, Bucket: "krm", FlushInterval: time.Hour}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	stop := startWriter(t, w)
	at := time.Unix(1_777_000_000, 0)
	w.Record(Sample{Cluster: "c1", Resource: "pods", Namespace: "ns 1", Event: Added, Delay: 1500 * time.Millisecond, ResourceVersion: 42, At: at})
	// Same time: moved 1ns later so InfluxDB does not overwrite the first.
	w.Record(Sample{Cluster: "c1", Resource: "pods", Namespace: "ns 1", Event: Added, Delay: time.Second, ResourceVersion: 43, At: at})
	w.Record(Sample{Cluster: "c1", Resource: "nodes", Event: Deleted, Delay: -28 * time.Second, ResourceVersion: 44, At: at.Add(time.Second)})
	w.RecordUnmeasured("c1", "configmaps", Deleted, at.Add(2*time.Second))
	// Well before the previous point: kept where it is.
	w.Record(Sample{Cluster: "c1", Resource: "pods", Namespace: "a", Event: Added, Delay: time.Second, ResourceVersion: 45, At: at.Add(-time.Hour)})
	stop() // the final flush writes everything

	want := []string{
		`krm_stream_delay,cluster=c1,event=ADDED,namespace=ns\ 1,resource=pods delay_seconds=1.5,resource_version=42i 1777000000000000000`,
		`krm_stream_delay,cluster=c1,event=ADDED,namespace=ns\ 1,resource=pods delay_seconds=1,resource_version=43i 1777000000000000001`,
		`krm_stream_delay,cluster=c1,event=DELETED,resource=nodes delay_seconds=-28,resource_version=44i 1777000001000000000`,
		`krm_stream_delay_unmeasured,cluster=c1,event=DELETED,resource=configmaps count=1i 1777000002000000000`,
		`krm_stream_delay,cluster=c1,event=ADDED,namespace=a,resource=pods delay_seconds=1,resource_version=45i 1776996400000000000`,
	}
	if diff := cmp.Diff(want, sink.Lines()); diff != "" {
		t.Errorf("lines written (-want +got):\n%s", diff)
	}
	if got := metric(t, reg, "krm_influx_points_written_total"); got != 5 {
		t.Errorf("krm_influx_points_written_total = %v, want 5", got)
	}
}

func TestInfluxWriterBatches(t *testing.T) {
	var writes, lines atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		writes.Add(1)
		lines.Add(int64(strings.Count(strings.TrimSpace(string(body)), "\n") + 1))
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	w, err := NewInfluxWriter(InfluxConfig{URL: srv.URL, Bucket: "krm", BatchSize: 10, FlushInterval: time.Hour}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := startWriter(t, w)
	for i := range 35 {
		w.Record(Sample{Cluster: "c", Resource: "pods", Event: Added, At: t0.Add(time.Duration(i) * time.Second)})
	}
	// Three full batches go without waiting for the flush interval.
	eventually(t, "three batches written", func() bool { return writes.Load() == 3 })
	stop()
	if got, want := [2]int64{writes.Load(), lines.Load()}, [2]int64{4, 35}; got != want {
		t.Errorf("writes, lines = %v, want %v (three batches of 10, and 5 at shutdown)", got, want)
	}
}

// A slow InfluxDB must never block the watch loop: Record returns at once,
// and what does not fit in the buffer is dropped and counted.
func TestInfluxWriterSlowServerNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	var received atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		received.Add(int64(strings.Count(strings.TrimSpace(string(body)), "\n") + 1))
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	const buffer, batch, n = 100, 10, 10_000
	w, err := NewInfluxWriter(InfluxConfig{
		URL: srv.URL, Bucket: "krm", BatchSize: batch, BufferSize: buffer,
		FlushInterval: 5 * time.Millisecond, Timeout: 5 * time.Minute,
	}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	stop := startWriter(t, w)

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			w.Record(Sample{Cluster: "c", Resource: "pods", Event: Added, Delay: time.Second, At: t0.Add(time.Duration(i) * time.Millisecond)})
		}
	}()
	select {
	case <-done:
		// Every Record returned while the server still held the first write.
	case <-time.After(30 * time.Second):
		close(release)
		t.Fatal("Record blocked while InfluxDB did not answer")
	}
	close(release)

	written := func() float64 { return metric(t, reg, "krm_influx_points_written_total") }
	full := func() float64 { return metric(t, reg, "krm_influx_points_dropped_total", "reason", "buffer_full") }
	failed := func() float64 { return metric(t, reg, "krm_influx_points_dropped_total", "reason", "write_error") }
	eventually(t, "every point written or dropped", func() bool { return written()+full()+failed() == n })
	stop()

	// At most the buffer, the batch being built and the batch being written
	// were held; the rest was dropped.
	if got, atLeast := full(), float64(n-buffer-2*batch); got < atLeast {
		t.Errorf("krm_influx_points_dropped_total{reason=buffer_full} = %v, want at least %v", got, atLeast)
	}
	if got, want := written(), float64(received.Load()); got != want || got == 0 {
		t.Errorf("krm_influx_points_written_total = %v, want the %v points the server took (and some)", got, want)
	}
	if got := failed(); got != 0 {
		t.Errorf("krm_influx_points_dropped_total{reason=write_error} = %v, want 0", got)
	}
}

func TestInfluxWriterServerDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()

	reg := prometheus.NewRegistry()
	w, err := NewInfluxWriter(InfluxConfig{URL: url, Bucket: "krm", BatchSize: 10, FlushInterval: 5 * time.Millisecond}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	stop := startWriter(t, w)
	const n = 50
	for i := range n {
		w.Record(Sample{Cluster: "c", Resource: "pods", Event: Added, At: t0.Add(time.Duration(i) * time.Millisecond)})
	}
	eventually(t, "every point dropped for write errors", func() bool {
		return metric(t, reg, "krm_influx_points_dropped_total", "reason", "write_error") == n
	})
	stop()
	if got := metric(t, reg, "krm_influx_write_errors_total"); got < n/10 {
		t.Errorf("krm_influx_write_errors_total = %v, want at least %v", got, n/10)
	}
	if got := metric(t, reg, "krm_influx_points_written_total"); got != 0 {
		t.Errorf("krm_influx_points_written_total = %v, want 0", got)
	}
}

func TestInfluxWriterLogsErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"code":"internal error","message":"disk full"}`))
	}))
	defer srv.Close()
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := NewInfluxWriter(InfluxConfig{URL: srv.URL, Bucket: "krm", BatchSize: 3, FlushInterval: time.Hour}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := startWriter(t, w)
	for i := range 6 {
		w.Record(Sample{Cluster: "c", Resource: "pods", Event: Added, At: t0.Add(time.Duration(i) * time.Second)})
	}
	stop()

	type entry struct {
		Level, Msg, URL, Bucket string
		Points, Failures        int
		ErrHasMessage           bool
	}
	var got []entry
	dec := json.NewDecoder(&logs)
	for dec.More() {
		var rec map[string]any
		if err := dec.Decode(&rec); err != nil {
			t.Fatal(err)
		}
		e := entry{Level: rec["level"].(string), Msg: rec["msg"].(string), URL: rec["url"].(string), Bucket: rec["bucket"].(string)}
		if f, ok := rec["points"].(float64); ok {
			e.Points = int(f)
		}
		if f, ok := rec["consecutiveFailures"].(float64); ok {
			e.Failures = int(f)
		}
		errText, _ := rec["err"].(string)
		e.ErrHasMessage = strings.Contains(errText, "disk full")
		got = append(got, e)
	}
	// The first failure is a warning; repeats within a minute are debug.
	msg := "dropped delay points: InfluxDB write failed"
	want := []entry{
		{Level: "WARN", Msg: msg, URL: srv.URL, Bucket: "krm", Points: 3, Failures: 1, ErrHasMessage: true},
		{Level: "DEBUG", Msg: msg, URL: srv.URL, Bucket: "krm", Points: 3, Failures: 2, ErrHasMessage: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log records (-want +got):\n%s", diff)
	}
}

func TestNewInfluxWriterValidates(t *testing.T) {
	for _, cfg := range []InfluxConfig{
		{URL: "", Bucket: "krm"},
		{URL: "influxdb:8086", Bucket: "krm"},
		{URL: "ftp://influxdb:8086", Bucket: "krm"},
		{URL: "http://influxdb:8086"},
	} {
		if _, err := NewInfluxWriter(cfg, nil, nil); err == nil {
			t.Errorf("NewInfluxWriter(%+v) succeeded, want an error", cfg)
		}
		if _, err := NewInfluxReader(cfg, ""); err == nil {
			t.Errorf("NewInfluxReader(%+v) succeeded, want an error", cfg)
		}
	}
}

func TestFluxString(t *testing.T) {
	for in, want := range map[string]string{
		"pods":           `"pods"`,
		`a"b\c`:          `"a\"b\\c"`,
		"${x}":           `"\${x}"`,
		"line\nbreak\tx": `"line\nbreak\tx"`,
	} {
		if got := fluxString(in); got != want {
			t.Errorf("fluxString(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestInfluxReaderUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	r, err := NewInfluxReader(InfluxConfig{URL: url, Bucket: "krm"}, "c")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Stats(t.Context(), time.Time{}, "", ""); err == nil || !strings.Contains(err.Error(), url) {
		t.Errorf("Stats from a closed port: err = %v, want an error that names %s", err, url)
	}
	if _, err := r.Series(t.Context(), time.Time{}, time.Minute, "", ""); err == nil {
		t.Error("Series from a closed port succeeded, want an error")
	}
}

// InfluxDB refusing the credentials is no passing failure: the points are
// counted as dropped for that reason, the log says so at error level and
// names the setting to fix, and a query says the same.
func TestInfluxWriterUnauthorized(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// InfluxDB 1.8's answer to a wrong user:password.
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("WWW-Authenticate", `Basic realm="InfluxDB"`)
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"authorization failed"}`))
	}))
	defer srv.Close()
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	cfg := InfluxConfig{URL: srv.URL, Token: "krm:wrong", Bucket: "krm", BatchSize: 5, FlushInterval: time.Hour}
	w, err := NewInfluxWriter(cfg, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	stop := startWriter(t, w)
	const n = 10
	for i := range n {
		w.Record(Sample{Cluster: "c", Resource: "pods", Event: Added, At: t0.Add(time.Duration(i) * time.Second)})
	}
	stop()
	if got := metric(t, reg, "krm_influx_points_dropped_total", "reason", "unauthorized"); got != n {
		t.Errorf("krm_influx_points_dropped_total{reason=unauthorized} = %v, want %d", got, n)
	}
	if got := metric(t, reg, "krm_influx_points_dropped_total", "reason", "write_error"); got != 0 {
		t.Errorf("krm_influx_points_dropped_total{reason=write_error} = %v, want 0", got)
	}
	var first struct{ Level, Msg, Reason, Err string }
	if err := json.NewDecoder(&logs).Decode(&first); err != nil {
		t.Fatal(err)
	}
	if first.Level != "ERROR" || first.Reason != "unauthorized" || !strings.Contains(first.Msg, "refused the agent's credentials") ||
		!strings.Contains(first.Err, "KRM_INFLUX_TOKEN") || !strings.Contains(first.Err, "HTTP 401") {
		t.Errorf("first log record %+v: want an error saying InfluxDB refused the credentials and naming KRM_INFLUX_TOKEN", first)
	}
	if strings.Contains(logs.String(), "wrong") {
		t.Error("the log carries the token")
	}

	r, err := NewInfluxReader(cfg, "c")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Stats(t.Context(), time.Time{}, "", ""); !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "KRM_INFLUX_TOKEN") {
		t.Errorf("Stats with refused credentials: %v, want ErrUnauthorized naming KRM_INFLUX_TOKEN", err)
	}
}
