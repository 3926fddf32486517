package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"

	"github.com/krm-project/krm/pkg/store"
)

func newTestClient(t *testing.T, ts *httptest.Server) *Client {
	t.Helper()
	c, err := NewClient(ts.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var wantFreshness = Freshness{VerifiedAt: testVerifiedAt, ResourceVersion: "120", StreamLag: "1.5s", AgentVersion: "v0.0.0-test"}

func TestClientResourcesAndDrift(t *testing.T) {
	b, pods, _ := newTestBackend(t)
	pods.drift = DriftReport{
		Resource: "pods", VerifiedAt: testVerifiedAt, VerifiedResourceVersion: "104",
		Ledger: []DriftEntry{{Kind: MissedDeleted, UID: "u1", Namespace: "dev", Name: "gone", StreamedResourceVersion: "90",
			FoundAt: testVerifiedAt, ListResourceVersion: "104", Object: json.RawMessage(`{"kind":"Pod"}`)}},
		Unverified: []UnverifiedChange{{Type: ChangeAdded, UID: "u2", Namespace: "prod", Name: "db-0", ResourceVersion: "120"}},
	}
	ts, _ := newTestServer(t, b)
	c := newTestClient(t, ts)

	rl, err := c.Resources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := b.Resources()
	want.AgentVersion = "v0.0.0-test"
	if diff := cmp.Diff(&want, rl, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Resources (-want +got):\n%s", diff)
	}

	dr, err := c.Drift(t.Context(), "po")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&pods.drift, dr); diff != "" {
		t.Errorf("Drift (-want +got):\n%s", diff)
	}
	// An empty report still has lists, not nulls, for non-Go readers.
	r := get(t, ts, "/api/v1/resources/nodes/drift")
	if !strings.Contains(string(r.body), `"ledger":[]`) || !strings.Contains(string(r.body), `"unverified":[]`) {
		t.Errorf("empty drift report body %s, want empty ledger and unverified lists", r.body)
	}
}

func TestClientList(t *testing.T) {
	b, _, _ := newTestBackend(t)
	ts, _ := newTestServer(t, b)
	c := newTestClient(t, ts)

	raw, err := c.List(t.Context(), "pods", ListOptions{Namespace: "dev", LabelSelector: "app=api", Limit: 1, MaxStaleness: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if raw.APIVersion != "v1" || raw.Kind != "PodList" || raw.ResourceVersion != "120" || len(raw.Items) != 1 {
		t.Errorf("List: %s %s rv %q with %d items, want v1 PodList rv 120 with 1", raw.APIVersion, raw.Kind, raw.ResourceVersion, len(raw.Items))
	}
	if raw.RemainingItemCount == nil || *raw.RemainingItemCount != 1 || raw.Continue == "" {
		t.Errorf("List: remainingItemCount %v continue %q, want 1 and a token", raw.RemainingItemCount, raw.Continue)
	}
	if diff := cmp.Diff(wantFreshness, raw.Freshness); diff != "" {
		t.Errorf("Freshness (-want +got):\n%s", diff)
	}

	next, err := ListAs[corev1.Pod](t.Context(), c, "pods", ListOptions{Namespace: "dev", LabelSelector: "app=api", Limit: 1, Continue: raw.Continue})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]corev1.Pod{*newPod(testPods[1])}, next.Items); diff != "" {
		t.Errorf("second page (-want +got):\n%s", diff)
	}
	if next.Continue != "" || next.RemainingItemCount != nil {
		t.Errorf("last page: continue %q remainingItemCount %v, want none", next.Continue, next.RemainingItemCount)
	}

	all, err := ListAs[corev1.Pod](t.Context(), c, "pods", ListOptions{View: "verified", FieldSelector: "status.phase=Running"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range all.Items {
		names = append(names, p.Namespace+"/"+p.Name)
	}
	if diff := cmp.Diff([]string{"dev-2/api-1", "dev/api-1", "dev/web-1"}, names); diff != "" {
		t.Errorf("verified running pods (-want +got):\n%s", diff)
	}
	if len(all.Krm.Rows) != 3 || all.Krm.Header.View != "verified" || all.Freshness.ResourceVersion != "104" {
		t.Errorf("krm: %d rows, view %q, freshness rv %q; want 3, verified, 104", len(all.Krm.Rows), all.Krm.Header.View, all.Freshness.ResourceVersion)
	}
}

func TestClientGet(t *testing.T) {
	b, _, _ := newTestBackend(t)
	ts, _ := newTestServer(t, b)
	c := newTestClient(t, ts)

	pod, err := GetAs[corev1.Pod](t.Context(), c, "pods", "dev", "web-1", GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(*newPod(testPods[2]), pod.Object); diff != "" {
		t.Errorf("GetAs (-want +got):\n%s", diff)
	}
	if pod.Krm.Row.Name != "web-1" || pod.Krm.Row.ResourceVersion != "103" || pod.Krm.Header.Returned != 1 {
		t.Errorf("GetAs krm %+v, want row web-1@103 and 1 returned", pod.Krm)
	}
	if diff := cmp.Diff(wantFreshness, pod.Freshness); diff != "" {
		t.Errorf("Freshness (-want +got):\n%s", diff)
	}

	raw, err := c.Get(t.Context(), "nodes", "", "n1", GetOptions{View: "verified"})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw.Object, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["krm"]; ok || m["kind"] != "Node" {
		t.Errorf("Get object kind %v, krm present %v; want a Node without krm: %s", m["kind"], ok, raw.Object)
	}
	if raw.Freshness.StreamLag != "disconnected" {
		t.Errorf("Get freshness stream lag %q, want disconnected", raw.Freshness.StreamLag)
	}
}

func TestClientErrors(t *testing.T) {
	b, _, _ := newTestBackend(t)
	ts, _ := newTestServer(t, b)
	c := newTestClient(t, ts)
	ctx := t.Context()

	calls := []struct {
		name   string
		call   func() error
		status int
		want   string
	}{
		{"list bad view", func() error { _, err := c.List(ctx, "pods", ListOptions{View: "latest"}); return err }, 400, `unknown view "latest"`},
		{"list unknown resource", func() error { _, err := c.List(ctx, "foos", ListOptions{}); return err }, 404, "pods, nodes"},
		{"stale", func() error {
			_, err := ListAs[corev1.Pod](ctx, c, "pods", ListOptions{MaxStaleness: time.Second})
			return err
		}, 503, "older than maxStaleness=1s"},
		{"get missing", func() error { _, err := c.Get(ctx, "pods", "dev", "nope", GetOptions{}); return err }, 404, `pods "nope" not found in namespace "dev"`},
		{"get wrong scope", func() error { _, err := GetAs[corev1.Node](ctx, c, "nodes", "dev", "n1", GetOptions{}); return err }, 400, "cluster-scoped"},
		{"drift unknown", func() error { _, err := c.Drift(ctx, "foos"); return err }, 404, `"foos"`},
		{"watch with limit", func() error { _, err := c.Watch(ctx, "pods", ListOptions{Limit: 1}); return err }, 400, "cannot be used with watch"},
	}
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T), want an *Error", err, err)
			}
			if e.Status != tt.status || !strings.Contains(e.Message, tt.want) {
				t.Errorf("error %d %q, want %d saying %q", e.Status, e.Message, tt.status, tt.want)
			}
		})
	}
}

func TestClientProbes(t *testing.T) {
	b, _, _ := newTestBackend(t)
	ts, _ := newTestServer(t, b)
	c := newTestClient(t, ts)
	if err := c.Healthz(t.Context()); err != nil {
		t.Errorf("Healthz: %v", err)
	}
	if err := c.Readyz(t.Context()); err != nil {
		t.Errorf("Readyz of a ready agent: %v", err)
	}
	b.ready, b.why = false, "nodes have no verified frame yet"
	err := c.Readyz(t.Context())
	var e *Error
	if !errors.As(err, &e) || e.Status != 503 || e.Message != "nodes have no verified frame yet" {
		t.Errorf("Readyz of an unready agent = %v, want a 503 *Error with the agent's sentence", err)
	}
}

func TestClientWatch(t *testing.T) {
	b, pods, _ := newTestBackend(t)
	ts, _ := newTestServer(t, b)
	c := newTestClient(t, ts)

	// A client whose requests time out quickly must still keep a watch.
	c2, err := NewClient(ts.URL, &http.Client{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Client{c, c2} {
		changes := make(chan Change)
		pods.changes = changes
		ctx, cancel := context.WithCancel(t.Context())
		events, err := c.Watch(ctx, "pods", ListOptions{Namespace: "prod"})
		if err != nil {
			t.Fatal(err)
		}
		ev := <-events
		if ev.Type != EventAdded || ev.Row == nil || ev.Row.Name != "db-0" {
			t.Fatalf("first event %s %+v, want ADDED db-0", ev.Type, ev.Row)
		}
		time.Sleep(300 * time.Millisecond)
		changes <- change(t, EventDeleted, "prod", "db-0", nil, 140)
		if ev := <-events; ev.Type != EventDeleted || ev.Row.ResourceVersion != "140" {
			t.Errorf("event %s %+v, want DELETED db-0@140", ev.Type, ev.Row)
		}
		cancel()
	}

	changes := make(chan Change)
	pods.changes = changes
	close(changes)
	events, err := c.Watch(t.Context(), "pods", ListOptions{Namespace: "prod", View: string(store.Verified)})
	if err != nil {
		t.Fatal(err)
	}
	ev, ok := <-events
	if !ok || ev.Type != EventError || !strings.Contains(ev.Message, "watch again") {
		t.Errorf("event %+v (open %v), want the ERROR of a watcher that fell behind", ev, ok)
	}
	if ev, ok := <-events; ok {
		t.Errorf("event %+v after ERROR, want the channel closed", ev)
	}

	ctx, cancel := context.WithCancel(t.Context())
	pods.changes = nil
	events, err = c.Watch(ctx, "pods", ListOptions{Namespace: "dev-2"})
	if err != nil {
		t.Fatal(err)
	}
	<-events
	cancel()
	select {
	case ev, ok := <-events:
		if ok {
			t.Errorf("event %+v after cancel, want the channel closed", ev)
		}
	case <-time.After(5 * time.Second):
		t.Error("the channel was not closed within 5s of cancelling the watch")
	}
}

func TestClientConnectionRefused(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close()
	c, err := NewClient(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Resources(t.Context())
	if err == nil || !strings.Contains(err.Error(), url+"/api/v1/resources") {
		t.Errorf("error %v, want one naming %s", err, url)
	}
	var e *Error
	if errors.As(err, &e) {
		t.Errorf("a connection failure came back as an agent *Error: %v", err)
	}
}

func TestNewClientRejectsBadURLs(t *testing.T) {
	for _, u := range []string{"", "localhost:8080", "ftp://host", "http://", "http://host/?a=1", "http://host/#x", "http://[::1"} {
		if _, err := NewClient(u, nil); err == nil || !strings.Contains(err.Error(), "invalid agent URL") {
			t.Errorf("NewClient(%q) error = %v, want invalid agent URL", u, err)
		}
	}
	c, err := NewClient("http://proxy.example/krm/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.endpoint(nil, "api", Version, "resources", "pods", "namespaces", "a b", "c/d"), "http://proxy.example/krm/api/v1/resources/pods/namespaces/a%20b/c%2Fd"; got != want {
		t.Errorf("endpoint = %s, want %s", got, want)
	}
}
