package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FuzzQuery sends any query to a LIST, a GET and a WATCH: the answer is a
// 200 or a Status with a 4xx/5xx code, never a panic or a bare error.
func FuzzQuery(f *testing.F) {
	for _, q := range []string{
		"", "labelSelector=app%3Dapi", "fieldSelector=spec.nodeName%3Dn1", "limit=2", "continue=abc",
		"resourceVersion=5&resourceVersionMatch=Exact", "resourceVersion=x", "limit=-1", "timeoutSeconds=1",
		"sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
		"labelSelector=%ff%fe", "fieldSelector=a%3D%3D%3Db", "view=verified", "maxStaleness=1h", "includeObject=Object",
	} {
		f.Add(q)
	}
	s, _ := newTestServer(f)
	s.opts.WaitForResourceVersion = 1
	h := s.Handler()
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		// A watch that parses would stream until its timeout.
		q.Set("timeoutSeconds", "1")
		for _, path := range []string{"/api/v1/namespaces/dev/pods", "/api/v1/namespaces/dev/pods/web-1", "/api/v1/pods"} {
			req := httptest.NewRequest(http.MethodGet, path+"?"+q.Encode(), nil)
			if q.Get("watch") != "" {
				// An ended request: the watch parses, answers, and stops.
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				req = req.WithContext(ctx)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code == http.StatusOK {
				continue
			}
			var st metav1.Status
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.Kind != "Status" || int(st.Code) != rec.Code {
				t.Fatalf("GET %s?%s = %d %q: not a Status", path, q.Encode(), rec.Code, rec.Body.String())
			}
		}
	})
}
