package api

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/krm-project/krm/pkg/store"
)

// discard is a ResponseWriter that counts and drops the body, so the
// benchmark measures the server rather than a growing buffer.
type discard struct {
	header http.Header
	n      int64
	status int
}

func (d *discard) Header() http.Header         { return d.header }
func (d *discard) WriteHeader(code int)        { d.status = code }
func (d *discard) Flush()                      {}
func (d *discard) Write(b []byte) (int, error) { d.n += int64(len(b)); return len(b), nil }

// newBigBackend has pods of about 3 KB each, spread over 20 namespaces.
func newBigBackend(b *testing.B, n int) *fakeBackend {
	rows := make([]*store.Row, 0, n)
	pad := strings.Repeat("x", 2200)
	for i := range n {
		p := podSpec{
			ns: fmt.Sprintf("ns-%02d", i%20), name: fmt.Sprintf("pod-%05d", i),
			node: fmt.Sprintf("node-%d", i%50), phase: "Running",
			labels: map[string]string{"app": fmt.Sprintf("app-%d", i%10), "tier": "backend"},
			rv:     uint64(1000 + i), source: store.Verified,
		}
		pod := newPod(p)
		pod.Annotations = map[string]string{"example.com/padding": pad}
		row := podRow(b, p)
		row.Object = mustJSON(b, pod)
		rows = append(rows, row)
	}
	res := &fakeResource{info: podsInfo, snaps: map[store.Source]*Snapshot{
		store.Aggregated: snapshot(store.Aggregated, uint64(1000+n), rows),
	}}
	return &fakeBackend{resources: []*fakeResource{res}, ready: true}
}

func BenchmarkList10kPods(b *testing.B) {
	backend := newBigBackend(b, 10000)
	var size int
	for _, r := range backend.resources[0].snaps[store.Aggregated].Rows {
		size += len(r.Object)
	}
	b.Logf("10000 pods, %d bytes of objects (%d per pod)", size, size/10000)
	h := NewServer(backend, ServerOptions{}).Handler()

	for _, bc := range []struct{ name, query string }{
		{"all", ""},
		{"namespace", "?namespace=ns-07"},
		{"labelSelector", "?labelSelector=app%3Dapp-3"},
		{"limit500", "?limit=500"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/api/v1/resources/pods"+bc.query, nil)
			w := &discard{header: make(http.Header)}
			h.ServeHTTP(w, req)
			if w.status != http.StatusOK {
				b.Fatalf("status %d", w.status)
			}
			b.SetBytes(w.n)
			b.ReportAllocs()
			for b.Loop() {
				w := &discard{header: make(http.Header)}
				h.ServeHTTP(w, req)
			}
		})
	}
}
