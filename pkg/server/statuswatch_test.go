package server

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/krm-project/krm/pkg/api"
	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/store"
)

// countingBackend is fakeBackend whose statuses count the aggregated rows,
// so a change to the rows changes the status, as the agent's does.
type countingBackend struct{ *fakeBackend }

func (b countingBackend) Resources() api.ResourceList {
	list := b.fakeBackend.Resources()
	for i, st := range list.Resources {
		res, _ := b.Resource(st.Name)
		list.Resources[i].Objects.Aggregated = res.Snapshot(store.Aggregated).Header.Rows
	}
	return list
}

type statusEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

func openStatusWatch(t *testing.T, url, accept string) (*http.Response, *bufio.Scanner) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url+"/apis/krm.io/v1alpha1/resourcestatuses?watch=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, bufio.NewScanner(resp.Body)
}

func nextStatus(t *testing.T, sc *bufio.Scanner) (string, krmv1alpha1.ResourceStatus) {
	t.Helper()
	if !sc.Scan() {
		t.Fatalf("the watch ended: %v", sc.Err())
	}
	var ev statusEvent
	if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
		t.Fatalf("event %s: %v", sc.Bytes(), err)
	}
	var st krmv1alpha1.ResourceStatus
	if err := json.Unmarshal(ev.Object, &st); err != nil {
		t.Fatalf("object of %s: %v", sc.Bytes(), err)
	}
	return ev.Type, st
}

func TestStatusWatch(t *testing.T) {
	s, pods := newTestServer(t)
	s.backend = countingBackend{s.backend.(*fakeBackend)}
	ts := httptest.NewServer(s.Handler())
	// Cleanups run last first: the watches' bodies are closed before the
	// server waits for its requests to end.
	t.Cleanup(ts.Close)

	resp, sc := openStatusWatch(t, ts.URL, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	type seen struct {
		Type, Name string
		Objects    int
	}
	var got []seen
	for range 2 {
		typ, st := nextStatus(t, sc)
		got = append(got, seen{typ, st.Name, st.Status.Objects.Aggregated})
	}
	want := []seen{{"ADDED", "pods", len(testPods)}, {"ADDED", "deployments", 0}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("initial events (-want +got):\n%s", diff)
	}

	// A new pod changes the pods' status only: deployments' is not sent
	// again.
	pods.apply(eventAdded, podRow(t, podSpec{"dev", "api-3", "n1", "Running", nil, 120}))
	typ, st := nextStatus(t, sc)
	if diff := cmp.Diff(seen{"MODIFIED", "pods", len(testPods) + 1}, seen{typ, st.Name, st.Status.Objects.Aggregated}); diff != "" {
		t.Errorf("after adding a pod (-want +got):\n%s", diff)
	}
	if st.Kind != "ResourceStatus" || st.APIVersion != "krm.io/v1alpha1" {
		t.Errorf("the event's object is %s %s, want krm.io/v1alpha1 ResourceStatus", st.APIVersion, st.Kind)
	}
}

func TestStatusWatchTable(t *testing.T) {
	s, _ := newTestServer(t)
	ts := httptest.NewServer(s.Handler())
	// Cleanups run last first: the watches' bodies are closed before the
	// server waits for its requests to end.
	t.Cleanup(ts.Close)
	_, sc := openStatusWatch(t, ts.URL, "application/json;as=Table;v=v1;g=meta.k8s.io")
	if !sc.Scan() {
		t.Fatalf("the watch ended: %v", sc.Err())
	}
	var ev struct {
		Type   string
		Object struct {
			Kind string
			Rows []struct{ Cells []any }
		}
	}
	if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "ADDED" || ev.Object.Kind != "Table" || len(ev.Object.Rows) != 1 || ev.Object.Rows[0].Cells[0] != "pods" {
		t.Errorf("first Table event = %s, want ADDED with a Table of one row for pods", sc.Bytes())
	}
}

func TestStatusWatchBounded(t *testing.T) {
	s, _ := newTestServer(t)
	s.opts.MaxWatches = 1
	ts := httptest.NewServer(s.Handler())
	// Cleanups run last first: the watches' bodies are closed before the
	// server waits for its requests to end.
	t.Cleanup(ts.Close)
	_, sc := openStatusWatch(t, ts.URL, "")
	nextStatus(t, sc)
	resp, err := http.Get(ts.URL + "/apis/krm.io/v1alpha1/resourcestatuses?watch=true")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a watch beyond --max-watches got %d (Retry-After %q), want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	resp, err = http.Get(ts.URL + "/apis/krm.io/v1alpha1/resourcestatuses/pods?watch=true")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a watch of one status got %d, want 400", resp.StatusCode)
	}
}
