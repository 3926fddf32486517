package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/krm-project/krm/pkg/client"
	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

// defaultResources are what krm-agent watches without --resources.
var defaultResources = []string{"pods", "deployments", "persistentvolumeclaims", "services", "ingresses", "nodes"}

// TestAgent runs the real krm-agent against the local cluster.
func TestAgent(t *testing.T) {
	c := clustertest.Get(t)
	bin := buildAgent(t)

	t.Run("RejectsBadFlags", func(t *testing.T) {
		t.Parallel()
		testRejectsBadFlags(t, c, bin)
	})
	t.Run("MatchesKubectl", func(t *testing.T) {
		t.Parallel()
		testMatchesKubectl(t, c, bin)
	})
	t.Run("ExitsOnSIGTERM", func(t *testing.T) {
		t.Parallel()
		testExitsOnSIGTERM(t, c, bin, false)
	})
	t.Run("ExitsOnSIGTERMWithWatchOpen", func(t *testing.T) {
		t.Parallel()
		testExitsOnSIGTERM(t, c, bin, true)
	})
}

// testRejectsBadFlags checks that mistakes in flags end the agent at once
// with a message that says what was wrong.
func testRejectsBadFlags(t *testing.T, c *cluster.State, bin string) {
	for _, tc := range []struct {
		name string
		args []string
		// want are substrings of stderr.
		want []string
	}{
		{"misspelled resource", []string{"--resources", "podz"}, []string{`"podz"`, "did you mean", "pods"}},
		{"one misspelled resource among good ones", []string{"--resources", "nodes,ingresss"}, []string{`"ingresss"`, "did you mean", "ingresses"}},
		{"unknown resource", []string{"--resources", "nosuchthing"}, []string{`"nosuchthing"`}},
		{"zero verify interval", []string{"--verify-interval", "0s"}, []string{"--verify-interval", "0s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--kubeconfig", c.Kubeconfig, "--listen", "127.0.0.1:0"}, tc.args...)
			code, stderr := runAgent(t, bin, args...)
			if code == 0 {
				t.Errorf("krm-agent %v exited 0, want a failure; stderr:\n%s", tc.args, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("krm-agent %v: stderr does not mention %q:\n%s", tc.args, w, stderr)
				}
			}
		})
	}
}

// testExitsOnSIGTERM checks that a serving agent exits 0 soon after SIGTERM,
// as it must when its pod is deleted.
func testExitsOnSIGTERM(t *testing.T, c *cluster.State, bin string, watchOpen bool) {
	p := startAgent(t, bin, "--kubeconfig", c.Kubeconfig, "--resources", "nodes", "--verify-interval", "5s")
	p.waitReady(t, 30*time.Second)
	nodes, err := p.Client.Resource(t.Context(), "nodes")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Client.List(t.Context(), nodes, client.ListOptions{}); err != nil {
		t.Fatalf("listing nodes: %v", err)
	}
	if watchOpen {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		events, _, err := p.Client.Watch(ctx, nodes, client.ListOptions{})
		if err != nil {
			t.Fatalf("watching nodes: %v", err)
		}
		// The first event proves the watch is being served.
		if ev, ok := <-events; !ok || ev.Type != "ADDED" {
			t.Fatalf("first watch event: %+v (open %v), want ADDED", ev, ok)
		}
	}
	if err := p.stop(5 * time.Second); err != nil {
		t.Fatalf("krm-agent: %v", err)
	}
}

// testMatchesKubectl creates objects of every default resource, then checks
// that the agent lists exactly what kubectl lists, object for object, before
// and after changes; that the single-object read agrees too; and that the
// verifier confirms what the stream delivered.
func testMatchesKubectl(t *testing.T, c *cluster.State, bin string) {
	ctx := t.Context()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ns := clustertest.Namespace(t, c)

	p := startAgent(t, bin, "--kubeconfig", c.Kubeconfig, "--verify-interval", "5s")
	p.waitReady(t, 30*time.Second)
	status, err := p.Client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var watched []string
	for _, r := range status.Resources {
		watched = append(watched, r.Name)
	}
	if diff := cmp.Diff(defaultResources, watched); diff != "" {
		t.Fatalf("resources watched by default (-want +got):\n%s", diff)
	}

	// Created after the agent is ready, so they reach it through its watches.
	createObjects(t, cs, ns)
	waitFor(t, 60*time.Second, "the deployments' and the standalone pod's pods to run", func() error {
		return podsRunning(ctx, cs, ns, 6)
	})
	checkAll := func(phase string, want map[string]int) {
		t.Helper()
		for _, res := range defaultResources {
			all := requireSameAsKubectl(t, c, p.Client, res, "")
			if res == "nodes" {
				for _, n := range c.Nodes {
					if !containsName(all.refs, n) {
						t.Errorf("%s: the agent's nodes lack %s", phase, n)
					}
				}
				continue
			}
			mine := requireSameAsKubectl(t, c, p.Client, res, ns)
			if n := mine.count(ns); n != want[res] {
				t.Errorf("%s: the agent and kubectl both list %d %s in %s, want %d", phase, n, res, ns, want[res])
			}
		}
	}
	checkAll("after creating", map[string]int{"pods": 6, "deployments": 2, "persistentvolumeclaims": 2, "services": 2, "ingresses": 2})
	requireSamePod(t, c, p.Client, ns, "solo")

	// Modify, scale down (pods deleted) and delete: the agent must follow.
	if _, err := cs.AppsV1().Deployments(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"replicas":1}}`), metav1.PatchOptions{}); err != nil {
		t.Fatalf("scaling deployment web: %v", err)
	}
	if _, err := cs.CoreV1().Pods(ns).Patch(ctx, "solo", types.MergePatchType, []byte(`{"metadata":{"labels":{"changed":"yes"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatalf("labelling pod solo: %v", err)
	}
	if err := cs.CoreV1().Services(ns).Delete(ctx, "worker", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting service worker: %v", err)
	}
	if err := cs.NetworkingV1().Ingresses(ns).Delete(ctx, "worker", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting ingress worker: %v", err)
	}
	if err := cs.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "scratch", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting pvc scratch: %v", err)
	}
	waitFor(t, 60*time.Second, "deployment web to scale down to one pod", func() error {
		return podsRunning(ctx, cs, ns, 4)
	})
	checkAll("after changes", map[string]int{"pods": 4, "deployments": 2, "persistentvolumeclaims": 1, "services": 1, "ingresses": 1})
	requireSamePod(t, c, p.Client, ns, "solo")

	// Every object in ns came through the watch; within a verify interval
	// (5s plus jitter and a catch-up grace) a LIST confirms each of them,
	// and that LIST finds nothing the stream missed.
	waitFor(t, 20*time.Second, "every row in "+ns+" to be verified", func() error {
		for _, res := range defaultResources[:5] {
			info, err := p.Client.Resource(ctx, res)
			if err != nil {
				return err
			}
			list, err := client.ListAs[metav1.PartialObjectMetadata](ctx, p.Client, info, client.ListOptions{Namespace: ns})
			if err != nil {
				return err
			}
			for _, o := range list.Items {
				if src := list.Freshness.Source(o.ResourceVersion); src != "verified" {
					return fmt.Errorf("%s %s/%s is %s", res, o.Namespace, o.Name, src)
				}
			}
		}
		return nil
	})
	// The first LIST judges nothing; from the second on, each one checks
	// the stream.
	waitFor(t, 20*time.Second, "a second LIST of every resource", func() error {
		status, err = p.Client.Status(ctx)
		if err != nil {
			return err
		}
		for _, r := range status.Resources {
			if r.Verifications < 2 {
				return fmt.Errorf("%s has had %d verifications", r.Name, r.Verifications)
			}
		}
		return nil
	})
	for _, r := range status.Resources {
		if !r.StreamConnected || r.LastError != "" {
			t.Errorf("%s: stream connected %v, last error %q; want true and none", r.Name, r.StreamConnected, r.LastError)
		}
		if r.TotalDrift.Total() != 0 {
			t.Errorf("%s: the LISTs found events the watch missed on a healthy cluster: %+v", r.Name, r.TotalDrift)
		}
	}
}

func containsName(refs []ref, name string) bool {
	for _, r := range refs {
		if r.Name == name {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %v", timeout, what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// podsRunning says whether ns has exactly n pods, all Running and none being
// deleted.
func podsRunning(ctx context.Context, cs kubernetes.Interface, ns string, n int) error {
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(pods.Items) != n {
		return fmt.Errorf("%d pods, want %d", len(pods.Items), n)
	}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			return fmt.Errorf("pod %s is %s (deleting: %v)", p.Name, p.Status.Phase, p.DeletionTimestamp != nil)
		}
	}
	return nil
}

// createObjects makes, in ns: deployments web (3 replicas) and worker (2),
// pvcs data and scratch, services web and worker, ingresses web and worker,
// and the standalone pod solo. The scheduler puts the pods on kwok nodes.
func createObjects(t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	ctx := t.Context()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("creating %s: %v", what, err)
		}
	}
	container := func(app string) corev1.Container {
		return corev1.Container{
			Name: app, Image: "krm-e2e/" + app + ":1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi"),
			}},
		}
	}
	for app, replicas := range map[string]int32{"web": 3, "worker": 2} {
		labels := map[string]string{"app": app}
		_, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: app, Labels: labels},
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{container(app)}},
				},
			},
		}, metav1.CreateOptions{})
		must("deployment "+app, err)

		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: app, Labels: labels},
			Spec: corev1.ServiceSpec{
				Selector: labels,
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
			},
		}
		if app == "worker" {
			svc.Spec.ClusterIP = corev1.ClusterIPNone
		}
		_, err = cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
		must("service "+app, err)

		pathType := networkingv1.PathTypePrefix
		_, err = cs.NetworkingV1().Ingresses(ns).Create(ctx, &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Name: app, Labels: labels},
			Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{
				Host: app + ".krm-e2e.test",
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
					Paths: []networkingv1.HTTPIngressPath{{
						Path: "/", PathType: &pathType,
						Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
							Name: app, Port: networkingv1.ServiceBackendPort{Name: "http"},
						}},
					}},
				}},
			}}},
		}, metav1.CreateOptions{})
		must("ingress "+app, err)
	}
	for _, name := range []string{"data", "scratch"} {
		_, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		}, metav1.CreateOptions{})
		must("pvc "+name, err)
	}
	_, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "solo", Labels: map[string]string{"app": "solo"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{container("solo")}},
	}, metav1.CreateOptions{})
	must("pod solo", err)
}
