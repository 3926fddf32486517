package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
)

func startServer(t *testing.T) (*httptest.Server, *fakeResource, *rest.Config) {
	t.Helper()
	s, pods := newTestServer(t)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts, pods, &rest.Config{Host: ts.URL}
}

func clientset(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func podNames(pods []corev1.Pod) string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Namespace+"/"+p.Name)
	}
	return names(out)
}

func TestDiscoveryListsOnlyCachedResourcesReadOnly(t *testing.T) {
	_, _, cfg := startServer(t)
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// client-go asks for aggregated discovery first.
	groups, lists, err := dc.ServerGroupsAndResources()
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	var gotGroups []string
	for _, g := range groups {
		gotGroups = append(gotGroups, g.Name+"="+g.PreferredVersion.GroupVersion)
	}
	if diff := cmp.Diff([]string{"=v1", "apps=apps/v1", "krm.io=krm.io/v1alpha1"}, gotGroups); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	var got []string
	for _, l := range lists {
		for _, r := range l.APIResources {
			got = append(got, l.GroupVersion+" "+r.Name+" "+r.Kind+" "+strings.Join(r.Verbs, ","))
		}
	}
	// client-go fetches /api and /apis side by side: the order is theirs.
	slices.Sort(got)
	want := []string{
		"apps/v1 deployments Deployment get,list,watch",
		"krm.io/v1alpha1 agentstatuses AgentStatus get,list",
		"krm.io/v1alpha1 resourcestatuses ResourceStatus get,list,watch",
		"krm.io/v1alpha1 revisions Revision get,list",
		"krm.io/v1alpha1 driftreports DriftReport get,list",
		"krm.io/v1alpha1 delayreports DelayReport get,list",
		"v1 pods Pod get,list,watch",
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("resources (-want +got):\n%s", diff)
	}
}

func TestLegacyDiscovery(t *testing.T) {
	ts, _, _ := startServer(t)
	for path, want := range map[string]string{
		"/api":          `"kind":"APIVersions","versions":["v1"]`,
		"/apis":         `"groups":[{"name":"apps","versions":[{"groupVersion":"apps/v1","version":"v1"}]`,
		"/apis/apps":    `"kind":"APIGroup","apiVersion":"v1","name":"apps"`,
		"/api/v1":       `"groupVersion":"v1","resources":[{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["get","list","watch"],"shortNames":["po"]}]`,
		"/apis/apps/v1": `"name":"deployments"`,
	} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("GET %s = %d %s, want 200 containing %s", path, resp.StatusCode, b, want)
		}
	}
}

func TestListWithSelectorsLikeKubeAPIServer(t *testing.T) {
	_, _, cfg := startServer(t)
	pods := clientset(t, cfg).CoreV1().Pods
	for _, tc := range []struct {
		ns   string
		opts metav1.ListOptions
		want string
	}{
		{"", metav1.ListOptions{}, "dev-2/api-1,dev/api-1,dev/api-2,dev/web-1,prod/db-0"},
		{"dev", metav1.ListOptions{}, "dev/api-1,dev/api-2,dev/web-1"},
		{"dev", metav1.ListOptions{LabelSelector: "app=api"}, "dev/api-1,dev/api-2"},
		{"", metav1.ListOptions{FieldSelector: "spec.nodeName=n2"}, "dev-2/api-1,dev/api-2"},
		{"", metav1.ListOptions{FieldSelector: "status.phase!=Running,metadata.namespace=dev"}, "dev/api-2"},
		{"nowhere", metav1.ListOptions{}, ""},
	} {
		list, err := pods(tc.ns).List(t.Context(), tc.opts)
		if err != nil {
			t.Errorf("list %q %+v: %v", tc.ns, tc.opts, err)
			continue
		}
		if got := podNames(list.Items); got != tc.want {
			t.Errorf("list %q %+v = %s, want %s", tc.ns, tc.opts, got, tc.want)
		}
		if list.ResourceVersion != "110" {
			t.Errorf("list resourceVersion = %q, want 110", list.ResourceVersion)
		}
	}
	_, err := pods("").List(t.Context(), metav1.ListOptions{FieldSelector: "spec.restartPolicy=Always"})
	if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), "field label not supported: spec.restartPolicy") {
		t.Errorf("unsupported field = %v, want 400 field label not supported", err)
	}
}

func TestPagesComeFromOneSnapshot(t *testing.T) {
	_, res, cfg := startServer(t)
	pods := clientset(t, cfg).CoreV1().Pods("")
	first, err := pods.List(t.Context(), metav1.ListOptions{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := podNames(first.Items); got != "dev-2/api-1,dev/api-1" || first.Continue == "" || first.RemainingItemCount == nil || *first.RemainingItemCount != 3 {
		t.Fatalf("first page = %s continue %q remaining %v", got, first.Continue, first.RemainingItemCount)
	}
	// kube-apiserver's order is the storage key's: "dev-2/" before "dev/".
	// A change between pages must not show in the later pages.
	res.apply(eventAdded, podRow(t, podSpec{"dev", "web-0", "n1", "Running", nil, 111}))
	res.apply(eventDeleted, podRow(t, podSpec{"prod", "db-0", "n3", "Succeeded", nil, 112}))
	var rest []corev1.Pod
	cont := first.Continue
	for cont != "" {
		page, err := pods.List(t.Context(), metav1.ListOptions{Limit: 2, Continue: cont})
		if err != nil {
			t.Fatal(err)
		}
		if page.ResourceVersion != "110" {
			t.Errorf("page resourceVersion = %s, want the first page's 110", page.ResourceVersion)
		}
		rest = append(rest, page.Items...)
		cont = page.Continue
	}
	if got := podNames(rest); got != "dev/api-2,dev/web-1,prod/db-0" {
		t.Errorf("later pages = %s, want the snapshot's dev/api-2,dev/web-1,prod/db-0", got)
	}
	_, err = pods.List(t.Context(), metav1.ListOptions{Limit: 2, Continue: "bm90IG91cnM"})
	if !apierrors.IsBadRequest(err) {
		t.Errorf("foreign continue token = %v, want 400", err)
	}
}

func TestResourceVersionSemantics(t *testing.T) {
	_, _, cfg := startServer(t)
	pods := clientset(t, cfg).CoreV1().Pods("dev")
	if _, err := pods.List(t.Context(), metav1.ListOptions{ResourceVersion: "110", ResourceVersionMatch: metav1.ResourceVersionMatchExact}); err != nil {
		t.Errorf("Exact at the current resourceVersion: %v", err)
	}
	_, err := pods.List(t.Context(), metav1.ListOptions{ResourceVersion: "50", ResourceVersionMatch: metav1.ResourceVersionMatchExact})
	if !apierrors.IsResourceExpired(err) {
		t.Errorf("Exact at an old resourceVersion = %v, want 410 Expired", err)
	}
	_, err = pods.List(t.Context(), metav1.ListOptions{ResourceVersion: "500"})
	if !apierrors.IsTimeout(err) || !apierrors.HasStatusCause(err, metav1.CauseTypeResourceVersionTooLarge) {
		t.Errorf("NotOlderThan a future resourceVersion = %v, want 504 ResourceVersionTooLarge", err)
	}
	if _, err := pods.List(t.Context(), metav1.ListOptions{ResourceVersion: "100"}); err != nil {
		t.Errorf("NotOlderThan an older resourceVersion: %v", err)
	}
	_, err = pods.List(t.Context(), metav1.ListOptions{ResourceVersionMatch: metav1.ResourceVersionMatchExact})
	if !apierrors.IsInvalid(err) {
		t.Errorf("resourceVersionMatch without resourceVersion = %v, want 422 Invalid as kube-apiserver", err)
	}
}

func TestGet(t *testing.T) {
	ts, _, cfg := startServer(t)
	pod, err := clientset(t, cfg).CoreV1().Pods("dev").Get(t.Context(), "web-1", metav1.GetOptions{})
	if err != nil || pod.Name != "web-1" || pod.Spec.NodeName != "n1" {
		t.Fatalf("get = %+v, %v", pod, err)
	}
	_, err = clientset(t, cfg).CoreV1().Pods("dev").Get(t.Context(), "missing", metav1.GetOptions{})
	if !apierrors.IsNotFound(err) || err.Error() != `pods "missing" not found` {
		t.Errorf("get missing = %v, want kube-apiserver's NotFound", err)
	}
	resp, err := http.Get(ts.URL + "/api/v1/namespaces/dev/pods/web-1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, h := range []string{"X-Krm-Verified-At", "X-Krm-Resource-Version", "X-Krm-Stream-Lag"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("GET lacks freshness header %s", h)
		}
	}
}

func TestWritesAreRefused(t *testing.T) {
	ts, _, cfg := startServer(t)
	err := clientset(t, cfg).CoreV1().Pods("dev").Delete(t.Context(), "web-1", metav1.DeleteOptions{})
	if !apierrors.IsMethodNotSupported(err) || !strings.Contains(err.Error(), "read-only") || !strings.Contains(err.Error(), "https://apiserver.test:6443") {
		t.Errorf("delete = %v, want 405 naming the API server", err)
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch} {
		req, _ := http.NewRequest(m, ts.URL+"/api/v1/namespaces/dev/pods", strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var st metav1.Status
		_ = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if resp.StatusCode != 405 || st.Kind != "Status" || st.Reason != metav1.StatusReasonMethodNotAllowed {
			t.Errorf("%s = %d %+v, want a 405 Status", m, resp.StatusCode, st)
		}
	}
}

func TestUncachedResourceIsNotFound(t *testing.T) {
	_, _, cfg := startServer(t)
	_, err := clientset(t, cfg).CoreV1().ConfigMaps("dev").List(t.Context(), metav1.ListOptions{})
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "--resources") {
		t.Errorf("list configmaps = %v, want 404 naming --resources", err)
	}
}

// A resource without data (its LIST never landed) answers 503 with the
// reason, never an empty list, while the others are served.
func TestUnavailableResourceIsNotAnEmptyList(t *testing.T) {
	_, pods, cfg := startServer(t)
	pods.mu.Lock()
	pods.unavailable = `the krm agent has not listed pods yet: pods is forbidden`
	pods.mu.Unlock()
	cs := clientset(t, cfg)
	for name, call := range map[string]func() error{
		"list": func() error { _, err := cs.CoreV1().Pods("dev").List(t.Context(), metav1.ListOptions{}); return err },
		"get": func() error {
			_, err := cs.CoreV1().Pods("dev").Get(t.Context(), "web-1", metav1.GetOptions{})
			return err
		},
		"watch": func() error { _, err := cs.CoreV1().Pods("dev").Watch(t.Context(), metav1.ListOptions{}); return err },
	} {
		err := call()
		if !apierrors.IsServiceUnavailable(err) || !strings.Contains(err.Error(), "pods is forbidden") || !strings.Contains(err.Error(), "kubectl krm status") {
			t.Errorf("%s: %v, want 503 with the reason", name, err)
		}
	}
	if _, err := cs.AppsV1().Deployments("dev").List(t.Context(), metav1.ListOptions{}); err != nil {
		t.Errorf("deployments, which have data: %v", err)
	}
}

func TestTableAndMetadata(t *testing.T) {
	ts, _, cfg := startServer(t)
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/api/v1/namespaces/dev/pods?labelSelector=app%3Dapi", nil)
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var table metav1.Table
	if err := json.NewDecoder(resp.Body).Decode(&table); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if table.Kind != "Table" || len(table.ColumnDefinitions) == 0 || table.ColumnDefinitions[0].Name != "Name" {
		t.Fatalf("table = %+v", table)
	}
	if len(table.Rows) != 2 || table.Rows[0].Cells[0] != "api-1" {
		t.Fatalf("rows = %+v", table.Rows)
	}
	last := table.Rows[0].Cells[len(table.ColumnDefinitions[:5])-1]
	if last != "60m" {
		t.Errorf("AGE cell = %v, want 60m", last)
	}
	var meta metav1.PartialObjectMetadata
	if err := json.Unmarshal(table.Rows[0].Object.Raw, &meta); err != nil || meta.Kind != "PartialObjectMetadata" || meta.Labels["app"] != "api" {
		t.Errorf("row object = %s (%v), want its PartialObjectMetadata", table.Rows[0].Object.Raw, err)
	}

	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	list, err := mc.Resource(schema.GroupVersionResource{Version: "v1", Resource: "pods"}).Namespace("dev").List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 3 || list.Items[2].Name != "web-1" || list.Items[2].UID != "uid-dev-web-1" {
		t.Errorf("metadata list = %+v", list.Items)
	}
}

func TestWatchResumesAndFilters(t *testing.T) {
	_, res, cfg := startServer(t)
	pods := clientset(t, cfg).CoreV1().Pods("dev")
	res.apply(eventAdded, podRow(t, podSpec{"dev", "web-2", "n1", "Running", map[string]string{"app": "web"}, 111}))
	res.apply(eventModified, podRow(t, podSpec{"dev", "api-1", "n1", "Running", map[string]string{"app": "web"}, 112}))

	w, err := pods.Watch(t.Context(), metav1.ListOptions{ResourceVersion: "110", LabelSelector: "app=api"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	// api-1 left the selection: DELETED; web-2 never was in it.
	res.apply(eventModified, podRow(t, podSpec{"dev", "web-2", "n1", "Running", map[string]string{"app": "api"}, 113}))
	got := []string{}
	for len(got) < 2 {
		select {
		case ev := <-w.ResultChan():
			p := ev.Object.(*corev1.Pod)
			got = append(got, string(ev.Type)+" "+p.Name+" "+p.ResourceVersion+" "+p.Labels["app"])
		case <-time.After(5 * time.Second):
			t.Fatalf("timed out; got %v", got)
		}
	}
	// The object that left is sent as it last matched, at the change's
	// resourceVersion, as the watch cache does.
	if diff := cmp.Diff([]string{"DELETED api-1 112 api", "ADDED web-2 113 api"}, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}

	w2, err := pods.Watch(t.Context(), metav1.ListOptions{ResourceVersion: "50"})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Stop()
	ev := <-w2.ResultChan()
	if st, ok := ev.Object.(*metav1.Status); ev.Type != watch.Error || !ok || st.Code != 410 {
		t.Errorf("watch from a too old resourceVersion = %s %+v, want an ERROR event with 410", ev.Type, ev.Object)
	}
}

func TestWatchListEndsInitialEventsWithABookmark(t *testing.T) {
	ts, _, _ := startServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/api/v1/namespaces/dev/pods?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var got []string
	for len(got) < 5 && sc.Scan() {
		var ev struct {
			Type   string
			Object metav1.PartialObjectMetadata
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("event %s: %v", sc.Bytes(), err)
		}
		got = append(got, ev.Type+" "+ev.Object.Name+" "+ev.Object.ResourceVersion+" "+ev.Object.Annotations["k8s.io/initial-events-end"])
	}
	want := []string{"ADDED api-1 101 ", "ADDED api-2 102 ", "ADDED web-1 103 ", "BOOKMARK  110 true", "BOOKMARK  110 "}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestKrmGroup(t *testing.T) {
	ts, _, _ := startServer(t)
	get := func(path string) (int, string) {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for path, want := range map[string]string{
		"/apis/krm.io/v1alpha1/agentstatuses/agent":   `{"kind":"AgentStatus","apiVersion":"krm.io/v1alpha1","metadata":{"name":"agent"},"status":{"cluster":"test","store":{"kind":"","healthy":false},"ready":true}}`,
		"/apis/krm.io/v1alpha1/resourcestatuses/pods": `"kind":"ResourceStatus","apiVersion":"krm.io/v1alpha1","metadata":{"name":"pods"},"status":{"name":"pods"`,
		"/apis/krm.io/v1alpha1/resourcestatuses":      `"kind":"ResourceStatusList","apiVersion":"krm.io/v1alpha1","metadata":{},"items":[{"metadata":{"name":"pods"}`,
		"/apis/krm.io/v1alpha1/driftreports/deploy":   `"kind":"DriftReport","apiVersion":"krm.io/v1alpha1","metadata":{"name":"deployments"},"status":{"resource":"","ledger":[],"unverified":[]}}`,
		"/apis/krm.io/v1alpha1/resourcestatuses/nope": `"reason":"NotFound"`,
		"/apis/krm.io/v1alpha1/agentstatuses/other":   `agentstatuses.krm.io \"other\" not found`,
		"/apis/krm.io/v1alpha1/delayreports":          `this agent does not measure stream delay`,
		"/apis/krm.io/v1alpha1/driftreports?watch=1":  `only the resourcestatuses collection is watched; driftreports are read with get and list`,
	} {
		_, body := get(path)
		if !strings.Contains(body, want) {
			t.Errorf("GET %s = %s\nwant it to contain %s", path, body, want)
		}
	}
}

func TestRequestMetrics(t *testing.T) {
	s, _ := newTestServer(t)
	reg := prometheus.NewRegistry()
	s.metrics = newMetrics(reg, s.log)
	s.opts.Gatherer = reg
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	for _, p := range []string{"/api/v1/namespaces/dev/pods", "/api/v1/namespaces/dev/pods/web-1", "/api/v1/secrets", "/api/v1/evil-name-1", "/healthz"} {
		resp, err := http.Get(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`krm_http_requests_total{code="200",resource="pods",route="list"} 1`,
		`krm_http_requests_total{code="200",resource="pods",route="get"} 1`,
		`krm_http_requests_total{code="404",resource="unknown",route="list"} 2`,
		`krm_http_requests_total{code="200",resource="",route="health"} 1`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(string(b), "evil-name") {
		t.Error("a requested name became a label value")
	}
}

func TestFieldSelectorErrorsAsKubeAPIServer(t *testing.T) {
	_, _, cfg := startServer(t)
	_, err := clientset(t, cfg).AppsV1().Deployments("dev").List(t.Context(), metav1.ListOptions{FieldSelector: "status.replicas=1"})
	want := `"status.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"`
	if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), want) {
		t.Errorf("unknown deployment field = %v, want 400 %s", err, want)
	}
}

func TestDeleteCollectionIsRefused(t *testing.T) {
	_, _, cfg := startServer(t)
	err := clientset(t, cfg).CoreV1().Pods("dev").DeleteCollection(t.Context(), metav1.DeleteOptions{}, metav1.ListOptions{})
	if !apierrors.IsMethodNotSupported(err) || !strings.Contains(err.Error(), "deletecollection of pods") {
		t.Errorf("deletecollection = %v, want 405 naming deletecollection", err)
	}
}

// kubectl checks the namespace after a 404 for an object outside default;
// krm must not make that check say the namespace is missing.
func TestKubectlNamespaceCheck(t *testing.T) {
	_, _, cfg := startServer(t)
	ns, err := clientset(t, cfg).CoreV1().Namespaces().Get(t.Context(), "dev", metav1.GetOptions{})
	if err != nil || ns.Name != "dev" || ns.Annotations["krm.io/synthesized"] == "" {
		t.Errorf("namespace = %+v, %v; want a marked stand-in", ns, err)
	}
	if _, err := clientset(t, cfg).CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("list namespaces = %v, want 404: they are not cached", err)
	}
}

// kubectl get resourcestatuses asks for a Table and gets status's columns.
func TestKrmTables(t *testing.T) {
	ts, _, _ := startServer(t)
	for path, want := range map[string][]string{
		"/apis/krm.io/v1alpha1/resourcestatuses":      {"Resource", "Verified", "Drift", "Last-Error"},
		"/apis/krm.io/v1alpha1/resourcestatuses/pods": {"Resource"},
		"/apis/krm.io/v1alpha1/agentstatuses":         {"Name", "Version", "Ready"},
		"/apis/krm.io/v1alpha1/driftreports":          {"Name", "Ledger", "Unverified"},
	} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
		req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var table metav1.Table
		err = json.NewDecoder(resp.Body).Decode(&table)
		resp.Body.Close()
		if err != nil || table.Kind != "Table" || len(table.Rows) == 0 {
			t.Errorf("GET %s as Table = %+v, %v", path, table, err)
			continue
		}
		var cols []string
		for _, c := range table.ColumnDefinitions {
			cols = append(cols, c.Name)
		}
		for _, w := range want {
			if !slices.Contains(cols, w) {
				t.Errorf("GET %s as Table: columns %v lack %s", path, cols, w)
			}
		}
		var meta metav1.PartialObjectMetadata
		if err := json.Unmarshal(table.Rows[0].Object.Raw, &meta); err != nil || meta.Name == "" {
			t.Errorf("GET %s as Table: row object %s is not the object's metadata", path, table.Rows[0].Object.Raw)
		}
	}
}

func TestWatchesAreCapped(t *testing.T) {
	s, _ := newTestServer(t)
	s.opts.MaxWatches = 2
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	pods := clientset(t, &rest.Config{Host: ts.URL}).CoreV1().Pods("dev")
	var open []watch.Interface
	for range 2 {
		w, err := pods.Watch(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		<-w.ResultChan() // the first ADDED: the watch is being served
		open = append(open, w)
	}
	// Asked plainly: client-go would retry a 429 for a while first.
	third := func() (int, string, string) {
		resp, err := http.Get(ts.URL + "/api/v1/namespaces/dev/pods?watch=1&timeoutSeconds=1")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
	}
	if code, retry, body := third(); code != http.StatusTooManyRequests || retry == "" || !strings.Contains(body, "--max-watches") {
		t.Fatalf("a third watch = %d (Retry-After %q) %s, want 429 naming --max-watches", code, retry, body)
	}
	open[0].Stop()
	// The slot is free again once the server notices the client left.
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _, body := third()
		if code == http.StatusOK {
			break
		}
		if code != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("a watch after one ended = %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	open[1].Stop()
}

// The health listener is reachable by anyone who reaches the pod: it must
// serve health and metrics only.
func TestHealthListenerServesNoObjects(t *testing.T) {
	s, _ := newTestServer(t)
	ts := httptest.NewServer(s.HealthHandler())
	defer ts.Close()
	for path, want := range map[string]int{
		"/healthz": 200, "/readyz": 200, "/metrics": 200,
		"/api/v1/pods": 404, "/api/v1/namespaces/dev/pods/web-1": 404, "/apis": 404, "/version": 404,
		"/apis/krm.io/v1alpha1/resourcestatuses": 404,
	} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s on the health listener = %d, want %d", path, resp.StatusCode, want)
		}
		if want == 404 && (strings.Contains(string(b), `"kind":"Pod`) || !strings.Contains(string(b), `"kind":"Status"`)) {
			t.Errorf("GET %s on the health listener = %s, want a Status and no object", path, b)
		}
	}
}

// The rendered-row cache stays bounded when only watches and GETs render,
// which never sweep it by the live objects.
func TestRenderCacheIsBounded(t *testing.T) {
	s, _ := newTestServer(t)
	cache, err := s.tables.forResource(podsInfo)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 * cache.sweepAt {
		cache.render(podRow(t, podSpec{"dev", fmt.Sprintf("churn-%d", i), "n1", "Running", nil, uint64(1000 + i)}), nil)
		if n := len(cache.rows); n > 2*cache.sweepAt {
			t.Fatalf("after %d renders the cache holds %d rows, over twice the sweep size %d", i+1, n, cache.sweepAt)
		}
	}
}
