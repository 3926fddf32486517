package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/krm-project/krm/pkg/api"
	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/server"
	"github.com/krm-project/krm/pkg/store"
)

// fakeAgent is the agent's real HTTP server (pkg/server) over fixed
// objects that tests can change; it records the reads it is asked for, so
// tests see what the plugin made of its arguments.
type fakeAgent struct {
	srv *httptest.Server
	// resources by name, in the order the agent lists them.
	resources map[string]*fakeResource
	order     []string
	// drift is each resource's drift report.
	drift map[string]api.DriftReport
	delay *fakeDelay
	// verifiedAt is when every resource's last LIST landed.
	verifiedAt time.Time

	mu    sync.Mutex
	reads []string
	// stale marks every snapshot as served from stored frames.
	stale bool
}

var fakeResources = []api.ResourceInfo{
	{Name: "pods", Version: "v1", Resource: "pods", Kind: "Pod", Namespaced: true, ShortNames: []string{"po"}, SelectableFields: []string{"spec.nodeName", "status.phase"}},
	{Name: "deployments", Group: "apps", Version: "v1", Resource: "deployments", Kind: "Deployment", Namespaced: true, ShortNames: []string{"deploy"}},
	{Name: "services", Version: "v1", Resource: "services", Kind: "Service", Namespaced: true, ShortNames: []string{"svc"}},
	{Name: "nodes", Version: "v1", Resource: "nodes", Kind: "Node", ShortNames: []string{"no"}},
}

// fakeListRV is the resourceVersion of every resource's view at the start,
// and of its last verifying LIST; the objects are older, so verified.
const fakeListRV = 10

// fakeVerifiedAgo is how long ago that LIST landed: VERIFIED reads "30m"
// for a minute, long enough for any test.
const fakeVerifiedAgo = 30 * time.Minute

// row builds a stored object of info with resourceVersion rv.
func row(info api.ResourceInfo, namespace, name string, rv uint64, labels map[string]string) *store.Row {
	meta := map[string]any{"name": name, "uid": info.Name + "-" + namespace + "-" + name, "resourceVersion": strconv.FormatUint(rv, 10)}
	if namespace != "" {
		meta["namespace"] = namespace
	}
	if labels != nil {
		meta["labels"] = labels
	}
	obj, err := json.Marshal(map[string]any{"apiVersion": info.APIVersion(), "kind": info.Kind, "metadata": meta})
	if err != nil {
		panic(err)
	}
	return &store.Row{
		UID: meta["uid"].(string), Namespace: namespace, Name: name, ResourceVersion: rv, Source: store.Verified,
		Object: obj, Labels: labels, Fields: map[string]string{},
	}
}

func newFakeAgent(t *testing.T) *fakeAgent {
	t.Helper()
	a := &fakeAgent{resources: map[string]*fakeResource{}, drift: map[string]api.DriftReport{}, delay: &fakeDelay{}, verifiedAt: time.Now().Add(-fakeVerifiedAgo)}
	for _, info := range fakeResources {
		a.resources[info.Name] = &fakeResource{info: info, agent: a, rv: fakeListRV, rows: map[string]*store.Row{}}
		a.order = append(a.order, info.Name)
		a.drift[info.Name] = api.DriftReport{Resource: info.Name, Ledger: []api.DriftEntry{}, Unverified: []api.UnverifiedChange{}}
	}
	for resource, keys := range map[string][]string{
		"pods":        {"team-a/a", "team-a/b", "other/a", "other/web"},
		"deployments": {"team-a/web", "other/web"},
		"nodes":       {"n1"},
	} {
		res := a.resources[resource]
		for _, key := range keys {
			namespace, name, ok := strings.Cut(key, "/")
			if !ok {
				namespace, name = "", key
			}
			res.rows[key] = row(res.info, namespace, name, 7, nil)
		}
	}
	s := server.New(&fakeBackend{a}, server.Options{AgentVersion: "v1.2.3", Delay: a.delay})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	h := s.Handler()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.record(r)
		h.ServeHTTP(w, r)
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

// record keeps the reads of objects, leaving out what every command reads
// to connect and to resolve resource types.
func (a *fakeAgent) record(r *http.Request) {
	p := r.URL.Path
	if strings.HasPrefix(p, "/apis/krm.io/v1alpha1/agentstatuses") || p == "/apis/krm.io/v1alpha1/resourcestatuses" {
		return
	}
	if r.URL.RawQuery != "" {
		p += "?" + r.URL.RawQuery
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reads = append(a.reads, p)
}

// Reads returns the reads so far, in order: paths with their queries.
func (a *fakeAgent) Reads() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.reads...)
}

// fakeBackend is what pkg/server reads.
type fakeBackend struct{ a *fakeAgent }

func (b *fakeBackend) Resources() api.ResourceList {
	list := api.ResourceList{AgentVersion: "v1.2.3", Store: api.StoreStatus{Kind: "memory", Healthy: true}}
	for _, name := range b.a.order {
		list.Resources = append(list.Resources, b.a.resources[name].Status())
	}
	return list
}

func (b *fakeBackend) Resource(name string) (api.Resource, bool) {
	for _, n := range b.a.order {
		if r := b.a.resources[n]; slices.Contains(r.info.Names(), name) {
			return r, true
		}
	}
	return nil, false
}

func (b *fakeBackend) Ready() (bool, string) { return true, "" }

// fakeResource is one resource's rows; every change is kept, so a watch
// resumes from any resourceVersion.
type fakeResource struct {
	info  api.ResourceInfo
	agent *fakeAgent

	mu      sync.Mutex
	rows    map[string]*store.Row // by key
	rv      uint64
	history []api.Change
	subs    []chan api.Change
}

func (r *fakeResource) Info() api.ResourceInfo { return r.info }

func (r *fakeResource) Status() api.ResourceStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return api.ResourceStatus{
		ResourceInfo: r.info, VerifiedAt: r.agent.verifiedAt, VerifiedResourceVersion: strconv.Itoa(fakeListRV),
		Objects: api.ObjectCounts{Verified: len(r.rows), Streamed: len(r.rows), Aggregated: len(r.rows)}, StreamConnected: true,
	}
}

func (r *fakeResource) Drift() api.DriftReport { return r.agent.drift[r.info.Name] }

func (r *fakeResource) TableColumns() []metav1.TableColumnDefinition { return nil }

func (r *fakeResource) Snapshot(store.Source) *api.Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshotLocked()
}

func (r *fakeResource) snapshotLocked() *api.Snapshot {
	rows := make([]*store.Row, 0, len(r.rows))
	for _, row := range r.rows {
		rows = append(rows, row)
	}
	slices.SortFunc(rows, store.CompareKeys)
	return &api.Snapshot{
		Header:                  store.Header{Source: store.Aggregated, ResourceVersion: r.rv, VerifiedAt: r.agent.verifiedAt, Rows: len(rows)},
		VerifiedResourceVersion: fakeListRV,
		Rows:                    store.NewView(rows...),
		StreamConnected:         true,
		Stale:                   r.agent.stale,
	}
}

func (r *fakeResource) Subscribe(_ context.Context, _ store.Source, from uint64) (*api.Snapshot, []api.Change, <-chan api.Change, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var backlog []api.Change
	for _, c := range r.history {
		if from > 0 && c.ResourceVersion > from {
			backlog = append(backlog, c)
		}
	}
	ch := make(chan api.Change, 100)
	r.subs = append(r.subs, ch)
	return r.snapshotLocked(), backlog, ch, nil
}

// apply makes a watch event of typ for row and tells the watchers.
func (r *fakeResource) apply(typ string, row *store.Row) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.rows[row.Key()]
	if typ == "DELETED" {
		delete(r.rows, row.Key())
	} else {
		r.rows[row.Key()] = row
	}
	r.rv = row.ResourceVersion
	c := api.Change{Type: typ, Row: row, Prev: prev, ResourceVersion: row.ResourceVersion}
	r.history = append(r.history, c)
	for _, ch := range r.subs {
		ch <- c
	}
}

// fakeDelay answers every resource's delay with one ADDED row for pods and
// the probe, and none for the others; it keeps the queries.
type fakeDelay struct {
	mu      sync.Mutex
	queries []api.DelayQuery
}

func (d *fakeDelay) Delay(_ context.Context, q api.DelayQuery) (*api.DelayReport, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queries = append(d.queries, q)
	rep := &api.DelayReport{
		Source: "memory", Since: q.Since, Step: q.Step.String(), Resolution: "object timestamps have 1-second resolution",
		Stats: []api.DelayStats{}, Series: []api.DelayPoint{},
	}
	switch q.Resource {
	case "pods":
		rep.Stats = append(rep.Stats, api.DelayStats{Resource: "pods", Event: "ADDED", Count: 3, Min: 0.2, P50: 0.5, P90: 0.9, P99: 0.99, Max: 1, Mean: 0.55})
		rep.Series = append(rep.Series, api.DelayPoint{At: q.Since.Add(time.Minute), Count: 3, P50: 0.5, Max: 1})
	case krmv1alpha1.ProbeName:
		rep.Stats = append(rep.Stats, api.DelayStats{Resource: krmv1alpha1.ProbeName, Event: "ADDED", Count: 2, Min: 0.0001, P50: 0.0002, P90: 0.0003, P99: 0.0003, Max: 0.0003, Mean: 0.0002})
	}
	return rep, nil
}

// kubeconfigIn writes a kubeconfig whose context's namespace is namespace.
// Its server is never contacted: the tests give --agent-url.
func kubeconfigIn(t *testing.T, namespace string) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1"}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u", Namespace: namespace}
	kc.CurrentContext = "c"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// ran is one execution of `kubectl krm`.
type ran struct {
	stdout, stderr string
	err            error
}

// runKrm runs `kubectl krm args…` in process against a, with a kubeconfig
// whose namespace is team-a.
func runKrm(t *testing.T, a *fakeAgent, args ...string) ran {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := executeKrm(t.Context(), t, a, &stdout, &stderr, args...)
	return ran{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// executeKrm runs `kubectl krm args…` against a until it ends or ctx is
// done.
func executeKrm(ctx context.Context, t *testing.T, a *fakeAgent, stdout, stderr io.Writer, args ...string) error {
	t.Helper()
	cmd := NewCmdKrm(genericiooptions.IOStreams{In: strings.NewReader(""), Out: stdout, ErrOut: stderr})
	cmd.SetArgs(append(args, "--agent-url", a.srv.URL, "--kubeconfig", kubeconfigIn(t, "team-a")))
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	return cmd.ExecuteContext(ctx)
}
