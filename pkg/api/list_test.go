package api

import (
	"encoding/json"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/krm-project/krm/pkg/store"
)

// decodeList decodes a list answer, failing the test on anything but a 200.
func decodeList(t *testing.T, r response) listBody[json.RawMessage] {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status = %d, want 200; body: %s", r.status, r.body)
	}
	var l listBody[json.RawMessage]
	if err := json.Unmarshal(r.body, &l); err != nil {
		t.Fatalf("decoding list: %v\n%s", err, r.body)
	}
	return l
}

// itemKeys returns the items' namespace/name, read from the items
// themselves, and checks that krm's rows describe the same objects in the
// same order.
func itemKeys(t *testing.T, l listBody[json.RawMessage]) []string {
	t.Helper()
	keys := []string{}
	var fromRows []RowMeta
	for _, item := range l.Items {
		var obj struct {
			Metadata struct {
				Namespace, Name, UID, ResourceVersion string
			}
		}
		if err := json.Unmarshal(item, &obj); err != nil {
			t.Fatalf("item is not an object: %v: %s", err, item)
		}
		m := obj.Metadata
		key := m.Name
		if m.Namespace != "" {
			key = m.Namespace + "/" + m.Name
		}
		keys = append(keys, key)
		fromRows = append(fromRows, RowMeta{UID: m.UID, Namespace: m.Namespace, Name: m.Name, ResourceVersion: m.ResourceVersion})
	}
	var got []RowMeta
	for _, r := range l.Krm.Rows {
		got = append(got, RowMeta{UID: r.UID, Namespace: r.Namespace, Name: r.Name, ResourceVersion: r.ResourceVersion})
	}
	if diff := cmp.Diff(fromRows, got); diff != "" {
		t.Errorf("krm rows do not match the items (-items +krm):\n%s", diff)
	}
	if l.Krm.Header.Returned != len(l.Items) {
		t.Errorf("krm.header.returned = %d, want %d items", l.Krm.Header.Returned, len(l.Items))
	}
	return keys
}

func TestListFilters(t *testing.T) {
	b, _, _ := newTestBackend(t)
	ts, _ := newTestServer(t, b)
	allPods := []string{"dev-2/api-1", "dev/api-1", "dev/api-2", "dev/web-1", "prod/db-0"}
	tests := []struct {
		name, path string
		want       []string
		view       string
		rows       int
	}{
		{"all", "pods", allPods, "aggregated", 5},
		{"by short name", "po", allPods, "aggregated", 5},
		{"namespace", "pods?namespace=dev", []string{"dev/api-1", "dev/api-2", "dev/web-1"}, "aggregated", 5},
		{"namespace that sorts first", "pods?namespace=dev-2", []string{"dev-2/api-1"}, "aggregated", 5},
		{"empty namespace", "pods?namespace=nope", []string{}, "aggregated", 5},
		{"label equality", "pods?labelSelector=app%3Dapi", []string{"dev-2/api-1", "dev/api-1", "dev/api-2"}, "aggregated", 5},
		{"label set and namespace", "pods?namespace=dev&labelSelector=tier+in+(backend)", []string{"dev/api-1"}, "aggregated", 5},
		{"label absence", "pods?labelSelector=!tier", []string{"dev-2/api-1", "dev/api-2"}, "aggregated", 5},
		{"metadata.name", "pods?fieldSelector=metadata.name%3Dapi-1", []string{"dev-2/api-1", "dev/api-1"}, "aggregated", 5},
		{"metadata.namespace", "pods?fieldSelector=metadata.namespace%3Dprod", []string{"prod/db-0"}, "aggregated", 5},
		{"spec.nodeName", "pods?fieldSelector=spec.nodeName%3Dn1", []string{"dev/api-1", "dev/web-1"}, "aggregated", 5},
		{"status.phase !=", "pods?fieldSelector=status.phase!%3DRunning", []string{"dev/api-2", "prod/db-0"}, "aggregated", 5},
		{"two fields ==", "pods?fieldSelector=status.phase%3D%3DRunning,spec.nodeName%3Dn2", []string{"dev-2/api-1"}, "aggregated", 5},
		{"verified view", "pods?view=verified", []string{"dev-2/api-1", "dev/api-1", "dev/web-1"}, "verified", 3},
		{"streamed view", "pods?view=streamed", allPods, "streamed", 5},
		{"cluster-scoped", "nodes", []string{"n1", "n2", "n3"}, "aggregated", 3},
		{"cluster-scoped by name", "nodes?fieldSelector=metadata.name!%3Dn2", []string{"n1", "n3"}, "aggregated", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := decodeList(t, get(t, ts, "/api/v1/resources/"+tt.path))
			if diff := cmp.Diff(tt.want, itemKeys(t, l)); diff != "" {
				t.Errorf("items (-want +got):\n%s", diff)
			}
			if l.Krm.Header.View != tt.view || l.Krm.Header.Rows != tt.rows {
				t.Errorf("krm header view %q rows %d, want %q %d", l.Krm.Header.View, l.Krm.Header.Rows, tt.view, tt.rows)
			}
			if l.Metadata.Continue != "" || l.Metadata.RemainingItemCount != nil {
				t.Errorf("unpaged list has continue %q remainingItemCount %v", l.Metadata.Continue, l.Metadata.RemainingItemCount)
			}
		})
	}
}

func TestListBodyIsAKubernetesList(t *testing.T) {
	b, pods, _ := newTestBackend(t)
	ts, _ := newTestServer(t, b)
	r := get(t, ts, "/api/v1/resources/pods")

	var u unstructured.UnstructuredList
	if err := u.UnmarshalJSON(r.body); err != nil {
		t.Fatalf("unstructured.UnstructuredList: %v", err)
	}
	if u.GetAPIVersion() != "v1" || u.GetKind() != "PodList" || u.GetResourceVersion() != "120" || len(u.Items) != 5 {
		t.Errorf("unstructured list: apiVersion %q kind %q resourceVersion %q, %d items; want v1 PodList 120, 5 items",
			u.GetAPIVersion(), u.GetKind(), u.GetResourceVersion(), len(u.Items))
	}

	var pl corev1.PodList
	if err := json.Unmarshal(r.body, &pl); err != nil {
		t.Fatalf("corev1.PodList: %v", err)
	}
	var want []corev1.Pod
	for _, row := range pods.snaps[store.Aggregated].Rows {
		var p corev1.Pod
		if err := json.Unmarshal(row.Object, &p); err != nil {
			t.Fatal(err)
		}
		want = append(want, p)
	}
	if diff := cmp.Diff(want, pl.Items); diff != "" {
		t.Errorf("PodList items (-want +got):\n%s", diff)
	}

	var krm struct{ Krm ListMeta }
	if err := json.Unmarshal(r.body, &krm); err != nil {
		t.Fatal(err)
	}
	wantMeta := ListMeta{
		Header: FrameHeader{Cluster: "test", Resource: "pods", View: "aggregated", ResourceVersion: "120",
			VerifiedAt: testVerifiedAt, VerifiedResourceVersion: "104", Rows: 5, Returned: 5},
	}
	for _, row := range pods.snaps[store.Aggregated].Rows {
		wantMeta.Rows = append(wantMeta.Rows, RowMeta{UID: row.UID, Namespace: row.Namespace, Name: row.Name,
			ResourceVersion: strconv.FormatUint(row.ResourceVersion, 10), Source: string(row.Source), ObservedAt: row.ObservedAt})
	}
	if diff := cmp.Diff(wantMeta, krm.Krm); diff != "" {
		t.Errorf("krm (-want +got):\n%s", diff)
	}
}

func TestListPagesReturnEveryRowOnce(t *testing.T) {
	b, _, _ := newTestBackend(t)
	ts, _ := newTestServer(t, b)
	for _, query := range []string{"", "labelSelector=app%3Dapi", "namespace=dev", "fieldSelector=spec.nodeName!%3Dn3"} {
		whole := itemKeys(t, decodeList(t, get(t, ts, "/api/v1/resources/pods?"+query)))
		for limit := 1; limit <= len(whole)+1; limit++ {
			t.Run(query+"/limit="+strconv.Itoa(limit), func(t *testing.T) {
				got := []string{}
				cont := ""
				for page := 0; ; page++ {
					if page > len(whole) {
						t.Fatalf("more than %d pages: the continue tokens do not advance", page)
					}
					q, _ := url.ParseQuery(query)
					q.Set("limit", strconv.Itoa(limit))
					if cont != "" {
						q.Set("continue", cont)
					}
					l := decodeList(t, get(t, ts, "/api/v1/resources/pods?"+q.Encode()))
					keys := itemKeys(t, l)
					got = append(got, keys...)
					if len(keys) > limit {
						t.Fatalf("page of %d items, limit %d", len(keys), limit)
					}
					remaining := len(whole) - len(got)
					if remaining == 0 {
						if l.Metadata.Continue != "" || l.Metadata.RemainingItemCount != nil {
							t.Errorf("last page has continue %q remainingItemCount %v", l.Metadata.Continue, l.Metadata.RemainingItemCount)
						}
						break
					}
					if l.Metadata.RemainingItemCount == nil || *l.Metadata.RemainingItemCount != int64(remaining) {
						t.Errorf("remainingItemCount = %v, want %d", l.Metadata.RemainingItemCount, remaining)
					}
					if l.Metadata.Continue == "" {
						t.Fatalf("page %d has no continue token but %d rows remain", page, remaining)
					}
					cont = l.Metadata.Continue
				}
				if diff := cmp.Diff(whole, got); diff != "" {
					t.Errorf("rows over all pages (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// A continue token names the last key served, so rows that change between
// pages neither repeat nor shift what follows.
func TestListContinueAcrossChanges(t *testing.T) {
	b, pods, _ := newTestBackend(t)
	ts, _ := newTestServer(t, b)
	l := decodeList(t, get(t, ts, "/api/v1/resources/pods?limit=2"))
	if diff := cmp.Diff([]string{"dev-2/api-1", "dev/api-1"}, itemKeys(t, l)); diff != "" {
		t.Fatalf("first page (-want +got):\n%s", diff)
	}

	var rows []*store.Row
	for _, p := range testPods {
		switch p.name {
		case "api-1":
			if p.ns == "dev-2" {
				continue // deleted between pages
			}
		case "api-2":
			p.name = "api-3" // replaced by a new pod
		}
		rows = append(rows, podRow(t, p))
	}
	pods.snaps[store.Aggregated] = snapshot(store.Aggregated, 130, rows)

	l = decodeList(t, get(t, ts, "/api/v1/resources/pods?limit=10&continue="+url.QueryEscape(l.Metadata.Continue)))
	if diff := cmp.Diff([]string{"dev/api-3", "dev/web-1", "prod/db-0"}, itemKeys(t, l)); diff != "" {
		t.Errorf("second page (-want +got):\n%s", diff)
	}
}

func TestFreshnessHeaders(t *testing.T) {
	b, pods, _ := newTestBackend(t)
	unverified := *pods.snaps[store.Streamed]
	unverified.Header.VerifiedAt = time.Time{}
	unverified.LastStreamAt = testNow.Add(-1234567 * time.Microsecond)
	pods.snaps[store.Streamed] = &unverified
	ts, _ := newTestServer(t, b)

	type headers struct{ VerifiedAt, ResourceVersion, StreamLag, AgentVersion string }
	tests := []struct {
		path string
		want headers
	}{
		{"/api/v1/resources/pods", headers{"2026-03-14T15:09:16Z", "120", "1.5s", "v0.0.0-test"}},
		{"/api/v1/resources/pods?view=verified", headers{"2026-03-14T15:09:16Z", "104", "1.5s", "v0.0.0-test"}},
		{"/api/v1/resources/pods?view=streamed", headers{"", "120", "1.235s", "v0.0.0-test"}},
		{"/api/v1/resources/pods/namespaces/dev/api-1", headers{"2026-03-14T15:09:16Z", "120", "1.5s", "v0.0.0-test"}},
		{"/api/v1/resources/pods/namespaces/dev/missing", headers{"2026-03-14T15:09:16Z", "120", "1.5s", "v0.0.0-test"}},
		{"/api/v1/resources/pods/drift", headers{"2026-03-14T15:09:16Z", "120", "1.5s", "v0.0.0-test"}},
		{"/api/v1/resources/nodes", headers{"2026-03-14T15:09:16Z", "12", "disconnected", "v0.0.0-test"}},
		{"/api/v1/resources/nodes/n1", headers{"2026-03-14T15:09:16Z", "12", "disconnected", "v0.0.0-test"}},
		// Not reads of a resource: only the agent version.
		{"/api/v1/resources/foos", headers{AgentVersion: "v0.0.0-test"}},
		{"/healthz", headers{AgentVersion: "v0.0.0-test"}},
		{"/api/v2/nothing", headers{AgentVersion: "v0.0.0-test"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := get(t, ts, tt.path)
			got := headers{r.header.Get(HeaderVerifiedAt), r.header.Get(HeaderResourceVersion), r.header.Get(HeaderStreamLag), r.header.Get(HeaderAgentVersion)}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}
}
