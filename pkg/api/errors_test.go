package api

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/krm-project/krm/pkg/store"
)

func TestBadRequests(t *testing.T) {
	b, pods, _ := newTestBackend(t)
	unverified := *pods.snaps[store.Streamed]
	unverified.Header.VerifiedAt = time.Time{}
	pods.snaps[store.Streamed] = &unverified
	ts, _ := newTestServer(t, b)

	nodesToken := encodeContinue("nodes", "n1")
	tests := []struct {
		name   string
		method string
		path   string
		status int
		// want are substrings the message must hold: what was wrong and,
		// where there is a choice, what to use instead.
		want []string
	}{
		{"unknown resource", "", "/api/v1/resources/foos", 404, []string{`"foos" is not watched`, "pods, nodes"}},
		{"unknown resource on get", "", "/api/v1/resources/foos/namespaces/a/b", 404, []string{`"foos"`, "pods, nodes"}},
		{"unknown resource on drift", "", "/api/v1/resources/foos/drift", 404, []string{`"foos"`, "pods, nodes"}},
		{"bad view", "", "/api/v1/resources/pods?view=latest", 400, []string{`"latest"`, "aggregated, verified or streamed"}},
		{"bad view on get", "", "/api/v1/resources/pods/namespaces/dev/api-1?view=latest", 400, []string{`"latest"`}},
		{"bad labelSelector", "", "/api/v1/resources/pods?labelSelector=" + url.QueryEscape("app in ("), 400, []string{"invalid labelSelector", `"app in ("`}},
		{"bad fieldSelector syntax", "", "/api/v1/resources/pods?fieldSelector=phase", 400, []string{"invalid fieldSelector", `"phase"`}},
		{"unsupported field", "", "/api/v1/resources/pods?fieldSelector=spec.foo%3Dbar", 400, []string{`"spec.foo"`, "metadata.name, metadata.namespace, spec.nodeName, status.phase"}},
		{"unsupported field of nodes", "", "/api/v1/resources/nodes?fieldSelector=spec.nodeName%3Dn1", 400, []string{`"spec.nodeName"`, "supported fields: metadata.name, metadata.namespace"}},
		{"limit 0", "", "/api/v1/resources/pods?limit=0", 400, []string{"limit must be a positive integer", `"0"`}},
		{"limit -1", "", "/api/v1/resources/pods?limit=-1", 400, []string{"limit must be a positive integer", `"-1"`}},
		{"limit abc", "", "/api/v1/resources/pods?limit=abc", 400, []string{"limit must be a positive integer", `"abc"`}},
		{"continue not base64", "", "/api/v1/resources/pods?continue=!!!", 400, []string{"invalid continue token", "not one this server issued"}},
		{"continue not a token", "", "/api/v1/resources/pods?continue=eyJ4IjoxfQ", 400, []string{"invalid continue token", "not one this server issued"}},
		{"continue of another resource", "", "/api/v1/resources/pods?continue=" + nodesToken, 400, []string{"invalid continue token", `issued for "nodes", not pods`}},
		{"bad maxStaleness", "", "/api/v1/resources/pods?maxStaleness=soon", 400, []string{"maxStaleness must be a positive Go duration", `"soon"`}},
		{"negative maxStaleness", "", "/api/v1/resources/pods?maxStaleness=-5s", 400, []string{"maxStaleness must be a positive", `"-5s"`}},
		{"stale", "", "/api/v1/resources/pods?maxStaleness=5s", 503, []string{"pods were last verified 10s ago, older than maxStaleness=5s"}},
		{"stale get", "", "/api/v1/resources/pods/namespaces/dev/api-1?maxStaleness=2s", 503, []string{"pods were last verified 10s ago, older than maxStaleness=2s"}},
		{"stale watch", "", "/api/v1/resources/pods?watch=true&maxStaleness=2s", 503, []string{"older than maxStaleness=2s"}},
		{"never verified", "", "/api/v1/resources/pods?view=streamed&maxStaleness=1h", 503, []string{"pods have not been verified yet", "maxStaleness=1h0m0s"}},
		{"unknown parameter", "", "/api/v1/resources/pods?lables=app", 400, []string{`unknown query parameter "lables"`, "namespace, labelSelector, fieldSelector, view, limit, continue, maxStaleness, watch"}},
		{"unknown parameters", "", "/api/v1/resources/pods?b=1&a=2", 400, []string{`unknown query parameters "a", "b"`}},
		{"repeated parameter", "", "/api/v1/resources/pods?view=verified&view=streamed", 400, []string{"view is given 2 times"}},
		{"list parameter on get", "", "/api/v1/resources/pods/namespaces/dev/api-1?labelSelector=a", 400, []string{`"labelSelector"`, "accepted: view, maxStaleness"}},
		{"parameter on drift", "", "/api/v1/resources/pods/drift?view=verified", 400, []string{`"view"`, "takes none"}},
		{"namespace of cluster-scoped", "", "/api/v1/resources/nodes?namespace=dev", 400, []string{"nodes are cluster-scoped", "namespace"}},
		{"invalid namespace", "", "/api/v1/resources/pods?namespace=Dev_1", 400, []string{`namespace "Dev_1" is not a valid namespace name`}},
		{"namespaced path on cluster-scoped", "", "/api/v1/resources/nodes/namespaces/dev/n1", 400, []string{"nodes are cluster-scoped", "/api/v1/resources/nodes/n1"}},
		{"cluster path on namespaced", "", "/api/v1/resources/pods/api-1", 400, []string{"pods are namespaced", "/api/v1/resources/pods/namespaces/{namespace}/api-1"}},
		{"object not found", "", "/api/v1/resources/pods/namespaces/dev/nope", 404, []string{`pods "nope" not found in namespace "dev"`}},
		{"object in another namespace", "", "/api/v1/resources/pods/namespaces/prod/api-1", 404, []string{`pods "api-1" not found in namespace "prod"`}},
		{"cluster-scoped object not found", "", "/api/v1/resources/nodes/n9", 404, []string{`nodes "n9" not found`}},
		{"limit with watch", "", "/api/v1/resources/pods?watch=true&limit=2", 400, []string{"limit and continue cannot be used with watch"}},
		{"continue with watch", "", "/api/v1/resources/pods?watch=true&continue=" + encodeContinue("pods", "dev/a"), 400, []string{"limit and continue cannot be used with watch"}},
		{"bad watch", "", "/api/v1/resources/pods?watch=maybe", 400, []string{"watch must be true or false", `"maybe"`}},
		{"unknown path", "", "/api/v2/pods", 404, []string{"no such path /api/v2/pods"}},
		{"unknown path outside the API", "", "/favicon.ico", 404, []string{"no such path /favicon.ico"}},
		{"wrong method", http.MethodPost, "/api/v1/resources", 405, []string{"method POST is not allowed on /api/v1/resources", "GET"}},
		{"wrong method on a list", http.MethodDelete, "/api/v1/resources/pods", 405, []string{"method DELETE is not allowed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodGet
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
			if tt.status == 405 && !strings.Contains(r.header.Get("Allow"), "GET") {
				t.Errorf("405 Allow header = %q, want it to list GET", r.header.Get("Allow"))
			}
		})
	}
}

func TestMaxStalenessMet(t *testing.T) {
	b, _, _ := newTestBackend(t)
	ts, _ := newTestServer(t, b)
	for _, path := range []string{"/api/v1/resources/pods?maxStaleness=10s", "/api/v1/resources/pods/namespaces/dev/api-1?maxStaleness=1m"} {
		if r := get(t, ts, path); r.status != 200 {
			t.Errorf("GET %s: status %d, want 200 (verified 10s ago); body: %s", path, r.status, r.body)
		}
	}
}
