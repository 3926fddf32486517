package agent_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/dynamic"

	"github.com/krm-project/krm/pkg/agent"
	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/test/cluster/clustertest"
	"github.com/krm-project/krm/test/watchproxy"
)

// churnKind is a resource the churn tests create, change and delete.
type churnKind struct {
	resource   string
	gvr        schema.GroupVersionResource
	namespaced bool
	// object returns a valid object of the kind, without metadata.
	object func(name string) map[string]any
}

func podSpec() map[string]any {
	return map[string]any{
		"containers": []any{map[string]any{"name": "app", "image": "registry.k8s.io/pause:3.10"}},
		// The kwok nodes run pods; nodes made by other tests never do.
		"nodeSelector": map[string]any{"type": "kwok"},
	}
}

var (
	pods = churnKind{
		resource: "pods", gvr: schema.GroupVersionResource{Version: "v1", Resource: "pods"}, namespaced: true,
		object: func(string) map[string]any {
			return map[string]any{"apiVersion": "v1", "kind": "Pod", "spec": podSpec()}
		},
	}
	deployments = churnKind{
		resource: "deployments", gvr: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, namespaced: true,
		object: func(name string) map[string]any {
			app := map[string]any{"app": name}
			return map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "spec": map[string]any{
				// No replicas: the deployments churn, not thousands of pods.
				"replicas": int64(0),
				"selector": map[string]any{"matchLabels": app},
				"template": map[string]any{"metadata": map[string]any{"labels": app}, "spec": podSpec()},
			}}
		},
	}
	persistentVolumeClaims = churnKind{
		resource: "persistentvolumeclaims", gvr: schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}, namespaced: true,
		object: func(string) map[string]any {
			return map[string]any{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "spec": map[string]any{
				"accessModes": []any{"ReadWriteOnce"},
				"resources":   map[string]any{"requests": map[string]any{"storage": "1Gi"}},
			}}
		},
	}
	services = churnKind{
		resource: "services", gvr: schema.GroupVersionResource{Version: "v1", Resource: "services"}, namespaced: true,
		object: func(name string) map[string]any {
			return map[string]any{"apiVersion": "v1", "kind": "Service", "spec": map[string]any{
				"selector": map[string]any{"app": name},
				"ports":    []any{map[string]any{"port": int64(80), "targetPort": int64(8080)}},
			}}
		},
	}
	ingresses = churnKind{
		resource: "ingresses", gvr: schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "ingresses"}, namespaced: true,
		object: func(string) map[string]any {
			return map[string]any{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "spec": map[string]any{
				"defaultBackend": map[string]any{"service": map[string]any{"name": "backend", "port": map[string]any{"number": int64(80)}}},
			}}
		},
	}
	// nodes are plain objects: without kwok's annotation no kubelet runs
	// them, and the taint keeps every other test's pods off them.
	nodes = churnKind{
		resource: "nodes", gvr: schema.GroupVersionResource{Version: "v1", Resource: "nodes"},
		object: func(string) map[string]any {
			return map[string]any{"apiVersion": "v1", "kind": "Node", "spec": map[string]any{
				"unschedulable": true,
				"taints":        []any{map[string]any{"key": "krm.test/not-a-node", "effect": "NoSchedule"}},
			}}
		},
	}
	configMaps = churnKind{
		resource: "configmaps", gvr: schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, namespaced: true,
		object: func(string) map[string]any {
			return map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "data": map[string]any{"v": "0"}}
		},
	}
)

// churnStep is what happens to one object after its creation.
type churnStep struct {
	index   int
	patches int
	remove  bool
}

// churnOptions shape a workload.
type churnOptions struct {
	prefix  string
	labels  map[string]string
	objects int
	workers int
	// done counts the requests made so far, for tests that act mid-churn.
	done *atomic.Int64
}

// churn runs a workload on ri: it creates opts.objects objects of kind k;
// about half are then patched (a label and an annotation) one to four times
// and about a third deleted. Each object's steps run in order, the objects'
// interleaved across opts.workers goroutines.
func churn(ctx context.Context, t *testing.T, ri dynamic.ResourceInterface, k churnKind, opts churnOptions) error {
	seed := time.Now().UnixNano()
	t.Logf("churning %d %s with %d workers, seed %d", opts.objects, k.resource, opts.workers, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(seed>>32)))
	steps := make(chan churnStep, opts.objects)
	for i := range opts.objects {
		s := churnStep{index: i, remove: rng.IntN(3) == 0}
		if rng.IntN(2) == 0 {
			s.patches = 1 + rng.IntN(4)
		}
		steps <- s
	}
	close(steps)
	if opts.done == nil {
		opts.done = new(atomic.Int64)
	}

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range opts.workers {
		wg.Go(func() {
			for s := range steps {
				if err := churnOne(ctx, ri, k, opts, s); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func churnOne(ctx context.Context, ri dynamic.ResourceInterface, k churnKind, opts churnOptions, s churnStep) error {
	name := fmt.Sprintf("%s%03d", opts.prefix, s.index)
	obj := &unstructured.Unstructured{Object: k.object(name)}
	obj.SetName(name)
	obj.SetLabels(opts.labels)
	if _, err := ri.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating %s %s: %w", k.resource, name, err)
	}
	opts.done.Add(1)
	for i := range s.patches {
		patch := fmt.Appendf(nil, `{"metadata":{"labels":{"krm-churn":"%d"},"annotations":{"krm.test/churn":"patch %d"}}}`, i+1, i+1)
		if _, err := ri.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("patching %s %s: %w", k.resource, name, err)
		}
		opts.done.Add(1)
	}
	if s.remove {
		if err := ri.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("deleting %s %s: %w", k.resource, name, err)
		}
		opts.done.Add(1)
	}
	return nil
}

// TestChurnMatchesList runs a workload of creates, patches and deletes on
// each default resource while the agent watches it, then checks that the
// agent's views equal a LIST from kube-apiserver, object by object. The
// agent LISTs only once, at start, so the watch alone keeps it right.
func TestChurnMatchesList(t *testing.T) {
	c := clustertest.Get(t)
	for _, k := range []churnKind{pods, deployments, persistentVolumeClaims, services, ingresses, nodes} {
		t.Run(k.resource, func(t *testing.T) {
			t.Parallel()
			cfg, err := c.RESTConfig()
			if err != nil {
				t.Fatal(err)
			}
			dyn, err := dynamic.NewForConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			run := utilrand.String(6)
			labels := map[string]string{"krm-test": "churn-" + run}
			selector := "krm-test=churn-" + run
			acfg := agent.Config{RESTConfig: cfg, Resources: []string{k.resource}, VerifyInterval: time.Hour}
			var ri dynamic.ResourceInterface
			if k.namespaced {
				ns := clustertest.Namespace(t, c)
				ri = dyn.Resource(k.gvr).Namespace(ns)
				acfg.Namespace = ns
			} else {
				// Cluster-scoped objects are shared with every other test:
				// the label selector keeps the agent to this test's own.
				ri = dyn.Resource(k.gvr)
				acfg.LabelSelector = selector
				t.Cleanup(func() {
					if err := ri.DeleteCollection(context.Background(), metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: selector}); err != nil {
						t.Errorf("deleting this test's %s: %v", k.resource, err)
					}
				})
			}

			ag := startAgent(t, acfg)
			if err := churn(t.Context(), t, ri, k, churnOptions{prefix: "churn-" + run + "-", labels: labels, objects: 200, workers: 4}); err != nil {
				t.Fatal(err)
			}
			waitMatchesList(t, 30*time.Second, ag.client, k.resource, ri, selector, "aggregated", "streamed")

			st := resourceStatus(t, ag.client, k.resource)
			if st.Events == 0 {
				t.Errorf("status of %s counts no watch events: %+v", k.resource, st)
			}
			// Only a 410 makes the agent LIST again before the hour is up,
			// and another test's etcd compaction could cause one.
			if gone := counterValue(t, ag.reg, "krm_watch_restarts_total", map[string]string{"resource": k.resource, "reason": "gone"}); gone == 0 && st.Verifications != 1 {
				t.Errorf("status of %s counts %d LISTs, want only the first: the views must come from the watch", k.resource, st.Verifications)
			}
		})
	}
}

// TestWatchListVerifies verifies with WatchList (sendInitialEvents) while
// the stream misses events: each verification reads the whole collection
// from the watch, judges drift and repairs the views, as a LIST does, and
// no LIST is made.
func TestWatchListVerifies(t *testing.T) {
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	cfg, cs, ri := configMapClients(t, c, ns)
	proxy := watchproxy.New(t, cfg, dropMisses)
	const interval = 2 * time.Second
	ag := startAgent(t, agent.Config{
		RESTConfig: proxy.RESTConfig(), Resources: []string{"configmaps"}, Namespace: ns,
		VerifyInterval: interval, VerifyWith: agent.VerifyWatchList,
	})
	ctx := t.Context()
	w := newConfigMapWriter(cs, ns)
	for i := range 20 {
		if err := w.create(ctx, fmt.Sprint("normal-", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.create(ctx, "miss-add-0"); err != nil {
		t.Fatal(err)
	}
	if err := churn(ctx, t, ri, configMaps, churnOptions{prefix: "wl-", objects: 100, workers: 4}); err != nil {
		t.Fatal(err)
	}
	waitMatchesList(t, 30*time.Second, ag.client, "configmaps", ri, "", "aggregated", "streamed", "verified")
	eventually(t, 90*time.Second, "the missed ADDED to be judged (at the next event or bookmark past the verification)", func(ctx context.Context) (string, error) {
		if err := w.update(ctx, "normal-0"); err != nil {
			return "", err
		}
		if st := resourceStatus(t, ag.client, "configmaps"); st.TotalDrift.MissedAdded != 1 {
			return fmt.Sprintf("drift %+v, %d pending", st.TotalDrift, st.DriftPending), nil
		}
		return "", nil
	})
	st := resourceStatus(t, ag.client, "configmaps")
	if st.TotalDrift != (api.DriftCounts{MissedAdded: 1}) {
		t.Errorf("drift = %+v, want the one missed ADDED", st.TotalDrift)
	}
	if st.Verifications < 2 {
		t.Errorf("%d verifications, want several", st.Verifications)
	}
	if n := proxy.PagedLists(); n != 0 {
		t.Errorf("the agent made %d LISTs; with WatchList it should make none", n)
	}
}
