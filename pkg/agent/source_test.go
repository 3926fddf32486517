package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"github.com/krm-project/krm/pkg/agent/aggregate"
	"github.com/krm-project/krm/pkg/agent/persist"
	"github.com/krm-project/krm/pkg/agent/source"
	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/store"
)

// configMapColumns are kube-apiserver v1.37's columns for configmaps
// (descriptions shortened).
const configMapColumns = `[{"name":"Name","type":"string","format":"name","description":"Name must be unique within a namespace.","priority":0},` +
	`{"name":"Data","type":"string","format":"","description":"Data contains the configuration data.","priority":0},` +
	`{"name":"Age","type":"string","format":"","description":"CreationTimestamp is a timestamp.","priority":0}]`

// configMapRow is a Table row as kube-apiserver sends it with
// includeObject=Object, managedFields and all.
func configMapRow(name, rv string, data int) string {
	return fmt.Sprintf(`{"cells":[%q,%d,"43m"],"object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":%q,"namespace":"default",`+
		`"uid":"uid-%s","resourceVersion":%q,"creationTimestamp":"2026-12-06T06:29:36Z",`+
		`"managedFields":[{"manager":"kubectl-create","operation":"Update","apiVersion":"v1","time":"2026-12-06T06:29:36Z"}]},"data":{"a":"b"}}}`,
		name, data, name, name, rv)
}

// tableServer serves a recorded Table LIST of configmaps in two pages, and
// a watch that sends events, then stays open until the client goes.
type tableServer struct {
	t     *testing.T
	watch []string // event lines
	mu    sync.Mutex
	reqs  []*http.Request
}

func (s *tableServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r)
	s.mu.Unlock()
	if r.URL.Path != "/api/v1/namespaces/default/configmaps" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	q := r.URL.Query()
	if q.Get("watch") == "true" {
		for _, line := range s.watch {
			_, _ = fmt.Fprintln(w, line)
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	}
	switch q.Get("continue") {
	case "":
		_, _ = fmt.Fprintf(w, `{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"500","continue":"page2","remainingItemCount":1},`+
			`"columnDefinitions":%s,"rows":[%s,%s]}`, configMapColumns, configMapRow("a", "101", 1), configMapRow("b", "102", 2))
	case "page2":
		_, _ = fmt.Fprintf(w, `{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"500"},`+
			`"columnDefinitions":%s,"rows":[%s]}`, configMapColumns, configMapRow("c", "103", 3))
	case "expired":
		w.WriteHeader(http.StatusGone)
		_, _ = fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"The provided continue parameter is too old.","reason":"Expired","code":410}`)
	}
}

func (s *tableServer) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.reqs...)
}

func newTestAPISource(t *testing.T, s *tableServer) *source.API {
	t.Helper()
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	client, err := source.NewRESTClient(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return source.NewAPI(client, schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, "default", true)
}

// mustObject decodes the object of a Table row.
func mustObject(t *testing.T, row string) *unstructured.Unstructured {
	t.Helper()
	var r struct {
		Object json.RawMessage `json:"object"`
	}
	if err := json.Unmarshal([]byte(row), &r); err != nil {
		t.Fatal(err)
	}
	obj, err := source.DecodeObject(r.Object)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

func testTableRunner(src source.ListWatcher) *runner {
	return &runner{
		info:   api.ResourceInfo{Name: "configmaps", Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespaced: true},
		client: src,
		agg:    aggregate.New("test", "configmaps", time.Now),
		rows:   newRowBuilder("ConfigMap", time.Now),
		log:    slog.New(slog.DiscardHandler),
	}
}

// TestTableSourceList: a paginated LIST of Tables becomes rows whose object
// is what the JSON LIST would give (managedFields stripped, no cells in
// it) and whose Cells are the row's cells as sent; the columns are kept.
func TestTableSourceList(t *testing.T) {
	s := &tableServer{t: t}
	src := newTestAPISource(t, s)
	r := testTableRunner(src)
	if cols := r.TableColumns(); cols != nil {
		t.Errorf("columns before any Table: %v", cols)
	}
	// A row held from a frame written before cells were kept is rebuilt,
	// not reused, though its resourceVersion is the LIST's.
	old, err := r.rows.build(mustObject(t, configMapRow("a", "101", 1)), nil, store.Verified)
	if err != nil {
		t.Fatal(err)
	}
	r.agg.Verify(aggregate.Verification{Rows: []*store.Row{old}, RV: 101, At: time.Now()})
	rows, rv, err := r.list(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rv != 500 {
		t.Errorf("resourceVersion %d, want 500", rv)
	}
	var got []string
	for _, row := range rows {
		got = append(got, fmt.Sprintf("%s rv=%d cells=%s", row.Key(), row.ResourceVersion, row.Cells))
		if strings.Contains(string(row.Object), "managedFields") || strings.Contains(string(row.Object), "cells") {
			t.Errorf("%s: the stored object has more than the object: %s", row.Key(), row.Object)
		}
		var obj map[string]any
		if err := json.Unmarshal(row.Object, &obj); err != nil || obj["kind"] != "ConfigMap" || obj["apiVersion"] != "v1" {
			t.Errorf("%s: stored object %s is not the ConfigMap (err %v)", row.Key(), row.Object, err)
		}
	}
	want := []string{
		`default/a rv=101 cells=["a",1,"43m"]`,
		`default/b rv=102 cells=["b",2,"43m"]`,
		`default/c rv=103 cells=["c",3,"43m"]`,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("rows (-want +got):\n%s", d)
	}
	var wantCols []metav1.TableColumnDefinition
	if err := json.Unmarshal([]byte(configMapColumns), &wantCols); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(wantCols, r.TableColumns()); d != "" {
		t.Errorf("columns (-want +got):\n%s", d)
	}
	reqs := s.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2 pages", len(reqs))
	}
	for _, req := range reqs {
		q := req.URL.Query()
		if a := req.Header.Get("Accept"); !strings.HasPrefix(a, "application/json;as=Table;v=v1;g=meta.k8s.io") {
			t.Errorf("Accept %q does not ask for a Table", a)
		}
		if q.Get("includeObject") != "Object" || q.Get("limit") != "500" {
			t.Errorf("query %s: want includeObject=Object and limit=500", req.URL.RawQuery)
		}
	}
	if c := reqs[1].URL.Query().Get("continue"); c != "page2" {
		t.Errorf("second page asked with continue %q", c)
	}
}

// TestTableSourceListError: a failed LIST is kube-apiserver's Status, so
// the runner can tell 410 Expired.
func TestTableSourceListError(t *testing.T) {
	src := newTestAPISource(t, &tableServer{t: t})
	_, err := src.ListPage(t.Context(), metav1.ListOptions{Continue: "expired"}, func(source.Item) error { return nil })
	if !apierrors.IsResourceExpired(err) {
		t.Errorf("err = %v, want 410 Expired", err)
	}
}

// TestTableSourceWatch: a watch stream of Tables (recorded from
// kube-apiserver v1.37) gives the runner objects with their cells,
// bookmarks with their resourceVersion, and ERROR's Status.
func TestTableSourceWatch(t *testing.T) {
	table := func(rv, cols, row string) string {
		return fmt.Sprintf(`{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":%q},"columnDefinitions":%s,"rows":[%s]}`, rv, cols, row)
	}
	s := &tableServer{t: t, watch: []string{
		`{"type":"ADDED","object":` + table("601", configMapColumns, configMapRow("d", "601", 1)) + `}`,
		`{"type":"MODIFIED","object":` + table("602", "null", configMapRow("d", "602", 2)) + `}`,
		`{"type":"BOOKMARK","object":` + table("650", "null",
			`{"cells":["",0,"\u003cunknown\u003e"],"object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"resourceVersion":"650"}}}`) + `}`,
		`{"type":"DELETED","object":` + table("651", "null", configMapRow("d", "651", 2)) + `}`,
		`{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"The resourceVersion for the provided watch is too old.","reason":"Expired","code":410}}`,
	}}
	src := newTestAPISource(t, s)
	w, err := src.Watch(t.Context(), metav1.ListOptions{ResourceVersion: "600", AllowWatchBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var got []string
	for range 5 {
		var ev watch.Event
		select {
		case ev = <-w.ResultChan():
		case <-time.After(5 * time.Second):
			t.Fatalf("no event after %v", got)
		}
		switch ev.Type {
		case watch.Error:
			err := apierrors.FromObject(ev.Object)
			got = append(got, fmt.Sprintf("ERROR expired=%t", apierrors.IsResourceExpired(err)))
		default:
			obj, cells, ok := source.EventObject(ev.Object)
			if !ok {
				t.Fatalf("%s event carries %T", ev.Type, ev.Object)
			}
			got = append(got, fmt.Sprintf("%s %s rv=%s cells=%s", ev.Type, obj.GetName(), obj.GetResourceVersion(), cells))
		}
	}
	want := []string{
		`ADDED d rv=601 cells=["d",1,"43m"]`,
		`MODIFIED d rv=602 cells=["d",2,"43m"]`,
		`BOOKMARK  rv=650 cells=`,
		`DELETED d rv=651 cells=["d",2,"43m"]`,
		`ERROR expired=true`,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
	if len(src.Columns()) != 3 {
		t.Errorf("columns after the watch's first event: %v", src.Columns())
	}
	reqs := s.requests()
	q := reqs[len(reqs)-1].URL.Query()
	if q.Get("watch") != "true" || q.Get("includeObject") != "Object" || q.Get("resourceVersion") != "600" || q.Get("allowWatchBookmarks") != "true" {
		t.Errorf("watch query %s", reqs[len(reqs)-1].URL.RawQuery)
	}
	w.Stop()
	select {
	case _, ok := <-w.ResultChan():
		if ok {
			t.Error("an event after Stop")
		}
	case <-time.After(5 * time.Second):
		t.Error("the result channel stays open after Stop")
	}
}

// TestHandleTableEvents: the runner applies a Table watch's events as it
// applies the dynamic client's: objects with their cells into the views, a
// bookmark as progress, an ERROR as the watch's end with its Status.
func TestHandleTableEvents(t *testing.T) {
	s := &tableServer{t: t}
	r := testTableRunner(newTestAPISource(t, s))
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	sm, err := persist.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	r.metrics = m
	r.writer = persist.NewWriter(store.NewMemory(), "memory", "test", r.log, sm)
	rows, rv, err := r.list(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r.agg.Verify(aggregate.Verification{Rows: rows, RV: rv, At: time.Now()})
	events, err := r.client.(*source.API).DecodeEvent(watch.Added, json.RawMessage(
		`{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"601"},"columnDefinitions":null,"rows":[`+configMapRow("d", "601", 7)+`]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if err := r.handle(ev); err != nil {
			t.Fatal(err)
		}
	}
	row := r.agg.RowAt("uid-d", "601")
	if row == nil || string(row.Cells) != `["d",7,"43m"]` {
		t.Fatalf("streamed row %+v, want cells [\"d\",7,\"43m\"]", row)
	}
	bm, err := r.client.(*source.API).DecodeEvent(watch.Bookmark, json.RawMessage(`{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"700"},"rows":[]}`))
	if err != nil || len(bm) != 1 {
		t.Fatalf("bookmark: %v %v", bm, err)
	}
	if err := r.handle(bm[0]); err != nil {
		t.Fatal(err)
	}
	if got := r.agg.ResumeFrom(); got != 700 {
		t.Errorf("after a bookmark at 700 the watch resumes from %d", got)
	}
	gone, err := r.client.(*source.API).DecodeEvent(watch.Error, json.RawMessage(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Expired","code":410}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.handle(gone[0]); !apierrors.IsResourceExpired(err) {
		t.Errorf("an ERROR 410 event: handle returned %v, want Expired", err)
	}
}

// podItem is a pod as a JSON LIST carries it: without kind and apiVersion,
// which the list gives.
func podItem(name, rv string) string {
	return fmt.Sprintf(`{"metadata":{"name":%q,"namespace":"default","uid":"uid-%s","resourceVersion":%q,`+
		`"managedFields":[{"manager":"m"}]},"spec":{"nodeName":"n1"},"status":{"phase":"Running"}}`, name, name, rv)
}

// TestListReusesRowsItHolds: a JSON LIST is read item by item; an object
// the views hold at the listed resourceVersion keeps its row (the same
// pointer: its bytes were not decoded or encoded again), a changed or new
// one gets a new row, and metadata may come after the items. A body cut
// off mid-page is an error, never a short LIST.
func TestListReusesRowsItHolds(t *testing.T) {
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Accept"); a != source.JSONAccept {
			t.Errorf("Accept %q, want %q", a, source.JSONAccept)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprint(w, body)
	}))
	defer srv.Close()
	client, err := source.NewRESTClient(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	src := source.NewAPI(client, schema.GroupVersionResource{Version: "v1", Resource: "pods"}, "default", false)
	r := &runner{
		info: api.ResourceInfo{Name: "pods", Version: "v1", Resource: "pods", Kind: "Pod", Namespaced: true}, client: src,
		agg: aggregate.New("test", "pods", time.Now), rows: newRowBuilder("Pod", time.Now), log: slog.New(slog.DiscardHandler),
	}
	body = `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"10"},"items":[` + podItem("a", "5") + `,` + podItem("b", "6") + `]}`
	first, rv, err := r.list(t.Context())
	if err != nil || rv != 10 || len(first) != 2 {
		t.Fatalf("first LIST: %d rows at %d, %v", len(first), rv, err)
	}
	if o := string(first[0].Object); strings.Contains(o, "managedFields") || !strings.Contains(o, `"apiVersion":"v1"`) || !strings.Contains(o, `"kind":"Pod"`) || first[0].Fields["spec.nodeName"] != "n1" {
		t.Errorf("row a: object %s fields %v", first[0].Object, first[0].Fields)
	}
	r.agg.Verify(aggregate.Verification{Rows: first, RV: rv, At: time.Now()})

	body = `{"kind":"PodList","apiVersion":"v1","items":[` + podItem("a", "5") + `,` + podItem("b", "11") + `,` + podItem("c", "12") +
		`],"metadata":{"resourceVersion":"12"}}`
	second, rv, err := r.list(t.Context())
	if err != nil || rv != 12 || len(second) != 3 {
		t.Fatalf("second LIST: %d rows at %d, %v", len(second), rv, err)
	}
	if second[0] != first[0] {
		t.Error("the unchanged object a got a new row; want the row held")
	}
	if second[1] == first[1] || second[1].ResourceVersion != 11 || second[2].Name != "c" {
		t.Errorf("changed and new objects: %+v %+v", second[1], second[2])
	}

	for name, cut := range map[string]string{
		"cut mid-item":     `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"12"},"items":[` + podItem("a", "5")[:40],
		"cut after items":  `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"12"},"items":[` + podItem("a", "5") + `]`,
		"item without uid": `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"12"},"items":[{"metadata":{"name":"x"}}]}`,
	} {
		body = cut
		if rows, _, err := r.list(t.Context()); err == nil {
			t.Errorf("%s: %d rows and no error", name, len(rows))
		}
	}
}

// silentSource lists one empty page and opens watches that never send.
type silentSource struct {
	mu      sync.Mutex
	watches int
}

func (s *silentSource) ListPage(context.Context, metav1.ListOptions, func(source.Item) error) (metav1.ListMeta, error) {
	return metav1.ListMeta{ResourceVersion: "10"}, nil
}

func (s *silentSource) WatchList(context.Context, metav1.ListOptions, func(source.Item) error) (string, error) {
	return "", source.ErrNoWatchList
}

func (s *silentSource) Watch(context.Context, metav1.ListOptions) (watch.Interface, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watches++
	return watch.NewFake(), nil
}

// A watch that stays open and delivers nothing, not even a bookmark, is
// restarted after stallAfter, not left until the server's timeout, and
// the restart is counted as stalled.
func TestWatchdogRestartsASilentWatch(t *testing.T) {
	src := &silentSource{}
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	r := testTableRunner(src)
	r.metrics, r.stallAfter, r.interval = m, 100*time.Millisecond, time.Hour
	r.relist, r.listed = make(chan struct{}, 1), make(chan struct{}, 1)
	sm, err := persist.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	r.writer = persist.NewWriter(store.NewMemory(), "memory", "test", r.log, sm)
	r.writer.Add(r)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Start(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		src.mu.Lock()
		n := src.watches
		src.mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d watches in 5s with a 100ms stall limit, want the silent one restarted", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	var restarts dto.Metric
	if err := m.watchRestarts.WithLabelValues("configmaps", "stalled").Write(&restarts); err != nil {
		t.Fatal(err)
	}
	if got := restarts.GetCounter().GetValue(); got < 2 {
		t.Errorf("krm_watch_restarts_total{reason=stalled} = %v, want the restarts counted", got)
	}
}

// slowSource serves a LIST of pages pages (one object each), each after
// pause, or, as a WatchList, the same objects each after pause; hang makes
// the last page, or the last object, never come.
type slowSource struct {
	silentSource
	pages     int
	pause     time.Duration
	hang      bool
	watchList bool
}

func (s *slowSource) item(i int) source.Item {
	return source.Item{Object: []byte(podItem(fmt.Sprint("p", i), "5"))}
}

func (s *slowSource) wait(ctx context.Context, last bool) error {
	d := s.pause
	if last && s.hang {
		d = time.Hour
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func (s *slowSource) ListPage(ctx context.Context, opts metav1.ListOptions, each func(source.Item) error) (metav1.ListMeta, error) {
	i := 0
	if opts.Continue != "" {
		fmt.Sscan(opts.Continue, &i)
	}
	if err := s.wait(ctx, i == s.pages-1); err != nil {
		return metav1.ListMeta{}, err
	}
	if err := each(s.item(i)); err != nil {
		return metav1.ListMeta{}, err
	}
	meta := metav1.ListMeta{ResourceVersion: "10"}
	if i+1 < s.pages {
		meta.Continue = fmt.Sprint(i + 1)
	}
	return meta, nil
}

func (s *slowSource) WatchList(ctx context.Context, _ metav1.ListOptions, each func(source.Item) error) (string, error) {
	if !s.watchList {
		return "", source.ErrNoWatchList
	}
	for i := range s.pages {
		if err := s.wait(ctx, i == s.pages-1); err != nil {
			return "", err
		}
		if err := each(s.item(i)); err != nil {
			return "", err
		}
	}
	return "10", nil
}

// A verifying LIST is bounded request by request, not as a whole: at
// 100,000 pods on a busy kube-apiserver its hundreds of pages took longer
// than one interval, and a LIST bounded by one interval never landed. One
// that keeps coming lands however long it takes in all (within ten
// bounds); a page, or a WatchList's next object, that does not come within
// the bound fails it.
func TestVerifyingListIsBoundedPerRequest(t *testing.T) {
	const bound = 200 * time.Millisecond
	for _, tc := range []struct {
		name string
		src  *slowSource
		ok   bool
	}{
		{"pages, slower in all than the bound", &slowSource{pages: 6, pause: bound / 2}, true},
		{"a page that hangs", &slowSource{pages: 3, pause: bound / 4, hang: true}, false},
		{"WatchList, slower in all than the bound", &slowSource{pages: 6, pause: bound / 2, watchList: true}, true},
		{"WatchList that stops sending", &slowSource{pages: 3, pause: bound / 4, hang: true, watchList: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := newMetrics(prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			r := testTableRunner(tc.src)
			r.metrics, r.interval, r.listTimeout, r.watchList = m, time.Hour, bound, tc.src.watchList
			r.relist, r.listed = make(chan struct{}, 1), make(chan struct{}, 1)
			sm, err := persist.NewMetrics(prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			r.writer = persist.NewWriter(store.NewMemory(), "memory", "test", r.log, sm)
			r.writer.Add(r)
			start := time.Now()
			err = r.verifyOnce(t.Context())
			took := time.Since(start)
			if tc.ok {
				if err != nil {
					t.Fatalf("after %s: %v, want the LIST landed", took.Round(time.Millisecond), err)
				}
				if n := r.agg.Status(r.info).Objects.Verified; n != tc.src.pages {
					t.Errorf("%d objects verified, want %d", n, tc.src.pages)
				}
				return
			}
			if err == nil || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want a deadline", err)
			}
			if took > 10*bound {
				t.Errorf("failed after %s, want within about %s of the stall", took, bound)
			}
		})
	}
}
