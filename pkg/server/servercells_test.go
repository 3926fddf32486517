package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/store"
)

var configMapsInfo = api.ResourceInfo{
	Name: "configmaps", Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespaced: true, ShortNames: []string{"cm"},
}

// configMapRow is a configmap created three days before testNow; cells is
// what kube-apiserver sent for it when it last changed, "" for none.
func configMapRow(t *testing.T, name string, rv uint64, cells string) *store.Row {
	t.Helper()
	obj := map[string]any{
		"kind": "ConfigMap", "apiVersion": "v1",
		"metadata": map[string]any{
			"name": name, "namespace": "dev", "uid": "uid-" + name, "resourceVersion": store.FormatResourceVersion(rv),
			"creationTimestamp": testNow.Add(-72 * time.Hour).Format(time.RFC3339),
		},
		"data": map[string]any{"a": "b"},
	}
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	row := &store.Row{UID: "uid-" + name, Namespace: "dev", Name: name, ResourceVersion: rv, Source: store.Verified, Object: b}
	if cells != "" {
		row.Cells = []byte(cells)
	}
	return row
}

// startServerCells serves configmaps whose rows carry kube-apiserver's
// cells, with a clock the test moves.
func startServerCells(t *testing.T) (*httptest.Server, *fakeResource, *atomic.Int64) {
	t.Helper()
	cms := newFakeResource(configMapsInfo, 20,
		configMapRow(t, "a", 11, `["a",1,"1s"]`),
		// From a frame written before rows had cells.
		configMapRow(t, "b", 12, ""))
	cms.columns = []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name"},
		{Name: "Data", Type: "string"},
		{Name: "Age", Type: "string"},
	}
	var clock atomic.Int64
	clock.Store(testNow.UnixNano())
	s := New(&fakeBackend{resources: []*fakeResource{cms}}, Options{
		Now: func() time.Time { return time.Unix(0, clock.Load()).UTC() }, APIServer: "https://apiserver.test:6443",
		BookmarkInterval: time.Hour, WaitForResourceVersion: 100 * time.Millisecond,
	})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts, cms, &clock
}

func getTable(t *testing.T, url string) metav1.Table {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var table metav1.Table
	if err := json.NewDecoder(resp.Body).Decode(&table); err != nil {
		t.Fatal(err)
	}
	return table
}

func tableCells(table metav1.Table) [][]any {
	var out [][]any
	for _, r := range table.Rows {
		out = append(out, r.Cells)
	}
	return out
}

// TestServerCells: a resource whose rows carry kube-apiserver's cells is
// served with kube-apiserver's columns and those cells, but for Age, which
// is worked out from creationTimestamp at each read; the row's object is
// the object alone.
func TestServerCells(t *testing.T) {
	ts, _, clock := startServerCells(t)
	table := getTable(t, ts.URL+"/api/v1/namespaces/dev/configmaps?includeObject=Object")
	var cols []string
	for _, c := range table.ColumnDefinitions {
		cols = append(cols, c.Name)
	}
	if d := cmp.Diff([]string{"Name", "Data", "Age"}, cols); d != "" {
		t.Errorf("columns (-want +got):\n%s", d)
	}
	want := [][]any{{"a", float64(1), "3d"}, {"b", "", "3d"}}
	if d := cmp.Diff(want, tableCells(table)); d != "" {
		t.Errorf("cells (-want +got):\n%s", d)
	}
	var obj map[string]any
	if err := json.Unmarshal(table.Rows[0].Object.Raw, &obj); err != nil || obj["kind"] != "ConfigMap" || obj["cells"] != nil {
		t.Errorf("row object %s (%v), want the ConfigMap alone", table.Rows[0].Object.Raw, err)
	}

	// A day later the same, cached, row is a day older.
	clock.Add(int64(24 * time.Hour))
	table = getTable(t, ts.URL+"/api/v1/namespaces/dev/configmaps/a")
	if d := cmp.Diff([][]any{{"a", float64(1), "4d"}}, tableCells(table)); d != "" {
		t.Errorf("cells a day later (-want +got):\n%s", d)
	}
}

// TestServerCellsWatch: a Table watch sends kube-apiserver's columns with
// its first event and each row's cells, Age recomputed.
func TestServerCellsWatch(t *testing.T) {
	ts, cms, _ := startServerCells(t)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.URL+"/api/v1/namespaces/dev/configmaps?watch=true&resourceVersion=20", nil)
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	go func() {
		cms.apply(eventAdded, configMapRow(t, "c", 21, `["c",1,"0s"]`))
		cms.apply(eventModified, configMapRow(t, "c", 22, `["c",2,"0s"]`))
	}()
	sc := bufio.NewScanner(resp.Body)
	var got []string
	for len(got) < 2 && sc.Scan() {
		var ev struct {
			Type   string       `json:"type"`
			Object metav1.Table `json:"object"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("event %s: %v", sc.Bytes(), err)
		}
		cells, _ := json.Marshal(tableCells(ev.Object))
		got = append(got, fmt.Sprintf("%s columns=%d %s", ev.Type, len(ev.Object.ColumnDefinitions), cells))
	}
	want := []string{`ADDED columns=3 [["c",1,"3d"]]`, `MODIFIED columns=0 [["c",2,"3d"]]`}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
}
