package api

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

func TestProbes(t *testing.T) {
	b, _, _ := newTestBackend(t)
	ts, _ := newTestServer(t, b)

	for _, path := range []string{"/healthz", "/readyz"} {
		if r := get(t, ts, path); r.status != 200 || string(r.body) != "ok" {
			t.Errorf("GET %s: %d %q, want 200 ok", path, r.status, r.body)
		}
	}
	b.ready, b.why = false, "pods and nodes have no verified frame yet"
	r := get(t, ts, "/readyz")
	if r.status != 503 || string(r.body) != b.why {
		t.Errorf("GET /readyz when not ready: %d %q, want 503 %q", r.status, r.body, b.why)
	}
	if r := get(t, ts, "/healthz"); r.status != 200 {
		t.Errorf("GET /healthz when not ready: %d, want 200: being unready is not being unhealthy", r.status)
	}
}

func TestResources(t *testing.T) {
	b, _, _ := newTestBackend(t)
	ts, _ := newTestServer(t, b)
	r := get(t, ts, "/api/v1/resources")
	var got ResourceList
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("%v: %s", err, r.body)
	}
	want := b.Resources()
	want.AgentVersion = "v0.0.0-test"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("resources (-want +got):\n%s", diff)
	}

	empty, _ := newTestServer(t, &fakeBackend{})
	if r := get(t, empty, "/api/v1/resources"); strings.TrimSpace(string(r.body)) != `{"agentVersion":"v0.0.0-test","cluster":"test","store":{"kind":"memory","healthy":true},"resources":[]}` {
		t.Errorf("no resources: body %s, want an empty list", r.body)
	}
	r = get(t, empty, "/api/v1/resources/pods")
	if e := apiError(t, r); r.status != 404 || !strings.Contains(e.Message, "watched resources: none") {
		t.Errorf("unknown resource with none watched: %d %q", r.status, e.Message)
	}
}

func TestMetrics(t *testing.T) {
	b, _, _ := newTestBackend(t)
	ts, _ := newTestServer(t, b)
	for _, path := range []string{
		"/api/v1/resources/pods",
		"/api/v1/resources/po?limit=1",
		"/api/v1/resources/pods?limit=x",
		"/api/v1/resources/nodes/n1",
		"/api/v1/resources/foos",
		"/api/v1/resources/bars/drift",
		"/api/v1/resources",
		"/api/nothing",
	} {
		get(t, ts, path)
	}
	body := string(get(t, ts, "/metrics").body)
	for _, want := range []string{
		`krm_http_requests_total{code="200",resource="pods",route="list"} 2`,
		`krm_http_requests_total{code="400",resource="pods",route="list"} 1`,
		`krm_http_requests_total{code="200",resource="nodes",route="get"} 1`,
		`krm_http_requests_total{code="404",resource="unknown",route="list"} 1`,
		`krm_http_requests_total{code="404",resource="unknown",route="drift"} 1`,
		`krm_http_requests_total{code="200",resource="",route="resources"} 1`,
		`krm_http_requests_total{code="404",resource="",route="unmatched"} 1`,
		`krm_http_request_duration_seconds_count{resource="pods",route="list"} 3`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, unwanted := range []string{"foos", "bars", `resource="po"`} {
		if strings.Contains(body, unwanted) {
			t.Errorf("/metrics has a label value %s taken from a request", unwanted)
		}
	}
}

// Two servers on one registry (a restarted listener, or tests) share the
// metrics instead of failing to register them.
func TestServersShareARegistry(t *testing.T) {
	b, _, _ := newTestBackend(t)
	reg := prometheus.NewRegistry()
	for range 2 {
		srv := NewServer(b, ServerOptions{Registry: reg, Gatherer: reg, Now: func() time.Time { return testNow }})
		ts := httptest.NewServer(srv.Handler())
		get(t, ts, "/api/v1/resources/nodes")
		ts.Close()
	}
	n, err := countMetric(reg, "krm_http_requests_total")
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("krm_http_requests_total = %v over both servers, want 2", n)
	}
}

func countMetric(g prometheus.Gatherer, name string) (float64, error) {
	mfs, err := g.Gather()
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum, nil
}
