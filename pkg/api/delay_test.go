package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeDelaySource answers every query with its report, or its error, and
// keeps the queries it was asked.
type fakeDelaySource struct {
	report *DelayReport
	err    error

	mu      sync.Mutex
	queries []DelayQuery
}

func (f *fakeDelaySource) Delay(_ context.Context, q DelayQuery) (*DelayReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, q)
	return f.report, f.err
}

func (f *fakeDelaySource) asked() []DelayQuery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]DelayQuery(nil), f.queries...)
}

var testDelayReport = &DelayReport{
	Source: "memory", Since: testNow.Add(-15 * time.Minute), Step: "30s",
	Resolution: "object timestamps have 1-second resolution",
	Stats: []DelayStats{
		{Resource: "pods", Event: "ADDED", Count: 3, Min: 0.25, P50: 0.5, P90: 1.25, P99: 1.25, Max: 1.25, Mean: 0.6666},
		{Resource: "pods", Event: "DELETED", Count: 1, Unmeasured: 2, Min: -29.5, P50: -29.5, P90: -29.5, P99: -29.5, Max: -29.5, Mean: -29.5, Truncated: true},
	},
	Series: []DelayPoint{{At: testNow.Add(-10 * time.Minute), Count: 4, P50: 0.5, Max: 1.25}},
}

// newDelayServer serves the test backend with src as its delay source (nil:
// none).
func newDelayServer(t *testing.T, src DelaySource) *httptest.Server {
	t.Helper()
	b, _, _ := newTestBackend(t)
	srv := NewServer(b, ServerOptions{
		AgentVersion: "v0.0.0-test", Registry: prometheus.NewRegistry(), Now: func() time.Time { return testNow }, Delay: src,
	})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts
}

func TestDelayBadRequests(t *testing.T) {
	src := &fakeDelaySource{report: testDelayReport}
	ts := newDelayServer(t, src)
	tests := []struct {
		name   string
		path   string
		status int
		want   []string
	}{
		{"since not a duration", "/api/v1/delay?since=soon", 400, []string{`since "soon" is not a positive duration`, "15m or 1h"}},
		{"since negative", "/api/v1/delay?since=-1h", 400, []string{`since "-1h" is not a positive duration`}},
		{"since zero", "/api/v1/delay?since=0s", 400, []string{`since "0s" is not a positive duration`}},
		{"since too long", "/api/v1/delay?since=745h", 400, []string{"since 745h is longer than 744h0m0s"}},
		{"step not a duration", "/api/v1/delay?step=often", 400, []string{`step "often" is not a positive duration`, "1m"}},
		{"step zero", "/api/v1/delay?step=0s", 400, []string{`step "0s" is not a positive duration`}},
		{"too many points", "/api/v1/delay?since=24h&step=1s", 400, []string{"step 1s over 24h0m0s makes more than 10000 points", "larger step"}},
		{"event not measured", "/api/v1/delay?event=MODIFIED", 400, []string{`event "MODIFIED" is not ADDED or DELETED`}},
		{"event in lower case", "/api/v1/delay?event=added", 400, []string{`event "added" is not ADDED or DELETED`}},
		{"unknown parameter", "/api/v1/delay?resources=pods", 400, []string{`unknown query parameter "resources"`, "resource, event, since and step"}},
		{"repeated parameter", "/api/v1/delay?resource=pods&resource=nodes", 400, []string{`"resource" is given 2 times`}},
		{"unknown resource", "/api/v1/delay?resource=foos", 404, []string{`resource "foos" is not watched by this agent`}},
		{"wrong method", "/api/v1/delay", 405, []string{"method POST is not allowed on /api/v1/delay"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := http.MethodGet
			if tt.status == 405 {
				method = http.MethodPost
			}
			r := do(t, ts, method, tt.path)
			if r.status != tt.status {
				t.Fatalf("status = %d, want %d; body: %s", r.status, tt.status, r.body)
			}
			e := apiError(t, r)
			for _, w := range tt.want {
				if !strings.Contains(e.Message, w) {
					t.Errorf("message %q does not say %q", e.Message, w)
				}
			}
		})
	}
	if q := src.asked(); len(q) != 0 {
		t.Errorf("bad requests reached the delay source: %+v", q)
	}
}

func TestDelayWithoutSource(t *testing.T) {
	ts := newDelayServer(t, nil)
	r := get(t, ts, "/api/v1/delay")
	if r.status != http.StatusNotFound {
		t.Fatalf("status = %d, want 404; body: %s", r.status, r.body)
	}
	if e := apiError(t, r); !strings.Contains(e.Message, "does not measure stream delay") {
		t.Errorf("message %q does not say the agent measures no delay", e.Message)
	}
}

func TestDelayServesTheSourcesReport(t *testing.T) {
	src := &fakeDelaySource{report: testDelayReport}
	ts := newDelayServer(t, src)

	r := get(t, ts, "/api/v1/delay?resource=po&event=DELETED&since=15m&step=30s")
	if r.status != http.StatusOK {
		t.Fatalf("status = %d; body: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var got DelayReport
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
	if diff := cmp.Diff(testDelayReport, &got); diff != "" {
		t.Errorf("report served (-source +served):\n%s", diff)
	}

	// Through the Go client; a short name is resolved to the resource's
	// name, and range and step default to an hour in about 60 steps.
	c := newTestClient(t, ts)
	rep, err := c.Delay(t.Context(), "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(testDelayReport, rep); diff != "" {
		t.Errorf("report read by the client (-source +client):\n%s", diff)
	}
	if _, err := c.Delay(t.Context(), "pod", "ADDED", 6*time.Hour); err != nil {
		t.Fatal(err)
	}
	// The canary probe's rows are not a watched resource, but a filter.
	if _, err := c.Delay(t.Context(), ProbeResource, "", 0); err != nil {
		t.Fatal(err)
	}
	want := []DelayQuery{
		{Resource: "pods", Event: "DELETED", Since: testNow.Add(-15 * time.Minute), Step: 30 * time.Second},
		{Since: testNow.Add(-time.Hour), Step: time.Minute},
		{Resource: "pods", Event: "ADDED", Since: testNow.Add(-6 * time.Hour), Step: 10 * time.Minute},
		{Resource: ProbeResource, Since: testNow.Add(-time.Hour), Step: time.Minute},
	}
	if diff := cmp.Diff(want, src.asked()); diff != "" {
		t.Errorf("queries the source was asked (-want +got):\n%s", diff)
	}
}

func TestDelaySourceErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		want   string
	}{
		// The source's own verdict on the query is passed on as it is.
		{"api error", &Error{Status: http.StatusBadRequest, Message: "no such series"}, 400, "no such series"},
		{"failure", errors.New("no delay window"), 503, "reading delay statistics: no delay window"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newDelayServer(t, &fakeDelaySource{err: tc.err})
			r := get(t, ts, "/api/v1/delay")
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d; body: %s", r.status, tc.status, r.body)
			}
			if e := apiError(t, r); e.Message != tc.want {
				t.Errorf("message = %q, want %q", e.Message, tc.want)
			}
		})
	}
}
