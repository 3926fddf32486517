package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/krm-project/krm/pkg/store"
)

// The fixtures' clock: verified 10s before "now", the watch spoke 1.5s ago.
var (
	testNow        = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	testVerifiedAt = testNow.Add(-10 * time.Second)
)

var (
	podsInfo = ResourceInfo{
		Name: "pods", Version: "v1", Resource: "pods", Kind: "Pod", Namespaced: true,
		ShortNames:       []string{"po"},
		SelectableFields: []string{"spec.nodeName", "status.phase"},
	}
	nodesInfo = ResourceInfo{
		Name: "nodes", Version: "v1", Resource: "nodes", Kind: "Node",
		ShortNames: []string{"no"},
	}
)

// fakeBackend serves fixed snapshots. Its resources are found by plural,
// singular, short name or kind, like the agent's.
type fakeBackend struct {
	resources []*fakeResource
	ready     bool
	why       string
}

func (b *fakeBackend) Resources() ResourceList {
	var out []ResourceStatus
	for _, r := range b.resources {
		out = append(out, r.Status())
	}
	return ResourceList{Cluster: "test", Store: StoreStatus{Kind: "memory", Healthy: true}, Resources: out}
}

func (b *fakeBackend) Resource(name string) (Resource, bool) {
	for _, r := range b.resources {
		i := r.info
		if name == i.Name || strings.EqualFold(name, i.Kind) || slices.Contains(i.ShortNames, name) {
			return r, true
		}
	}
	return nil, false
}

func (b *fakeBackend) Ready() (bool, string) { return b.ready, b.why }

type fakeResource struct {
	info  ResourceInfo
	snaps map[store.Source]*Snapshot
	drift DriftReport

	mu sync.Mutex
	// changes is handed to the next subscriber; the test sends on it and
	// closes it to play a watcher that fell behind.
	changes chan Change
	// subscribed receives each subscriber's view.
	subscribed chan store.Source
}

func (r *fakeResource) Info() ResourceInfo { return r.info }

func (r *fakeResource) Status() ResourceStatus {
	s := r.snaps[store.Aggregated]
	return ResourceStatus{ResourceInfo: r.info, VerifiedAt: s.Header.VerifiedAt, StreamConnected: s.StreamConnected,
		Objects: ObjectCounts{Verified: len(r.snaps[store.Verified].Rows), Streamed: len(r.snaps[store.Streamed].Rows), Aggregated: len(s.Rows)}}
}

func (r *fakeResource) Snapshot(view store.Source) *Snapshot { return r.snaps[view] }

func (r *fakeResource) Subscribe(ctx context.Context, view store.Source, from uint64) (*Snapshot, []Change, <-chan Change, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := r.changes
	if ch == nil {
		ch = make(chan Change)
	}
	if r.subscribed != nil {
		r.subscribed <- view
	}
	return r.snaps[view], nil, ch, nil
}

func (r *fakeResource) Drift() DriftReport { return r.drift }

type podSpec struct {
	ns, name, node, phase string
	labels                map[string]string
	rv                    uint64
	source                store.Source
}

// testPods are in namespaces dev and dev-2 on purpose: "dev-2/…" sorts
// before "dev/…", so a namespace filter must not take a key prefix for it.
var testPods = []podSpec{
	{"dev", "api-1", "n1", "Running", map[string]string{"app": "api", "tier": "backend"}, 101, store.Verified},
	{"dev", "api-2", "n2", "Pending", map[string]string{"app": "api"}, 102, store.Streamed},
	{"dev", "web-1", "n1", "Running", map[string]string{"app": "web", "tier": "frontend"}, 103, store.Verified},
	{"dev-2", "api-1", "n2", "Running", map[string]string{"app": "api"}, 104, store.Verified},
	{"prod", "db-0", "n3", "Succeeded", map[string]string{"app": "db", "tier": "backend"}, 120, store.Streamed},
}

func newPod(p podSpec) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: p.ns, Name: p.name, UID: types.UID("uid-" + p.ns + "-" + p.name),
			ResourceVersion: itoa(p.rv), Labels: p.labels,
			CreationTimestamp: metav1.NewTime(testVerifiedAt.Add(-time.Hour)),
		},
		Spec:   corev1.PodSpec{NodeName: p.node, Containers: []corev1.Container{{Name: "main", Image: "registry.example/" + p.name + ":1"}}},
		Status: corev1.PodStatus{Phase: corev1.PodPhase(p.phase)},
	}
}

func podRow(t testing.TB, p podSpec) *store.Row {
	t.Helper()
	b, err := json.Marshal(newPod(p))
	if err != nil {
		t.Fatal(err)
	}
	return &store.Row{
		UID: "uid-" + p.ns + "-" + p.name, Namespace: p.ns, Name: p.name, ResourceVersion: p.rv,
		Source: p.source, ObservedAt: testVerifiedAt.Add(time.Duration(p.rv) * time.Millisecond),
		Object: b, Labels: p.labels, Fields: map[string]string{"spec.nodeName": p.node, "status.phase": p.phase},
	}
}

func nodeRow(t testing.TB, name string, rv uint64) *store.Row {
	t.Helper()
	n := corev1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), ResourceVersion: itoa(rv), Labels: map[string]string{"kubernetes.io/hostname": name}},
	}
	b, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	return &store.Row{UID: "uid-" + name, Name: name, ResourceVersion: rv, Source: store.Verified, Object: b, Labels: n.Labels}
}

func sortRows(rows []*store.Row) []*store.Row {
	slices.SortFunc(rows, func(a, b *store.Row) int { return strings.Compare(a.Key(), b.Key()) })
	return rows
}

func snapshot(view store.Source, rv uint64, rows []*store.Row) *Snapshot {
	return &Snapshot{
		Header:                  store.Header{Cluster: "test", Resource: "pods", Source: view, ResourceVersion: rv, VerifiedAt: testVerifiedAt, Rows: len(rows)},
		VerifiedResourceVersion: 104,
		Rows:                    sortRows(rows),
		StreamConnected:         true,
		LastStreamAt:            testNow.Add(-1500 * time.Millisecond),
	}
}

// newTestBackend returns pods (aggregated: all five; verified: the three
// the last LIST had; streamed: all five) and three nodes.
func newTestBackend(t testing.TB) (*fakeBackend, *fakeResource, *fakeResource) {
	var all, verified []*store.Row
	for _, p := range testPods {
		all = append(all, podRow(t, p))
		if p.source == store.Verified {
			verified = append(verified, podRow(t, p))
		}
	}
	pods := &fakeResource{info: podsInfo, snaps: map[store.Source]*Snapshot{
		store.Aggregated: snapshot(store.Aggregated, 120, slices.Clone(all)),
		store.Verified:   snapshot(store.Verified, 104, verified),
		store.Streamed:   snapshot(store.Streamed, 120, slices.Clone(all)),
	}}
	nodeRows := []*store.Row{nodeRow(t, "n1", 10), nodeRow(t, "n2", 11), nodeRow(t, "n3", 12)}
	nodeSnap := snapshot(store.Aggregated, 12, nodeRows)
	nodeSnap.Header.Resource = "nodes"
	nodeSnap.StreamConnected = false
	nodes := &fakeResource{info: nodesInfo, snaps: map[store.Source]*Snapshot{
		store.Aggregated: nodeSnap, store.Verified: nodeSnap, store.Streamed: nodeSnap,
	}}
	return &fakeBackend{resources: []*fakeResource{pods, nodes}, ready: true}, pods, nodes
}

// newTestServer returns a running server over b with a fixed clock and its
// own metrics registry.
func newTestServer(t testing.TB, b Backend) (*httptest.Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	srv := NewServer(b, ServerOptions{AgentVersion: "v0.0.0-test", Registry: reg, Gatherer: reg, Now: func() time.Time { return testNow }})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts, reg
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func get(t testing.TB, ts *httptest.Server, path string) response {
	t.Helper()
	return do(t, ts, http.MethodGet, path)
}

func do(t testing.TB, ts *httptest.Server, method, path string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

// apiError decodes a JSON error answer, failing the test if it is not one.
func apiError(t testing.TB, r response) Error {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type = %q, want application/json; body: %s", ct, r.body)
	}
	var e Error
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body is not an Error: %v: %s", err, r.body)
	}
	if e.Status != r.status {
		t.Errorf("error body status = %d, HTTP status %d", e.Status, r.status)
	}
	return e
}

func itoa(v uint64) string { return store.FormatResourceVersion(v) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
