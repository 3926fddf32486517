package server

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestBadInputIsA4xxWithASentence sends malformed requests of every kind:
// parameters, paths, headers, huge selectors and methods. Each must be
// answered 4xx with a Kubernetes Status whose message says what was wrong,
// never a 5xx, a panic or a hang. Inputs kube-apiserver accepts are not
// here: a negative limit lists everything, and any boolean parameter that
// is not "false" or "0" is true (watch=maybe watches).
func TestBadInputIsA4xxWithASentence(t *testing.T) {
	ts, _, _ := startServer(t)
	huge := strings.Repeat("k=v,", 50000)
	cases := []struct {
		name, method, path string
		header             map[string]string
	}{
		{name: "limit not a number", path: "/api/v1/pods?limit=abc"},
		{name: "limit in exponent", path: "/api/v1/pods?limit=1e3"},
		{name: "resourceVersion not a number", path: "/api/v1/pods?resourceVersion=abc"},
		{name: "resourceVersion negative", path: "/api/v1/pods?resourceVersion=-1"},
		{name: "resourceVersion overflows", path: "/api/v1/pods?resourceVersion=99999999999999999999999"},
		{name: "match without resourceVersion", path: "/api/v1/pods?resourceVersionMatch=Exact"},
		{name: "unknown match", path: "/api/v1/pods?resourceVersion=5&resourceVersionMatch=Bogus"},
		{name: "label selector without value operator", path: "/api/v1/pods?labelSelector=a%3D%3D%3Db"},
		{name: "label selector garbage", path: "/api/v1/pods?labelSelector=%21%21%21"},
		{name: "label selector bad key", path: "/api/v1/pods?labelSelector=a%20b%3Dc"},
		{name: "label selector huge and invalid", path: "/api/v1/pods?labelSelector=" + huge + "%21"},
		{name: "field selector double operator", path: "/api/v1/pods?fieldSelector=spec.nodeName%3D%3Dx%3D%3Dy"},
		{name: "field selector unknown field", path: "/api/v1/pods?fieldSelector=metadata.unknown%3Dx"},
		{name: "field selector unsupported for kind", path: "/apis/apps/v1/deployments?fieldSelector=spec.nodeName%3Dx"},
		{name: "continue garbage", path: "/api/v1/pods?limit=1&continue=garbage"},
		{name: "continue base64 junk", path: "/api/v1/pods?limit=1&continue=" + base64.RawURLEncoding.EncodeToString([]byte(`{"v":"x"}`))},
		{name: "continue with resourceVersion", path: "/api/v1/pods?limit=1&continue=abc&resourceVersion=5"},
		{name: "timeoutSeconds negative", path: "/api/v1/pods?watch=true&timeoutSeconds=-5"},
		{name: "timeoutSeconds not a number", path: "/api/v1/pods?watch=true&timeoutSeconds=abc"},
		{name: "sendInitialEvents without watch", path: "/api/v1/pods?sendInitialEvents=true"},
		{name: "sendInitialEvents without match", path: "/api/v1/pods?watch=true&sendInitialEvents=true"},
		{name: "watch from a resourceVersion not a number", path: "/api/v1/pods?watch=true&resourceVersion=abc"},
		{name: "includeObject unknown", path: "/api/v1/pods?includeObject=Bogus", header: map[string]string{"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}},
		{name: "Table of an unknown version only", path: "/api/v1/pods", header: map[string]string{"Accept": "application/json;as=Table;v=v9;g=meta.k8s.io"}},
		{name: "an unknown media type only", path: "/api/v1/pods", header: map[string]string{"Accept": "text/csv"}},
		{name: "create", method: http.MethodPost, path: "/api/v1/namespaces/dev/pods"},
		{name: "replace", method: http.MethodPut, path: "/api/v1/namespaces/dev/pods/web-1"},
		{name: "patch", method: http.MethodPatch, path: "/api/v1/namespaces/dev/pods/web-1"},
		{name: "delete", method: http.MethodDelete, path: "/api/v1/namespaces/dev/pods/web-1"},
		{name: "delete collection", method: http.MethodDelete, path: "/api/v1/namespaces/dev/pods"},
		{name: "trace", method: "TRACE", path: "/api/v1/pods"},
		{name: "unknown method", method: "BREW", path: "/api/v1/pods"},
		{name: "unknown resource", path: "/api/v1/nosuchresources"},
		{name: "unknown group", path: "/apis/nosuch.example/v1/things"},
		{name: "unknown version", path: "/api/v9/pods"},
		{name: "an object's subresource", path: "/api/v1/namespaces/dev/pods/web-1/log"},
		{name: "too many segments", path: "/api/v1/namespaces/dev/pods/web-1/status/extra/more"},
		{name: "object not found", path: "/api/v1/namespaces/dev/pods/nosuch"},
		{name: "namespaced object without namespace", path: "/api/v1/pods/web-1"},
		{name: "encoded slash in a namespace", path: "/api/v1/namespaces/a%2Fb/pods/x"},
		{name: "dot-dot in a name", path: "/api/v1/namespaces/dev/pods/.."},
		{name: "a path of 16 KiB", path: "/api/v1/namespaces/" + strings.Repeat("a", 16<<10) + "/pods/x"},
		{name: "unknown krm.io resource", path: "/apis/krm.io/v1alpha1/nosuchreports"},
		{name: "drift report of an uncached resource", path: "/apis/krm.io/v1alpha1/driftreports/configmaps"},
		{name: "write to krm.io", method: http.MethodPost, path: "/apis/krm.io/v1alpha1/driftreports"},
		{name: "krm.io in an unknown media type", path: "/apis/krm.io/v1alpha1/resourcestatuses", header: map[string]string{"Accept": "text/csv"}},
		{name: "unknown view", path: "/api/v1/pods?view=future"},
		{name: "maxStaleness not a duration", path: "/api/v1/pods?maxStaleness=soon"},
	}
	if len(cases) < 40 {
		t.Fatalf("%d cases, want at least 40", len(cases))
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, c := range cases {
		method := c.method
		if method == "" {
			method = http.MethodGet
		}
		req, err := http.NewRequestWithContext(t.Context(), method, ts.URL+c.path, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for k, v := range c.header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("%s: %v (a hang or a dropped connection)", c.name, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var st metav1.Status
		_ = json.Unmarshal(body, &st)
		switch {
		case resp.StatusCode < 400 || resp.StatusCode >= 500:
			t.Errorf("%s: %s %s: %d %.300s, want a 4xx", c.name, method, truncate(c.path), resp.StatusCode, body)
		case st.Kind != "Status" || len(st.Message) < 10 || int(st.Code) != resp.StatusCode:
			t.Errorf("%s: %d with body %.300s, want a Status whose message says what was wrong", c.name, resp.StatusCode, body)
		}
	}
}

func truncate(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}
