package server

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/store"
)

var testNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

var (
	podsInfo = api.ResourceInfo{
		Name: "pods", Version: "v1", Resource: "pods", Kind: "Pod", Namespaced: true,
		ShortNames: []string{"po"}, SelectableFields: []string{"spec.nodeName", "status.phase"},
	}
	deploymentsInfo = api.ResourceInfo{
		Name: "deployments", Group: "apps", Version: "v1", Resource: "deployments", Kind: "Deployment", Namespaced: true,
		ShortNames: []string{"deploy"},
	}
)

// fakeBackend holds resources whose rows tests change; it keeps every
// change, so watches resume from any resourceVersion after floor.
type fakeBackend struct {
	resources []*fakeResource
}

func (b *fakeBackend) Resources() api.ResourceList {
	var out []api.ResourceStatus
	for _, r := range b.resources {
		out = append(out, r.Status())
	}
	return api.ResourceList{Cluster: "test", Resources: out}
}

func (b *fakeBackend) Resource(name string) (api.Resource, bool) {
	for _, r := range b.resources {
		if slices.Contains(r.info.Names(), name) {
			return r, true
		}
	}
	return nil, false
}

func (b *fakeBackend) Ready() (bool, string) { return true, "" }

type fakeResource struct {
	info api.ResourceInfo
	// columns are kube-apiserver's Table columns, for rows with Cells.
	columns []metav1.TableColumnDefinition

	mu      sync.Mutex
	rows    map[string]*store.Row // by key
	rv      uint64
	floor   uint64
	history []api.Change
	subs    []chan api.Change
	// unavailable is the Snapshot's Unavailable.
	unavailable string
}

func newFakeResource(info api.ResourceInfo, rv uint64, rows ...*store.Row) *fakeResource {
	r := &fakeResource{info: info, rows: map[string]*store.Row{}, rv: rv, floor: rv}
	for _, row := range rows {
		r.rows[row.Key()] = row
	}
	return r
}

func (r *fakeResource) Info() api.ResourceInfo { return r.info }

func (r *fakeResource) Status() api.ResourceStatus { return api.ResourceStatus{ResourceInfo: r.info} }

func (r *fakeResource) Drift() api.DriftReport { return api.DriftReport{} }

func (r *fakeResource) TableColumns() []metav1.TableColumnDefinition { return r.columns }

func (r *fakeResource) Snapshot(view store.Source) *api.Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshotLocked()
}

func (r *fakeResource) snapshotLocked() *api.Snapshot {
	rows := make([]*store.Row, 0, len(r.rows))
	for _, row := range r.rows {
		rows = append(rows, row)
	}
	slices.SortFunc(rows, store.CompareKeys)
	return &api.Snapshot{
		Header:          store.Header{Source: store.Aggregated, ResourceVersion: r.rv, VerifiedAt: testNow.Add(-10 * time.Second), Rows: len(rows)},
		Rows:            store.NewView(rows...),
		StreamConnected: true,
		LastStreamAt:    testNow.Add(-time.Second),
		Unavailable:     r.unavailable,
	}
}

func (r *fakeResource) Subscribe(ctx context.Context, view store.Source, from uint64) (*api.Snapshot, []api.Change, <-chan api.Change, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	snap := r.snapshotLocked()
	var backlog []api.Change
	if from > 0 {
		if from < r.floor {
			return nil, nil, nil, &api.TooOldError{Requested: from, Oldest: r.floor}
		}
		for _, c := range r.history {
			if c.ResourceVersion > from {
				backlog = append(backlog, c)
			}
		}
	}
	ch := make(chan api.Change, 100)
	r.subs = append(r.subs, ch)
	return snap, backlog, ch, nil
}

// apply changes the rows as a watch event would and tells subscribers.
func (r *fakeResource) apply(typ string, row *store.Row) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.rows[row.Key()]
	if typ == eventDeleted {
		delete(r.rows, row.Key())
	} else {
		r.rows[row.Key()] = row
	}
	r.rv = row.ResourceVersion
	c := api.Change{Type: typ, Row: row, Prev: prev, ResourceVersion: row.ResourceVersion}
	r.history = append(r.history, c)
	for _, ch := range r.subs {
		select {
		case ch <- c:
		default:
		}
	}
}

type podSpec struct {
	ns, name, node, phase string
	labels                map[string]string
	rv                    uint64
}

func podRow(t testing.TB, p podSpec) *store.Row {
	t.Helper()
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: p.ns, Name: p.name, UID: types.UID("uid-" + p.ns + "-" + p.name),
			ResourceVersion: fmt.Sprint(p.rv), Labels: p.labels,
			CreationTimestamp: metav1.NewTime(testNow.Add(-time.Hour)),
		},
		Spec:   corev1.PodSpec{NodeName: p.node, Containers: []corev1.Container{{Name: "main", Image: "example/" + p.name + ":1"}}},
		Status: corev1.PodStatus{Phase: corev1.PodPhase(p.phase)},
	}
	b, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return &store.Row{
		UID: string(pod.UID), Namespace: p.ns, Name: p.name, ResourceVersion: p.rv, Source: store.Verified,
		Object: b, Labels: p.labels, Fields: map[string]string{"spec.nodeName": p.node, "status.phase": p.phase},
	}
}

// testPods are in namespaces dev and dev-2 on purpose: "dev-2/…" sorts
// before "dev/…", so a namespace filter must not take a key prefix for it.
var testPods = []podSpec{
	{"dev", "api-1", "n1", "Running", map[string]string{"app": "api"}, 101},
	{"dev", "api-2", "n2", "Pending", map[string]string{"app": "api"}, 102},
	{"dev", "web-1", "n1", "Running", map[string]string{"app": "web"}, 103},
	{"dev-2", "api-1", "n2", "Running", map[string]string{"app": "api"}, 104},
	{"prod", "db-0", "n3", "Succeeded", map[string]string{"app": "db"}, 110},
}

func newTestServer(t testing.TB) (*Server, *fakeResource) {
	var rows []*store.Row
	for _, p := range testPods {
		rows = append(rows, podRow(t, p))
	}
	pods := newFakeResource(podsInfo, 110, rows...)
	deploys := newFakeResource(deploymentsInfo, 110)
	s := New(&fakeBackend{resources: []*fakeResource{pods, deploys}}, Options{
		Now: func() time.Time { return testNow }, APIServer: "https://apiserver.test:6443",
		BookmarkInterval: 50 * time.Millisecond, WaitForResourceVersion: 100 * time.Millisecond,
	})
	return s, pods
}

func names(rows []string) string { return strings.Join(rows, ",") }
