package server

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/krm-project/krm/pkg/store"
)

// A client that sends a request and never reads the answer must not pin
// the handler, its buffers and its snapshot: it is let go once a write has
// blocked for WriteTimeout, whether it is a LIST, a watch's initial events
// or a watch's changes, and a dropped watch is counted.
func TestClientThatStopsReadingIsLetGo(t *testing.T) {
	// More than the kernel buffers of both ends hold on loopback.
	pad := strings.Repeat("x", 4000)
	var rows []*store.Row
	for i := range 4000 {
		rows = append(rows, podRow(t, podSpec{"dev", fmt.Sprintf("pod-%05d", i), "n1", "Running", map[string]string{"pad": pad}, 100}))
	}
	pods := newFakeResource(podsInfo, 100, rows...)
	reg := prometheus.NewRegistry()
	s := New(&fakeBackend{resources: []*fakeResource{pods}}, Options{
		Now: func() time.Time { return testNow }, Registry: reg, Gatherer: reg,
		WriteTimeout: 200 * time.Millisecond,
	})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()

	// stall sends a GET of path and never reads a byte of the answer.
	stall := func(t *testing.T, path string) net.Conn {
		d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
			if err != nil {
				return err
			}
			return serr
		}}
		conn, err := d.DialContext(t.Context(), "tcp", strings.TrimPrefix(ts.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: krm\r\nAccept: application/json\r\n\r\n", path); err != nil {
			t.Fatal(err)
		}
		return conn
	}
	// eventually waits for cond; the wait is a bound on a hang, not a
	// timing assertion: without the write deadline the handler never ends.
	eventually := func(t *testing.T, what string, cond func() bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		for !cond() {
			select {
			case <-ctx.Done():
				t.Fatalf("%s: never, with a client that reads nothing", what)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	dropped := func() float64 { return value(t, s.metrics.dropped.WithLabelValues("pods", dropWriteTimeout)) }
	served := func(route, code string) float64 {
		return value(t, s.metrics.requests.WithLabelValues("pods", route, code))
	}

	t.Run("list", func(t *testing.T) {
		before := served("list", "200")
		stall(t, "/api/v1/namespaces/dev/pods")
		eventually(t, "the LIST's handler ends", func() bool { return served("list", "200") > before })
	})
	t.Run("watch initial events", func(t *testing.T) {
		before := dropped()
		stall(t, "/api/v1/namespaces/dev/pods?watch=1")
		eventually(t, "the watch is dropped for its write timeout", func() bool { return dropped() > before })
		eventually(t, "no watch is served", func() bool { return s.watches.Load() == 0 })
		if got := value(t, s.metrics.watches); got != 0 {
			t.Errorf("krm_watches = %v after the only watch was dropped, want 0", got)
		}
	})
	t.Run("watch changes", func(t *testing.T) {
		before := dropped()
		stall(t, "/api/v1/namespaces/dev/pods?watch=1&resourceVersion=100")
		eventually(t, "the watch is being served", func() bool { return s.watches.Load() == 1 })
		rv := uint64(100)
		eventually(t, "the watch is dropped for its write timeout", func() bool {
			for range 50 {
				rv++
				pods.apply(eventModified, podRow(t, podSpec{"dev", fmt.Sprintf("pod-%05d", rv%4000), "n1", "Running", map[string]string{"pad": pad}, rv}))
			}
			return dropped() > before
		})
		eventually(t, "no watch is served", func() bool { return s.watches.Load() == 0 })
	})
}

// value reads a counter's or a gauge's value.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	if c := out.GetCounter(); c != nil {
		return c.GetValue()
	}
	return out.GetGauge().GetValue()
}
