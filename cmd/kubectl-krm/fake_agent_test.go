package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/krm-project/krm/pkg/api"
)

// fakeAgent serves krm's API from fixed objects and records the reads it
// is asked for, so tests see what the plugin made of its arguments.
type fakeAgent struct {
	srv *httptest.Server
	// objects by resource name; namespaced ones carry their namespace.
	objects map[string][]map[string]any
	drift   map[string]api.DriftReport

	mu    sync.Mutex
	reads []string
}

var fakeResources = []api.ResourceInfo{
	{Name: "pods", Version: "v1", Resource: "pods", Kind: "Pod", Namespaced: true, ShortNames: []string{"po"}},
	{Name: "deployments", Group: "apps", Version: "v1", Resource: "deployments", Kind: "Deployment", Namespaced: true, ShortNames: []string{"deploy"}},
	{Name: "services", Version: "v1", Resource: "services", Kind: "Service", Namespaced: true, ShortNames: []string{"svc"}},
	{Name: "nodes", Version: "v1", Resource: "nodes", Kind: "Node", ShortNames: []string{"no"}},
}

func object(info api.ResourceInfo, namespace, name string) map[string]any {
	meta := map[string]any{"name": name, "uid": info.Name + "-" + namespace + "-" + name, "resourceVersion": "7"}
	if namespace != "" {
		meta["namespace"] = namespace
	}
	return map[string]any{"apiVersion": info.APIVersion(), "kind": info.Kind, "metadata": meta}
}

func newFakeAgent(t *testing.T) *fakeAgent {
	t.Helper()
	a := &fakeAgent{objects: map[string][]map[string]any{}, drift: map[string]api.DriftReport{}}
	byName := map[string]api.ResourceInfo{}
	for _, r := range fakeResources {
		byName[r.Name] = r
		a.drift[r.Name] = api.DriftReport{Resource: r.Name, Ledger: []api.DriftEntry{}, Unverified: []api.UnverifiedChange{}}
	}
	a.objects["pods"] = []map[string]any{
		object(byName["pods"], "team-a", "a"), object(byName["pods"], "team-a", "b"), object(byName["pods"], "other", "a"),
		object(byName["pods"], "other", "web"),
	}
	a.objects["deployments"] = []map[string]any{object(byName["deployments"], "team-a", "web"), object(byName["deployments"], "other", "web")}
	a.objects["nodes"] = []map[string]any{object(byName["nodes"], "", "n1")}

	writeJSON := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	notFound := func(w http.ResponseWriter, what string) {
		writeJSON(w, http.StatusNotFound, api.Error{Status: http.StatusNotFound, Message: what + " not found"})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /api/v1/resources", func(w http.ResponseWriter, _ *http.Request) {
		list := api.ResourceList{AgentVersion: "v1.2.3", Store: api.StoreStatus{Kind: "memory", Healthy: true}}
		for _, r := range fakeResources {
			list.Resources = append(list.Resources, api.ResourceStatus{ResourceInfo: r, StreamConnected: true})
		}
		writeJSON(w, http.StatusOK, list)
	})
	mux.HandleFunc("GET /api/v1/resources/{resource}", func(w http.ResponseWriter, r *http.Request) {
		res := r.PathValue("resource")
		a.record("list " + res + " " + r.URL.RawQuery)
		ns := r.URL.Query().Get("namespace")
		items := []map[string]any{}
		rows := []api.RowMeta{}
		for _, o := range a.objects[res] {
			meta := o["metadata"].(map[string]any)
			if ns != "" && meta["namespace"] != ns {
				continue
			}
			items = append(items, o)
			rows = append(rows, api.RowMeta{UID: meta["uid"].(string), Name: meta["name"].(string), ResourceVersion: "7", Source: "verified"})
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"apiVersion": "v1", "kind": "List", "metadata": map[string]any{"resourceVersion": "7"}, "items": items,
			"krm": api.ListMeta{Header: api.FrameHeader{Resource: res, View: "aggregated", Returned: len(items)}, Rows: rows},
		})
	})
	get := func(w http.ResponseWriter, r *http.Request) {
		res, ns, name := r.PathValue("resource"), r.PathValue("namespace"), r.PathValue("name")
		key := name
		if ns != "" {
			key = ns + "/" + name
		}
		a.record("get " + res + " " + key)
		if _, ok := byName[res]; !ok {
			notFound(w, "resource "+res)
			return
		}
		for _, o := range a.objects[res] {
			meta := o["metadata"].(map[string]any)
			if meta["name"] == name && (ns == "" || meta["namespace"] == ns) {
				body := map[string]any{"krm": api.ObjectMeta{Row: api.RowMeta{UID: meta["uid"].(string), Name: name, Source: "streamed"}}}
				for k, v := range o {
					body[k] = v
				}
				writeJSON(w, http.StatusOK, body)
				return
			}
		}
		notFound(w, res+" "+key)
	}
	mux.HandleFunc("GET /api/v1/resources/{resource}/{name}", get)
	mux.HandleFunc("GET /api/v1/resources/{resource}/namespaces/{namespace}/{name}", get)
	mux.HandleFunc("GET /api/v1/resources/{resource}/drift", func(w http.ResponseWriter, r *http.Request) {
		res := r.PathValue("resource")
		a.record("drift " + res)
		writeJSON(w, http.StatusOK, a.drift[res])
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeAgent) record(s string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reads = append(a.reads, strings.TrimSpace(s))
}

// Reads returns the list, get and drift requests so far, in order.
func (a *fakeAgent) Reads() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.reads...)
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
	cmd := NewCmdKrm(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &stdout, ErrOut: &stderr})
	cmd.SetArgs(append(args, "--agent-url", a.srv.URL, "--kubeconfig", kubeconfigIn(t, "team-a")))
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	err := cmd.ExecuteContext(t.Context())
	return ran{stdout: stdout.String(), stderr: stderr.String(), err: err}
}
