package cluster_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

const eventTimeout = 60 * time.Second

// TestWatchEvents proves the API server, etcd and the controllers are real:
// creating, updating and deleting each default krm resource produces ADDED,
// MODIFIED and DELETED on a watch.
func TestWatchEvents(t *testing.T) {
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		gvr        schema.GroupVersionResource
		namespaced bool
		object     func(name string) map[string]any
	}{
		{
			gvr: schema.GroupVersionResource{Version: "v1", Resource: "pods"}, namespaced: true,
			object: func(name string) map[string]any {
				return map[string]any{"apiVersion": "v1", "kind": "Pod", "spec": podSpec()}
			},
		},
		{
			gvr: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, namespaced: true,
			object: func(name string) map[string]any {
				return map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "spec": map[string]any{
					"replicas": int64(2),
					"selector": map[string]any{"matchLabels": map[string]any{"app": name}},
					"template": map[string]any{
						"metadata": map[string]any{"labels": map[string]any{"app": name}},
						"spec":     podSpec(),
					},
				}}
			},
		},
		{
			gvr: schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}, namespaced: true,
			object: func(name string) map[string]any {
				return map[string]any{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "spec": map[string]any{
					"accessModes": []any{"ReadWriteOnce"},
					"resources":   map[string]any{"requests": map[string]any{"storage": "1Gi"}},
				}}
			},
		},
		{
			gvr: schema.GroupVersionResource{Version: "v1", Resource: "services"}, namespaced: true,
			object: func(name string) map[string]any {
				return map[string]any{"apiVersion": "v1", "kind": "Service", "spec": map[string]any{
					"selector": map[string]any{"app": name},
					"ports":    []any{map[string]any{"port": int64(80)}},
				}}
			},
		},
		{
			gvr: schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "ingresses"}, namespaced: true,
			object: func(name string) map[string]any {
				return map[string]any{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "spec": map[string]any{
					"defaultBackend": map[string]any{"service": map[string]any{"name": name, "port": map[string]any{"number": int64(80)}}},
				}}
			},
		},
		{
			gvr: schema.GroupVersionResource{Version: "v1", Resource: "nodes"},
			object: func(name string) map[string]any {
				return map[string]any{"apiVersion": "v1", "kind": "Node"}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.gvr.Resource, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			name := "proof-" + rand.String(6)
			res := dynamic.ResourceInterface(dc.Resource(tc.gvr))
			if tc.namespaced {
				res = dc.Resource(tc.gvr).Namespace(ns)
			}
			list, err := res.List(ctx, metav1.ListOptions{Limit: 1})
			if err != nil {
				t.Fatalf("listing %s: %v", tc.gvr.Resource, err)
			}
			w, err := res.Watch(ctx, metav1.ListOptions{
				ResourceVersion: list.GetResourceVersion(),
				FieldSelector:   fields.OneTermEqualSelector("metadata.name", name).String(),
			})
			if err != nil {
				t.Fatalf("watching %s: %v", tc.gvr.Resource, err)
			}
			defer w.Stop()

			obj := &unstructured.Unstructured{Object: tc.object(name)}
			obj.SetName(name)
			if _, err := res.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating %s %s: %v", tc.gvr.Resource, name, err)
			}
			t.Cleanup(func() { _ = res.Delete(context.Background(), name, metav1.DeleteOptions{}) })
			expectEvent(t, w, watch.Added, nil)

			patch := []byte(`{"metadata":{"labels":{"krm.test/step":"updated"}}}`)
			if _, err := res.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				t.Fatalf("updating %s %s: %v", tc.gvr.Resource, name, err)
			}
			expectEvent(t, w, watch.Modified, func(u *unstructured.Unstructured) bool {
				return u.GetLabels()["krm.test/step"] == "updated"
			})

			if tc.gvr.Resource == "deployments" {
				expectDeploymentPodsRunning(t, c, ns, name, 2)
			}

			zero := int64(0)
			if err := res.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
				t.Fatalf("deleting %s %s: %v", tc.gvr.Resource, name, err)
			}
			expectEvent(t, w, watch.Deleted, nil)
		})
	}
}

func podSpec() map[string]any {
	return map[string]any{"containers": []any{map[string]any{"name": "app", "image": "krm.test/app:1"}}}
}

// expectEvent reads w until an event of type typ whose object satisfies ok
// (when given) arrives. Other events are skipped: controllers and kwok update
// objects too.
func expectEvent(t *testing.T, w watch.Interface, typ watch.EventType, ok func(*unstructured.Unstructured) bool) {
	t.Helper()
	timeout := time.After(eventTimeout)
	var seen []string
	for {
		select {
		case ev, open := <-w.ResultChan():
			if !open {
				t.Fatalf("watch closed while waiting for %s; saw %v", typ, seen)
			}
			seen = append(seen, string(ev.Type))
			if ev.Type == watch.Error {
				t.Fatalf("watch error while waiting for %s: %v", typ, ev.Object)
			}
			u, isU := ev.Object.(*unstructured.Unstructured)
			if ev.Type == typ && isU && (ok == nil || ok(u)) {
				return
			}
		case <-timeout:
			t.Fatalf("no %s event within %s; saw %v", typ, eventTimeout, seen)
		}
	}
}

// expectDeploymentPodsRunning checks the controller-manager, the scheduler
// and kwok together: the deployment's pods exist, are bound to kwok nodes
// and reach Running.
func expectDeploymentPodsRunning(t *testing.T, c *cluster.State, ns, app string, want int) {
	t.Helper()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(eventTimeout)
	for {
		pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			t.Fatal(err)
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName != "" {
				running++
			}
		}
		if running == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment %s: %d of %d pods Running after %s", app, running, want, eventTimeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestNodesReady checks kwok made the configured nodes Ready.
func TestNodesReady(t *testing.T) {
	c := clustertest.Get(t)
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range c.Nodes {
		n, err := cs.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !cluster.NodeReady(n) {
			t.Errorf("node %s is not Ready: %+v", name, n.Status.Conditions)
		}
	}
	if len(c.Nodes) == 0 {
		t.Error("the cluster has no nodes")
	}
}

// TestPortForward proves a pod on a kwok node reaches a process on loopback,
// through client-go's port-forward and through kubectl port-forward.
func TestPortForward(t *testing.T) {
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	ctx := t.Context()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from 127.0.0.1")
	}))
	defer srv.Close()
	localPort, err := strconv.Atoi(mustURL(t, srv.URL).Port())
	if err != nil {
		t.Fatal(err)
	}

	pod := runningPod(t, c, ns, "web")
	if err := c.ForwardPodPort(ctx, ns, pod, 8080, localPort); err != nil {
		t.Fatal(err)
	}

	t.Run("client-go", func(t *testing.T) {
		// kwok learns of the PortForward object through a watch; retry until
		// it has.
		eventually(t, 30*time.Second, func() error {
			fctx, cancel := context.WithCancel(ctx)
			defer cancel()
			port, err := c.PortForward(fctx, ns, pod, 8080)
			if err != nil {
				return err
			}
			return expectBody(fmt.Sprintf("http://127.0.0.1:%d/", port), "hello from 127.0.0.1")
		})
	})

	t.Run("kubectl", func(t *testing.T) {
		eventually(t, 30*time.Second, func() error {
			fctx, cancel := context.WithCancel(ctx)
			defer cancel()
			cmd := exec.CommandContext(fctx, c.Kubectl, "port-forward", "-n", ns, "pod/"+pod, ":8080", "--address=127.0.0.1")
			cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)
			out, err := cmd.StdoutPipe()
			if err != nil {
				return err
			}
			if err := cmd.Start(); err != nil {
				return err
			}
			defer func() { _ = cmd.Wait() }()
			defer cancel()
			line := make([]byte, 256)
			n, err := out.Read(line)
			if err != nil {
				return fmt.Errorf("kubectl port-forward printed nothing: %w", err)
			}
			m := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 8080`).FindSubmatch(line[:n])
			if m == nil {
				return fmt.Errorf("unexpected kubectl output %q", line[:n])
			}
			go func() { _, _ = io.Copy(io.Discard, out) }()
			return expectBody("http://127.0.0.1:"+string(m[1])+"/", "hello from 127.0.0.1")
		})
	})
}

func runningPod(t *testing.T, c *cluster.State, ns, name string) string {
	t.Helper()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "web", Image: "krm.test/web:1",
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
		}}},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, eventTimeout, func() error {
		p, err := cs.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("pod %s is %s", name, p.Status.Phase)
		}
		return nil
	})
	return name
}

func expectBody(u, want string) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if string(body) != want {
		return fmt.Errorf("GET %s = %q, want %q", u, body, want)
	}
	return nil
}

func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestRedisPing proves the harness's Redis answers.
func TestRedisPing(t *testing.T) {
	c := clustertest.Get(t)
	opts, err := redis.ParseURL(c.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	got, err := rdb.Ping(t.Context()).Result()
	if err != nil {
		t.Fatalf("PING %s: %v", c.RedisURL, err)
	}
	if got != "PONG" {
		t.Fatalf("PING = %q, want PONG", got)
	}
}

// TestInfluxWriteQuery proves InfluxDB accepts a write through the v2 API and
// returns it from a Flux query, as krm's delay writer and reader will.
func TestInfluxWriteQuery(t *testing.T) {
	c := clustertest.Get(t)
	ctx := t.Context()
	client := influxdb2.NewClient(c.InfluxURL, "")
	defer client.Close()
	id := rand.String(8)
	at := time.Now().Truncate(time.Millisecond)
	p := influxdb2.NewPoint("krm_cluster_proof", map[string]string{"id": id}, map[string]any{"value": 42.5}, at)
	if err := client.WriteAPIBlocking("", "krm").WritePoint(ctx, p); err != nil {
		t.Fatalf("writing to %s: %v", c.InfluxURL, err)
	}
	q := fmt.Sprintf(`from(bucket: "krm") |> range(start: -1h) |> filter(fn: (r) => r._measurement == "krm_cluster_proof" and r.id == %q)`, id)
	res, err := client.QueryAPI("").Query(ctx, q)
	if err != nil {
		t.Fatalf("querying %s: %v", c.InfluxURL, err)
	}
	var got []float64
	for res.Next() {
		if v, ok := res.Record().Value().(float64); ok && res.Record().Field() == "value" {
			got = append(got, v)
		}
	}
	if res.Err() != nil {
		t.Fatal(res.Err())
	}
	if len(got) != 1 || got[0] != 42.5 {
		t.Fatalf("query returned %v, want [42.5]", got)
	}
}
