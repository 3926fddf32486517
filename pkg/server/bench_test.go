package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/krm-project/krm/pkg/store"
)

// discard is a ResponseWriter that counts and drops the body, so the
// benchmarks measure the server rather than a growing buffer.
type discard struct {
	header http.Header
	n      int64
	status int
}

func (d *discard) Header() http.Header         { return d.header }
func (d *discard) WriteHeader(code int)        { d.status = code }
func (d *discard) Write(b []byte) (int, error) { d.n += int64(len(b)); return len(b), nil }

// newBigServer serves n pods of about 3 KB each over 20 namespaces.
func newBigServer(b *testing.B, n int) *Server {
	rows := make([]*store.Row, 0, n)
	for i := range n {
		row := podRow(b, podSpec{fmt.Sprintf("ns-%02d", i%20), fmt.Sprintf("pod-%05d", i), "n1", "Running", map[string]string{"app": "web"}, uint64(1000 + i)})
		// Pad to a realistic object size without changing its fields.
		row.Object = append(row.Object[:len(row.Object)-1], []byte(`,"zpad":"`+strings.Repeat("x", 2200)+`"}`)...)
		rows = append(rows, row)
	}
	res := newFakeResource(podsInfo, uint64(1000+n), rows...)
	return New(&fakeBackend{resources: []*fakeResource{res}}, Options{Now: func() time.Time { return testNow }})
}

// BenchmarkList serves a LIST of 10,000 pods as JSON, as a Table (what
// kubectl get asks for) and as PartialObjectMetadata.
func BenchmarkList(b *testing.B) {
	s := newBigServer(b, 10000)
	for _, bc := range []struct{ name, accept string }{
		{"json", "application/json"},
		{"table", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
		{"metadata", "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/api/v1/pods", nil)
			req.Header.Set("Accept", bc.accept)
			h := s.Handler()
			var bytes int64
			for b.Loop() {
				d := &discard{header: http.Header{}}
				h.ServeHTTP(d, req)
				if d.status != 0 && d.status != http.StatusOK {
					b.Fatalf("status %d", d.status)
				}
				bytes = d.n
			}
			b.SetBytes(bytes)
		})
	}
}
