package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/krm-project/krm/pkg/store"
)

// watchStream reads a watch answer's events as the test asks for them.
type watchStream struct {
	resp   *http.Response
	events chan Event
}

func startWatch(t *testing.T, ts *httptest.Server, path string) *watchStream {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		t.Fatalf("watch status = %d, want 200", resp.StatusCode)
	}
	w := &watchStream{resp: resp, events: make(chan Event)}
	go func() {
		defer close(w.events)
		dec := json.NewDecoder(resp.Body)
		for {
			var ev Event
			if err := dec.Decode(&ev); err != nil {
				return
			}
			w.events <- ev
		}
	}()
	return w
}

// next returns the next event as "TYPE namespace/name", checking that the
// event's object and krm row agree.
func (w *watchStream) next(t *testing.T) string {
	t.Helper()
	select {
	case ev, ok := <-w.events:
		if !ok {
			t.Fatal("the watch ended, want another event")
		}
		if ev.Type == EventError {
			return ev.Type + " " + ev.Message
		}
		var pod corev1.Pod
		if err := json.Unmarshal(ev.Object, &pod); err != nil {
			t.Fatalf("%s event object: %v", ev.Type, err)
		}
		if ev.Row == nil || ev.Row.Name != pod.Name || ev.Row.Namespace != pod.Namespace || ev.Row.ResourceVersion != pod.ResourceVersion {
			t.Errorf("%s event krm row %+v does not describe its object %s/%s@%s", ev.Type, ev.Row, pod.Namespace, pod.Name, pod.ResourceVersion)
		}
		return ev.Type + " " + pod.Namespace + "/" + pod.Name
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event within 5s")
	}
	return ""
}

func (w *watchStream) ended(t *testing.T) {
	t.Helper()
	select {
	case ev, ok := <-w.events:
		if ok {
			t.Fatalf("got %s event %q, want the watch to end", ev.Type, ev.Message)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not end within 5s")
	}
}

func change(t *testing.T, typ, ns, name string, labels map[string]string, rv uint64) Change {
	spec := podSpec{ns: ns, name: name, node: "n1", phase: "Running", labels: labels, rv: rv, source: store.Streamed}
	return Change{Type: typ, Row: podRow(t, spec)}
}

func TestWatchWithSelector(t *testing.T) {
	b, pods, _ := newTestBackend(t)
	changes := make(chan Change)
	pods.changes = changes
	pods.subscribed = make(chan store.Source, 1)
	ts, _ := newTestServer(t, b)

	w := startWatch(t, ts, "/api/v1/resources/pods?watch=true&labelSelector=app%3Dapi&view=streamed")
	if view := <-pods.subscribed; view != store.Streamed {
		t.Errorf("subscribed to view %q, want streamed", view)
	}
	if ct := w.resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("Content-Type = %q, want application/x-ndjson", ct)
	}
	if got := w.resp.Header.Get(HeaderResourceVersion); got != "120" {
		t.Errorf("%s = %q, want 120", HeaderResourceVersion, got)
	}

	var got []string
	for range 3 {
		got = append(got, w.next(t))
	}
	want := []string{"ADDED dev-2/api-1", "ADDED dev/api-1", "ADDED dev/api-2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("initial events (-want +got):\n%s", diff)
	}

	api := map[string]string{"app": "api"}
	steps := []struct {
		change Change
		want   string // "" when the watcher must see nothing
	}{
		{change(t, EventModified, "dev", "api-2", api, 130), "MODIFIED dev/api-2"},
		{change(t, EventModified, "dev", "api-2", map[string]string{"app": "worker"}, 131), "DELETED dev/api-2"},
		{change(t, EventModified, "dev", "api-2", map[string]string{"app": "worker"}, 132), ""},
		{change(t, EventModified, "dev", "web-1", api, 133), "ADDED dev/web-1"},
		{change(t, EventModified, "prod", "db-0", map[string]string{"app": "db"}, 134), ""},
		{change(t, EventDeleted, "prod", "db-0", map[string]string{"app": "db"}, 135), ""},
		{change(t, EventDeleted, "dev-2", "api-1", api, 136), "DELETED dev-2/api-1"},
		{change(t, EventAdded, "dev", "api-3", api, 137), "ADDED dev/api-3"},
		{change(t, EventAdded, "dev", "cron-1", nil, 138), ""},
		{change(t, EventModified, "dev", "web-1", api, 139), "MODIFIED dev/web-1"},
	}
	for _, s := range steps {
		changes <- s.change
		if s.want != "" {
			if got := w.next(t); got != s.want {
				t.Errorf("after %s %s: event %q, want %q", s.change.Type, s.change.Row.Key(), got, s.want)
			}
		}
	}

	close(changes)
	got0 := w.next(t)
	for _, part := range []string{"ERROR", "pods", "fell behind", "watch again"} {
		if !strings.Contains(got0, part) {
			t.Errorf("last event %q does not say %q", got0, part)
		}
	}
	w.ended(t)
}

func TestWatchNamespace(t *testing.T) {
	b, pods, _ := newTestBackend(t)
	changes := make(chan Change)
	pods.changes = changes
	ts, _ := newTestServer(t, b)

	w := startWatch(t, ts, "/api/v1/resources/pods?watch=true&namespace=dev-2")
	if got := w.next(t); got != "ADDED dev-2/api-1" {
		t.Fatalf("first event %q, want ADDED dev-2/api-1", got)
	}
	// Without a selector every change in the namespace passes as it is.
	changes <- change(t, EventModified, "dev", "api-1", nil, 130)
	changes <- change(t, EventModified, "dev-2", "api-1", nil, 131)
	if got := w.next(t); got != "MODIFIED dev-2/api-1" {
		t.Errorf("event %q, want MODIFIED dev-2/api-1 (dev/api-1 is in another namespace)", got)
	}
	changes <- change(t, EventDeleted, "dev-2", "api-1", nil, 132)
	if got := w.next(t); got != "DELETED dev-2/api-1" {
		t.Errorf("event %q, want DELETED dev-2/api-1", got)
	}
}

// When the client leaves, the server must stop reading the subscription
// rather than send the ERROR meant for a watcher that fell behind.
func TestWatchEndsWithClient(t *testing.T) {
	b, pods, _ := newTestBackend(t)
	pods.changes = make(chan Change)
	ts, _ := newTestServer(t, b)

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.URL+"/api/v1/resources/nodes?watch=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ev Event
	dec := json.NewDecoder(resp.Body)
	if err := dec.Decode(&ev); err != nil || ev.Type != EventAdded {
		t.Fatalf("first event %+v, %v; want ADDED", ev, err)
	}
	resp.Body.Close()
	// httptest.Server.Close (in Cleanup) waits for the handler: a handler
	// stuck on the subscription would hang the test here.
}

func TestTranslate(t *testing.T) {
	q, err := parseListQuery(map[string][]string{"fieldSelector": {"status.phase=Running"}}, podsInfo)
	if err != nil {
		t.Fatal(err)
	}
	running := podRow(t, podSpec{"dev", "a", "n1", "Running", nil, 1, store.Streamed})
	pending := podRow(t, podSpec{"dev", "a", "n1", "Pending", nil, 2, store.Streamed})
	sent := map[string]struct{}{}
	steps := []struct {
		c    Change
		want string
	}{
		{Change{Type: EventAdded, Row: pending}, ""},
		{Change{Type: EventModified, Row: running}, EventAdded},
		{Change{Type: EventModified, Row: running}, EventModified},
		{Change{Type: "BOOKMARK", Row: running}, ""},
		{Change{Type: EventModified, Row: pending}, EventDeleted},
		{Change{Type: EventDeleted, Row: pending}, ""},
		{Change{Type: EventModified}, ""},
	}
	for i, s := range steps {
		got, ok := q.translate(sent, s.c)
		if !ok {
			got = ""
		}
		if got != s.want {
			t.Errorf("step %d: %s of a %s pod -> %q, want %q (sent before: %v)", i, s.c.Type, phase(s.c.Row), got, s.want, sent)
		}
	}
}

func phase(r *store.Row) string {
	if r == nil {
		return "nil"
	}
	return r.Fields["status.phase"]
}
