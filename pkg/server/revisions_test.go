package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/krm-project/krm/pkg/api"
	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/history"
	"github.com/krm-project/krm/pkg/store"
)

// historyResource is a fake resource with a history log (nil: history
// off), as the agent's runner is.
type historyResource struct {
	*fakeResource
	log *history.Log
}

func (r *historyResource) History() *history.Log { return r.log }

func (r *historyResource) HistorySnapshot(at time.Time, rv uint64) (*api.Snapshot, error) {
	if r.log == nil {
		return nil, api.ErrHistoryOff
	}
	var items []history.Item
	var err error
	if at.IsZero() {
		items, err = r.log.ViewAtResourceVersion(rv)
	} else {
		items, rv, err = r.log.ViewAt(at)
	}
	if err != nil {
		return nil, err
	}
	var rows []*store.Row
	for _, it := range items {
		rows = append(rows, &store.Row{UID: it.UID, Namespace: it.Namespace, Name: it.Name, ResourceVersion: it.ResourceVersion, Source: store.Verified, Object: it.Object})
	}
	return &api.Snapshot{Header: store.Header{Source: store.Verified, ResourceVersion: rv, Rows: len(rows)}, Rows: store.NewView(rows...)}, nil
}

// historyBackend serves some of fakeBackend's resources with history.
type historyBackend struct {
	*fakeBackend
	with map[string]*historyResource // by resource name
}

func (b *historyBackend) Resource(name string) (api.Resource, bool) {
	res, ok := b.fakeBackend.Resource(name)
	if !ok {
		return nil, false
	}
	if h := b.with[res.Info().Name]; h != nil {
		return h, true
	}
	return res, true
}

var (
	nodesInfo = api.ResourceInfo{Name: "nodes", Version: "v1", Resource: "nodes", Kind: "Node"}
	// servicesInfo has no history: the agent's resources all have it or
	// none do, but the server must answer either way.
	servicesInfo = api.ResourceInfo{Name: "services", Version: "v1", Resource: "services", Kind: "Service", Namespaced: true}
)

func deploymentObject(rv uint64, replicas int, labels string) []byte {
	return fmt.Appendf(nil, `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"labels":{%s},"name":"web","namespace":"dev","resourceVersion":"%d","uid":"uid-web"},"spec":{"replicas":%d},"status":{"readyReplicas":%d}}`,
		labels, rv, replicas, replicas)
}

// newHistoryServer serves deployments with a history of dev/web (created
// at 120, scaled at 121, labelled at 122, all seen by the watch), nodes
// with an empty history, services with history off, and pods without the
// Historian interface.
func newHistoryServer(t *testing.T) *httptest.Server {
	t.Helper()
	at := testNow.Add(-10 * time.Minute)
	clock := func() time.Time { return at }
	deploys := history.NewLog(history.Options{Resource: "deployments.apps", Retention: time.Hour, Now: clock})
	deploys.Base(history.Listed{RV: 110, At: at})
	kubectl := []krmv1alpha1.ManagerEntry{{Manager: "kubectl-create", Operation: "Update", Time: "2026-03-14T14:59:26Z"}}
	for i, s := range []struct {
		event, labels string
		replicas      int
		manager       string
	}{{history.Added, ``, 1, "kubectl-create"}, {history.Modified, ``, 3, "kubectl"}, {history.Modified, `"team":"shop"`, 3, "kubectl-label"}} {
		rv := uint64(120 + i)
		at = testNow.Add(time.Duration(i-3) * time.Minute).Add(250 * time.Millisecond)
		kubectl[0].Manager = s.manager
		deploys.Record(history.Entry{Event: s.event, Source: history.Watch, Managers: append([]krmv1alpha1.ManagerEntry(nil), kubectl...),
			Row: &store.Row{UID: "uid-web", Namespace: "dev", Name: "web", ResourceVersion: rv, ObservedAt: at, Object: deploymentObject(rv, s.replicas, s.labels)}})
	}
	nodes := history.NewLog(history.Options{Resource: "nodes", Retention: time.Hour, Now: clock})
	nodes.Base(history.Listed{RV: 110, At: at})
	fb := &fakeBackend{resources: []*fakeResource{
		newFakeResource(podsInfo, 110), newFakeResource(deploymentsInfo, 122), newFakeResource(nodesInfo, 110), newFakeResource(servicesInfo, 110),
	}}
	b := &historyBackend{fakeBackend: fb, with: map[string]*historyResource{
		"deployments": {fakeResource: fb.resources[1], log: deploys},
		"nodes":       {fakeResource: fb.resources[2], log: nodes},
		"services":    {fakeResource: fb.resources[3]},
	}}
	s := New(b, Options{Now: func() time.Time { return testNow }, APIServer: "https://apiserver.test:6443"})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts
}

func getRevisions(t *testing.T, ts *httptest.Server, query, accept string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.URL+revisionsPath+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func TestRevisionsRefusesBadInput(t *testing.T) {
	ts := newHistoryServer(t)
	for query, want := range map[string]struct {
		code int
		says string
	}{
		"":                                    {400, "revisions needs the parameters resource (e.g. pods or deployments.apps) and name"},
		"?resource=deployments&namespace=dev": {400, "revisions needs the parameters resource"},
		"?name=web&namespace=dev":             {400, "revisions needs the parameters resource"},
		"?resource=deployments&namespace=dev&name=..":                  {400, `invalid name "..": may not be '..'`},
		"?resource=deployments&namespace=dev&name=a%25b":               {400, `invalid name "a%b": may not contain '%'`},
		"?resource=deployments&name=web":                               {400, "deployments are namespaced: give the object's namespace"},
		"?resource=nodes&namespace=dev&name=n1":                        {400, "nodes are cluster-scoped: leave namespace out"},
		"?resource=deployments&namespace=dev&name=web&since=yesterday": {400, `since must be a Go duration such as 10m or an RFC 3339 time such as 2026-12-06T11:00:00Z, not "yesterday"`},
		"?resource=deployments&namespace=dev&name=web&since=-5m":       {400, "since must not be negative, got -5m"},
		"/web?resource=deployments&namespace=dev":                      {400, "revisions are listed, not read by name"},
		"?resource=configmaps&namespace=dev&name=web":                  {404, "configmaps"},
		"?resource=widgets.example.com&namespace=dev&name=web":         {404, "widgets"},
		// History off: the resource's log is nil, or it has none at all.
		"?resource=services&namespace=dev&name=web": {404, "the agent keeps no history (--history=0); start it with --history=1h to keep revisions"},
		"?resource=pods&namespace=dev&name=web":     {404, "the agent keeps no history (--history=0)"},
	} {
		path, q, _ := strings.Cut(query, "?")
		code, body := getRevisions(t, ts, path+"?"+q, "")
		var st metav1.Status
		if err := json.Unmarshal(body, &st); err != nil || st.Kind != "Status" {
			t.Errorf("GET revisions%s: %d %s, want a Status", query, code, body)
			continue
		}
		if code != want.code || int(st.Code) != want.code || !strings.Contains(st.Message, want.says) {
			t.Errorf("GET revisions%s: %d %q, want %d saying %q", query, code, st.Message, want.code, want.says)
		}
	}
}

func TestRevisionsAnswer(t *testing.T) {
	ts := newHistoryServer(t)

	// An object history never saw, namespaced or not: an empty list.
	for _, q := range []string{"?resource=deployments.apps&namespace=dev&name=nothing", "?resource=deployments&namespace=prod&name=web", "?resource=nodes&name=n1"} {
		code, body := getRevisions(t, ts, q, "")
		if code != http.StatusOK || strings.TrimSpace(string(body)) != `{"kind":"RevisionList","apiVersion":"krm.io/v1alpha1","metadata":{},"items":[]}` {
			t.Errorf("GET revisions%s: %d %s, want an empty RevisionList", q, code, body)
		}
	}

	// The contract's shape, field by field (short names and plural.group
	// name the same resource).
	for _, res := range []string{"deployments.apps", "deploy", "deployments"} {
		code, body := getRevisions(t, ts, "?resource="+res+"&namespace=dev&name=web", "")
		if code != http.StatusOK {
			t.Fatalf("GET revisions of %s dev/web: %d %s", res, code, body)
		}
		var list map[string]any
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatal(err)
		}
		items, _ := list["items"].([]any)
		if list["kind"] != "RevisionList" || list["apiVersion"] != "krm.io/v1alpha1" || len(items) != 3 {
			t.Fatalf("GET revisions of %s dev/web: %s", res, body)
		}
		first, _ := items[0].(map[string]any)
		want := map[string]any{
			"kind": "Revision", "apiVersion": "krm.io/v1alpha1",
			"metadata": map[string]any{"name": "uid-web-120"},
			"resource": "deployments.apps", "namespace": "dev", "objectName": "web", "uid": "uid-web",
			"revision": float64(1), "resourceVersion": "120",
			"observedAt": "2026-03-14T15:06:26.25Z",
			"event":      "ADDED", "source": "watch",
			"managers": []any{map[string]any{"manager": "kubectl-create", "operation": "Update", "time": "2026-03-14T14:59:26Z"}},
			"object":   mustJSON(t, deploymentObject(120, 1, "")),
		}
		if d := cmp.Diff(want, first); d != "" {
			t.Errorf("the first revision (-want +got):\n%s", d)
		}
		type summary struct {
			Revision        float64
			ResourceVersion string
			Event, Manager  string
			Changed         []any
		}
		var got []summary
		for _, it := range items {
			m := it.(map[string]any)
			changed, _ := m["changed"].([]any)
			mgr := m["managers"].([]any)[0].(map[string]any)["manager"].(string)
			got = append(got, summary{m["revision"].(float64), m["resourceVersion"].(string), m["event"].(string), mgr, changed})
		}
		wantSummary := []summary{{1, "120", "ADDED", "kubectl-create", nil}, {2, "121", "MODIFIED", "kubectl", []any{"spec.replicas", "status.readyReplicas"}},
			{3, "122", "MODIFIED", "kubectl-label", []any{"metadata.labels.team"}}}
		if d := cmp.Diff(wantSummary, got); d != "" {
			t.Errorf("revisions of %s dev/web (-want +got):\n%s", res, d)
		}
	}

	// since, as a duration before the server's now or an RFC 3339 time.
	for since, want := range map[string]int{"90s": 1, "2m30s": 2, "1h": 3, "2026-03-14T15:08:00Z": 1, "2026-03-14T15:10:00Z": 0} {
		_, body := getRevisions(t, ts, "?resource=deployments&namespace=dev&name=web&since="+url.QueryEscape(since), "")
		var list krmv1alpha1.RevisionList
		if err := json.Unmarshal(body, &list); err != nil || len(list.Items) != want {
			t.Errorf("since %s: %d revisions (%v), want %d: %s", since, len(list.Items), err, want, body)
		}
	}

	// kubectl get's Table.
	code, body := getRevisions(t, ts, "?resource=deployments&namespace=dev&name=web", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
	var table metav1.Table
	if err := json.Unmarshal(body, &table); err != nil || code != http.StatusOK || table.Kind != "Table" {
		t.Fatalf("as Table: %d %s", code, body)
	}
	var cols []string
	for _, c := range table.ColumnDefinitions {
		cols = append(cols, c.Name)
	}
	if d := cmp.Diff([]string{"Name", "Revision", "ResourceVersion", "Event", "Source", "Changed"}, cols); d != "" {
		t.Errorf("Table columns (-want +got):\n%s", d)
	}
	var rows [][]any
	for _, r := range table.Rows {
		rows = append(rows, r.Cells)
	}
	wantRows := [][]any{{"uid-web-120", float64(1), "120", "ADDED", "watch", ""},
		{"uid-web-121", float64(2), "121", "MODIFIED", "watch", "spec.replicas, status.readyReplicas"},
		{"uid-web-122", float64(3), "122", "MODIFIED", "watch", "metadata.labels.team"}}
	if d := cmp.Diff(wantRows, rows); d != "" {
		t.Errorf("Table rows (-want +got):\n%s", d)
	}
	if len(table.Rows) > 0 {
		var meta metav1.PartialObjectMetadata
		if err := json.Unmarshal(table.Rows[0].Object.Raw, &meta); err != nil || meta.Name != "uid-web-120" {
			t.Errorf("a Table row's object is %s, want the revision's metadata", table.Rows[0].Object.Raw)
		}
	}
}

// LISTs at a time or an exact resourceVersion answer from history, and 410
// where it does not reach.
func TestListsFromHistory(t *testing.T) {
	ts := newHistoryServer(t)
	for query, want := range map[string]string{
		"?resourceVersion=121&resourceVersionMatch=Exact": "web@121 replicas 3",
		"?resourceVersion=120&resourceVersionMatch=Exact": "web@120 replicas 1",
		"?at=2026-03-14T15:07:00Z":                        "web@120 replicas 1",
		"?at=2026-03-14T15:09:00Z":                        "web@122 replicas 3",
		"?resourceVersion=100&resourceVersionMatch=Exact": "410 The resourceVersion for the provided list is too old: history reaches back to 2026-03-14T14:59:26Z (resourceVersion 110) only.",
		"?at=2026-03-14T14:00:00Z":                        "410 The time for the provided list is too old: history reaches back to 2026-03-14T14:59:26Z (resourceVersion 110) only.",
		"?at=yesterday":                                   `400 at must be an RFC 3339 time such as 2026-12-06T11:00:00Z, not "yesterday"`,
	} {
		resp, err := http.Get(ts.URL + "/apis/apps/v1/namespaces/dev/deployments" + query)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var got string
		if resp.StatusCode == http.StatusOK {
			var list struct {
				Items []struct {
					Metadata struct{ Name, ResourceVersion string }
					Spec     struct{ Replicas int }
				}
			}
			if err := json.Unmarshal(b, &list); err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, it := range list.Items {
				s = append(s, fmt.Sprintf("%s@%s replicas %d", it.Metadata.Name, it.Metadata.ResourceVersion, it.Spec.Replicas))
			}
			got = strings.Join(s, ",")
		} else {
			var st metav1.Status
			_ = json.Unmarshal(b, &st)
			got = fmt.Sprintf("%d %s", resp.StatusCode, st.Message)
		}
		if got != want {
			t.Errorf("LIST deployments%s:\n got %s\nwant %s", query, got, want)
		}
	}
}

// Through the secure listener, an object's history is authorized as get
// on the object itself, and LISTs from history as the LIST they are.
func TestSecureHandlerAuthorizesHistoryAsTheObject(t *testing.T) {
	authz := &recordingAuthorizer{allow: func(authorizer.Attributes) bool { return true }}
	ts := startSecureServer(t, authz)
	res := func(verb, group, version, resource, ns, name string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{Verb: verb, APIGroup: group, APIVersion: version, Resource: resource, Namespace: ns, Name: name, ResourceRequest: true}
	}
	for _, tc := range []struct {
		path string
		want authorizer.AttributesRecord
	}{
		{revisionsPath + "?resource=deployments.apps&namespace=dev&name=web", res("get", "apps", "v1", "deployments", "dev", "web")},
		{revisionsPath + "?resource=deploy&namespace=dev&name=web", res("get", "apps", "v1", "deployments", "dev", "web")},
		{revisionsPath + "?resource=pods&namespace=dev&name=api-1&since=10m", res("get", "", "v1", "pods", "dev", "api-1")},
		// Not cached: authorized under the name as given, then 404.
		{revisionsPath + "?resource=secrets&namespace=dev&name=token", res("get", "", "", "secrets", "dev", "token")},
		{revisionsPath + "?resource=widgets.example.com&namespace=dev&name=w", res("get", "example.com", "", "widgets", "dev", "w")},
		{"/apis/apps/v1/namespaces/dev/deployments?resourceVersion=5&resourceVersionMatch=Exact", res("list", "apps", "v1", "deployments", "dev", "")},
		{"/api/v1/namespaces/dev/pods?at=2026-03-14T15:00:00Z", res("list", "", "v1", "pods", "dev", "")},
		{"/api/v1/pods?at=2026-03-14T15:00:00Z", res("list", "", "v1", "pods", "", "")},
	} {
		call(t, ts, http.MethodGet, tc.path, "Bearer good-token")
		got := authz.last(t)
		got.User = nil
		tc.want.Path = strings.Split(tc.path, "?")[0]
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("GET %s: attributes (-want +got):\n%s", tc.path, d)
		}
	}
	// Denied: 403 worded as kube-apiserver words a denied get.
	deny := &recordingAuthorizer{}
	ts = startSecureServer(t, deny)
	code, st, body := call(t, ts, http.MethodGet, revisionsPath+"?resource=deployments&namespace=dev&name=web", "Bearer good-token")
	want := fmt.Sprintf(`deployments.apps "web" is forbidden: User %q cannot get resource "deployments" in API group "apps" in the namespace "dev"`, testUser)
	if code != http.StatusForbidden || !strings.HasPrefix(st.Message, want) {
		t.Errorf("a denied history: %d %s, want 403 %s", code, body, want)
	}
}

func mustJSON(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}
