package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/krm-project/krm/pkg/agent"
	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/client"
	"github.com/krm-project/krm/pkg/server"
	"github.com/krm-project/krm/pkg/store"
	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// The tests of this file's package that need kube-apiserver run against the
// local cluster; under -short they skip and only the unit tests run.
func TestMain(m *testing.M) { clustertest.Main(m) }

// runningAgent is an agent started in-process and served over HTTP, the way
// krm-agent serves it.
type runningAgent struct {
	client agentClient
	reg    *prometheus.Registry
}

// startAgent completes cfg (a unique cluster name, a fresh registry, logs to
// the test's output), starts the agent, serves its API and waits until it is
// ready. The agent stops when the test ends.
func startAgent(t *testing.T, cfg agent.Config) *runningAgent {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg.ClusterName = "t-" + rand.String(8)
	cfg.Registry = reg
	cfg.Logger = log
	a, err := cfg.Complete()
	if err != nil {
		t.Fatalf("completing the agent's configuration: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Start(ctx) }()
	srv, c, err := serve(a, reg, server.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	// The agent logs to the test's output, so it must have stopped before
	// the test ends.
	t.Cleanup(func() {
		srv.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	eventually(t, 30*time.Second, "the agent to be ready", func(ctx context.Context) (string, error) {
		if err := c.Readyz(ctx); err != nil {
			return err.Error(), nil
		}
		return "", nil
	})
	return &runningAgent{client: c, reg: reg}
}

// eventually calls check every 100ms until it reports nothing left to wait
// for (""), and fails the test with check's last report when timeout passes
// first. An error from check fails the test at once.
func eventually(t *testing.T, timeout time.Duration, what string, check func(ctx context.Context) (string, error)) {
	t.Helper()
	ctx := t.Context()
	deadline := time.Now().Add(timeout)
	for {
		pending, err := check(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if pending == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: still not so after %s:\n%s", what, timeout, pending)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// objectVersion is what the comparisons look at for one object, by UID.
type objectVersion struct {
	Name            string
	ResourceVersion string
}

// listVersions LISTs straight from kube-apiserver.
func listVersions(ctx context.Context, ri dynamic.ResourceInterface, selector string) (map[string]objectVersion, error) {
	out := map[string]objectVersion{}
	opts := metav1.ListOptions{LabelSelector: selector, Limit: 500}
	for {
		page, err := ri.List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Items {
			out[string(o.GetUID())] = objectVersion{Name: o.GetName(), ResourceVersion: o.GetResourceVersion()}
		}
		if page.GetContinue() == "" {
			return out, nil
		}
		opts.Continue = page.GetContinue()
	}
}

// servedVersions lists view (aggregated, verified or streamed) from the
// agent's API.
func servedVersions(ctx context.Context, c agentClient, resource, view string) (map[string]objectVersion, *client.RawList, error) {
	l, err := c.List(ctx, resource, client.ListOptions{View: view})
	if err != nil {
		return nil, nil, err
	}
	out := map[string]objectVersion{}
	for i, raw := range l.Items {
		var item struct {
			Metadata struct {
				UID             string `json:"uid"`
				Name            string `json:"name"`
				ResourceVersion string `json:"resourceVersion"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(raw, &item); err != nil {
			return nil, nil, fmt.Errorf("decoding %s item %d: %w", resource, i, err)
		}
		got := objectVersion{Name: item.Metadata.Name, ResourceVersion: item.Metadata.ResourceVersion}
		if _, dup := out[item.Metadata.UID]; dup {
			return nil, nil, fmt.Errorf("the agent served %s %s (uid %s) twice", resource, got.Name, item.Metadata.UID)
		}
		out[item.Metadata.UID] = got
	}
	return out, l, nil
}

// matchesList compares the agent's views with a LIST made straight from
// kube-apiserver just before; it returns "" when every view equals it, else
// the differences.
func matchesList(ctx context.Context, c agentClient, resource string, ri dynamic.ResourceInterface, selector string, views ...string) (string, error) {
	want, err := listVersions(ctx, ri, selector)
	if err != nil {
		return "", fmt.Errorf("listing %s from kube-apiserver: %w", resource, err)
	}
	var diffs []string
	for _, view := range views {
		got, _, err := servedVersions(ctx, c, resource, view)
		if apierrors.IsServiceUnavailable(err) {
			// Its first LIST has not landed: the agent says so (503)
			// rather than serve an empty list.
			return err.Error(), nil
		}
		if err != nil {
			return "", fmt.Errorf("listing %s from the agent: %w", resource, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			diffs = append(diffs, fmt.Sprintf("%s view of %s by UID (-kube-apiserver +agent):\n%s", view, resource, diff))
		}
	}
	return strings.Join(diffs, "\n"), nil
}

// waitMatchesList waits until every view equals a direct LIST.
func waitMatchesList(t *testing.T, timeout time.Duration, c agentClient, resource string, ri dynamic.ResourceInterface, selector string, views ...string) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("the agent's %s views of %s to equal a LIST from kube-apiserver", strings.Join(views, " and "), resource),
		func(ctx context.Context) (string, error) {
			return matchesList(ctx, c, resource, ri, selector, views...)
		})
}

// resourceStatus returns the agent's status of resource.
func resourceStatus(t *testing.T, c agentClient, resource string) api.ResourceStatus {
	t.Helper()
	list, err := c.Resources(t.Context())
	if err != nil {
		t.Fatalf("reading the agent's status: %v", err)
	}
	for _, st := range list.Resources {
		if st.Name == resource {
			return st
		}
	}
	t.Fatalf("the agent's status has no %s", resource)
	return api.ResourceStatus{}
}

// configMapClients returns the admin REST configuration, a clientset and
// the dynamic client of configmaps in ns: what most tests here start with.
func configMapClients(t *testing.T, c *cluster.State, ns string) (*rest.Config, *kubernetes.Clientset, dynamic.ResourceInterface) {
	t.Helper()
	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, cs, dyn.Resource(configMaps.gvr).Namespace(ns)
}

// counterValue sums the counter name's series whose labels include labels.
func counterValue(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	var sum float64
	for _, m := range seriesOf(t, reg, name, labels) {
		sum += m.GetCounter().GetValue()
	}
	return sum
}

// seriesOf returns the series of metric name whose labels include labels.
func seriesOf(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) []*dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	var out []*dto.Metric
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			out = append(out, m)
		}
	}
	return out
}

// written records the configmaps a test wrote: each one's UID and the
// resourceVersion of each of its writes, and the newest resourceVersion.
type written struct {
	uid      map[string]string
	versions map[string][]string // "" after a delete
	last     uint64
}

func (w *written) record(name, uid, rv string) error {
	if uid != "" {
		w.uid[name] = uid
	}
	w.versions[name] = append(w.versions[name], rv)
	if rv == "" {
		return nil
	}
	v, err := store.ParseResourceVersion(rv)
	if err != nil {
		return err
	}
	w.last = max(w.last, v)
	return nil
}

// at returns name's resourceVersion after its i-th write (negative: from
// the end).
func (w *written) at(name string, i int) string {
	vs := w.versions[name]
	if i < 0 {
		i += len(vs)
	}
	return vs[i]
}

// configMapWriter writes configmaps and records what it wrote.
type configMapWriter struct {
	cs  kubernetes.Interface
	ns  string
	log written
}

func newConfigMapWriter(cs kubernetes.Interface, ns string) *configMapWriter {
	return &configMapWriter{cs: cs, ns: ns, log: written{uid: map[string]string{}, versions: map[string][]string{}}}
}

func (w *configMapWriter) create(ctx context.Context, name string) error {
	cm, err := w.cs.CoreV1().ConfigMaps(w.ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": "0"},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating configmap %s: %w", name, err)
	}
	return w.log.record(name, string(cm.UID), cm.ResourceVersion)
}

func (w *configMapWriter) update(ctx context.Context, name string) error {
	patch := fmt.Appendf(nil, `{"data":{"v":"%d"}}`, len(w.log.versions[name]))
	cm, err := w.cs.CoreV1().ConfigMaps(w.ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("updating configmap %s: %w", name, err)
	}
	return w.log.record(name, "", cm.ResourceVersion)
}

func (w *configMapWriter) remove(ctx context.Context, name string) error {
	if err := w.cs.CoreV1().ConfigMaps(w.ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("deleting configmap %s: %w", name, err)
	}
	return w.log.record(name, "", "")
}

// state is what the written objects look like by UID, for the given
// resourceVersion of each name ("" leaves it out).
func (w *configMapWriter) state(version func(name string) string) map[string]objectVersion {
	out := map[string]objectVersion{}
	for name, uid := range w.log.uid {
		if rv := version(name); rv != "" {
			out[uid] = objectVersion{Name: name, ResourceVersion: rv}
		}
	}
	return out
}
