package render_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/krm-project/krm/pkg/render"
	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

var (
	podsGVR        = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	deploymentsGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	claimsGVR      = schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}
	servicesGVR    = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	ingressesGVR   = schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "ingresses"}
	nodesGVR       = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}
)

// variant is one set of kubectl get flags and the options that ask krm for
// the same table.
type variant struct {
	name          string
	args          []string
	opts          render.TableOptions
	allNamespaces bool
}

var namespacedVariants = []variant{
	{name: "default"},
	{name: "wide", args: []string{"-o", "wide"}, opts: render.TableOptions{Wide: true}},
	{name: "no-headers", args: []string{"--no-headers"}, opts: render.TableOptions{NoHeaders: true}},
	{name: "show-labels", args: []string{"--show-labels"}, opts: render.TableOptions{ShowLabels: true}},
	{name: "label-columns", args: []string{"-L", "app,tier"}, opts: render.TableOptions{LabelColumns: []string{"app", "tier"}}},
	{name: "all-namespaces", args: []string{"-A"}, opts: render.TableOptions{WithNamespace: true}, allNamespaces: true},
	{
		name: "all-namespaces-wide-labels", args: []string{"-A", "-o", "wide", "--show-labels", "-L", "app"},
		opts: render.TableOptions{WithNamespace: true, Wide: true, ShowLabels: true, LabelColumns: []string{"app"}}, allNamespaces: true,
	},
	{name: "all-namespaces-no-headers", args: []string{"-A", "--no-headers"}, opts: render.TableOptions{WithNamespace: true, NoHeaders: true}, allNamespaces: true},
}

var nodeVariants = []variant{
	{name: "default"},
	{name: "wide", args: []string{"-o", "wide"}, opts: render.TableOptions{Wide: true}},
	{name: "no-headers-wide", args: []string{"--no-headers", "-o", "wide"}, opts: render.TableOptions{NoHeaders: true, Wide: true}},
	{name: "show-labels", args: []string{"--show-labels"}, opts: render.TableOptions{ShowLabels: true}},
	{name: "label-columns", args: []string{"-L", "kubernetes.io/hostname,type,node-role.kubernetes.io/control-plane"}, opts: render.TableOptions{LabelColumns: []string{"kubernetes.io/hostname", "type", "node-role.kubernetes.io/control-plane"}}},
	// Nodes are cluster-scoped: -A adds no NAMESPACE column.
	{name: "all-namespaces", args: []string{"-A"}, opts: render.TableOptions{WithNamespace: true}},
}

// TestMatchesKubectl prints a varied workload with the real kubectl and with
// render, and wants the same bytes.
func TestMatchesKubectl(t *testing.T) {
	c := clustertest.Get(t)
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ns := clustertest.Namespace(t, c)
	// kube-apiserver lists -A in storage key order, where "<ns>-b/x" comes
	// before "<ns>/x"; a second namespace named so checks render does too.
	nsB := ns + "-b"
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsB}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), nsB, metav1.DeleteOptions{}) })
	waitForServiceAccount(t, c, nsB)

	w := &workload{t: t, cs: cs, ns: ns, mark: ns}
	t.Cleanup(w.release)
	w.pods()
	w.deployments()
	w.services()
	w.ingresses()
	w.claims()
	b := &workload{t: t, cs: cs, ns: nsB, mark: ns}
	one := corev1.PodSpec{Containers: []corev1.Container{container("app")}}
	b.pod("kwok-running", map[string]string{"app": "web"}, one)
	b.deployment("web", 1, nil, one)
	b.services()
	b.ingresses()
	b.claim("standard", nil, corev1.PersistentVolumeClaimSpec{StorageClassName: ptrTo("standard")})

	namespaced := []schema.GroupVersionResource{podsGVR, deploymentsGVR, claimsGVR, servicesGVR, ingressesGVR}
	waitForWorkload(t, cs, []string{ns, nsB})
	settle(t, dyn, namespaced, []string{ns, nsB})

	selector := testLabel + "=" + ns
	for _, gvr := range namespaced {
		for _, v := range namespacedVariants {
			t.Run(gvr.Resource+"/"+v.name, func(t *testing.T) {
				if v.allNamespaces {
					compare(t, c, dyn, gvr, "", selector, v)
				} else {
					compare(t, c, dyn, gvr, ns, "", v)
				}
			})
		}
	}
	for _, v := range nodeVariants {
		t.Run("nodes/"+v.name, func(t *testing.T) { compare(t, c, dyn, nodesGVR, "", "", v) })
	}
	// Several resources in one command: one table each, names prefixed
	// with the kind, a blank line between the tables unless --no-headers.
	several := []schema.GroupVersionResource{deploymentsGVR, servicesGVR, podsGVR}
	for _, v := range []variant{
		{name: "default", opts: render.TableOptions{WithKind: true}},
		{name: "no-headers", args: []string{"--no-headers"}, opts: render.TableOptions{WithKind: true, NoHeaders: true}},
		{name: "all-namespaces-wide", args: []string{"-A", "-o", "wide"}, opts: render.TableOptions{WithKind: true, WithNamespace: true, Wide: true}, allNamespaces: true},
	} {
		t.Run("deployments,services,pods/"+v.name, func(t *testing.T) {
			if v.allNamespaces {
				compareMany(t, c, dyn, several, "", selector, v)
			} else {
				compareMany(t, c, dyn, several, ns, "", v)
			}
		})
	}
}

// compare runs kubectl get and renders the same objects, listed around it.
// kube-apiserver computes AGE (and "(5m ago)") with its own clock while it
// builds the table, at some instant between t0 and t1. Ages are whole
// seconds since whole-second timestamps, so they change only when the clock
// passes a whole second: render once per second in [t0, t1] and kubectl's
// output must be one of those, byte for byte. Nothing is masked.
func compare(t *testing.T, c *cluster.State, dyn dynamic.Interface, gvr schema.GroupVersionResource, namespace, selector string, v variant) {
	t.Helper()
	compareMany(t, c, dyn, []schema.GroupVersionResource{gvr}, namespace, selector, v)
}

// compareMany is compare for kubectl get with several resources, such as
// kubectl get deployments,services.
func compareMany(t *testing.T, c *cluster.State, dyn dynamic.Interface, gvrs []schema.GroupVersionResource, namespace, selector string, v variant) {
	t.Helper()
	var resources []string
	for _, gvr := range gvrs {
		resources = append(resources, gvr.GroupResource().String())
	}
	args := []string{"--kubeconfig", c.Kubeconfig, "get", strings.Join(resources, ",")}
	if namespace != "" {
		args = append(args, "-n", namespace)
	}
	if selector != "" {
		args = append(args, "-l", selector)
	}
	args = append(args, v.args...)
	command := "kubectl " + strings.Join(args[2:], " ")

	var lastDiff string
	for attempt := 1; attempt <= 10; attempt++ {
		before := listAll(t, dyn, gvrs, namespace, selector)
		t0 := time.Now()
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(t.Context(), c.Kubectl, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", command, err, stderr.String())
		}
		t1 := time.Now()
		after := listAll(t, dyn, gvrs, namespace, selector)
		if len(after.Items) == 0 {
			t.Fatalf("%s: no objects to compare", command)
		}
		if !sameObjects(before, after) {
			// Something changed while kubectl ran; its table may show
			// either version.
			time.Sleep(200 * time.Millisecond)
			continue
		}
		got := stdout.String()
		var candidates []string
		for now := t0.Truncate(time.Second); !now.After(t1); now = now.Add(time.Second) {
			candidates = append(candidates, renderAt(t, after, v.opts, now))
		}
		for _, want := range candidates {
			if got == want {
				t.Logf("%s (attempt %d, %d candidates):\n%s", command, attempt, len(candidates), got)
				return
			}
		}
		lastDiff = cmp.Diff(got, candidates[0])
		if len(candidates) == 1 {
			break // no second ticked: the difference is real
		}
	}
	if lastDiff == "" {
		t.Fatalf("%s: the objects kept changing while kubectl ran", command)
	}
	t.Errorf("%s and render differ (-kubectl +render):\n%s", command, lastDiff)
}

func renderAt(t *testing.T, list *unstructured.UnstructuredList, opts render.TableOptions, now time.Time) string {
	t.Helper()
	opts.Now = func() time.Time { return now }
	var buf bytes.Buffer
	p := &render.TablePrinter{Options: opts}
	if err := p.PrintObj(list.DeepCopy(), &buf); err != nil {
		t.Fatalf("PrintObj: %v", err)
	}
	return buf.String()
}

func listAll(t *testing.T, dyn dynamic.Interface, gvrs []schema.GroupVersionResource, namespace, selector string) *unstructured.UnstructuredList {
	t.Helper()
	all := &unstructured.UnstructuredList{}
	for _, gvr := range gvrs {
		all.Items = append(all.Items, list(t, dyn, gvr, namespace, selector).Items...)
	}
	return all
}

func list(t *testing.T, dyn dynamic.Interface, gvr schema.GroupVersionResource, namespace, selector string) *unstructured.UnstructuredList {
	t.Helper()
	var ri dynamic.ResourceInterface = dyn.Resource(gvr)
	if namespace != "" {
		ri = dyn.Resource(gvr).Namespace(namespace)
	}
	l, err := ri.List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatalf("listing %s: %v", gvr.Resource, err)
	}
	return l
}

func versions(l *unstructured.UnstructuredList) []string {
	var v []string
	for _, o := range l.Items {
		v = append(v, fmt.Sprintf("%s/%s@%s", o.GetNamespace(), o.GetName(), o.GetResourceVersion()))
	}
	return v
}

func sameObjects(a, b *unstructured.UnstructuredList) bool {
	return cmp.Equal(versions(a), versions(b))
}

// waitForWorkload waits until kwok runs every pod it can, the scheduler has
// given up on the others and the deployments have counted their pods. The
// cluster is shared: another test's thousands of pods can keep the scheduler
// busy for a while.
func waitForWorkload(t *testing.T, cs kubernetes.Interface, namespaces []string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		pending := ""
		for _, ns := range namespaces {
			pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range pods.Items {
				if !podSettled(&p) {
					pending = "pod " + ns + "/" + p.Name
				}
			}
			deployments, err := cs.AppsV1().Deployments(ns).List(t.Context(), metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range deployments.Items {
				want := *d.Spec.Replicas
				ready := d.Status.AvailableReplicas == want
				if d.Spec.Template.Spec.NodeSelector != nil {
					ready = d.Status.Replicas == want
				}
				if d.Status.ObservedGeneration < d.Generation || !ready {
					pending = "deployment " + ns + "/" + d.Name
				}
			}
		}
		if pending == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not settled after 5 minutes", pending)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func podSettled(p *corev1.Pod) bool {
	switch {
	case p.Spec.NodeName == "krm-no-such-node":
		return true
	case p.Spec.NodeSelector != nil:
		return hasCondition(p, corev1.PodScheduled, corev1.ConditionFalse)
	default:
		return p.Status.Phase == corev1.PodRunning && hasCondition(p, corev1.PodReady, corev1.ConditionTrue)
	}
}

func hasCondition(p *corev1.Pod, t corev1.PodConditionType, s corev1.ConditionStatus) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status == s
		}
	}
	return false
}

// settle waits until controllers, the scheduler and kwok are done with the
// workload: no object changed for three seconds.
func settle(t *testing.T, dyn dynamic.Interface, gvrs []schema.GroupVersionResource, namespaces []string) {
	t.Helper()
	snapshot := func() []string {
		var all []string
		for _, gvr := range gvrs {
			for _, ns := range namespaces {
				all = append(all, versions(list(t, dyn, gvr, ns, ""))...)
			}
		}
		return all
	}
	deadline := time.Now().Add(90 * time.Second)
	last, since := snapshot(), time.Now()
	for time.Since(since) < 3*time.Second {
		if time.Now().After(deadline) {
			t.Fatal("the workload kept changing for 90s")
		}
		time.Sleep(250 * time.Millisecond)
		if now := snapshot(); !cmp.Equal(now, last) {
			last, since = now, time.Now()
		}
	}
}

func waitForServiceAccount(t *testing.T, c *cluster.State, ns string) {
	t.Helper()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Get(t.Context(), "default", metav1.GetOptions{}); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("namespace %s has no default ServiceAccount: %v", ns, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMatchesKubectlAcrossPages checks a list longer than kubectl's 500-object
// pages, whose later names are wider than the first page's: kubectl lays out
// each page on its own rows, and so must render.
func TestMatchesKubectlAcrossPages(t *testing.T) {
	c := clustertest.Get(t)
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ns := clustertest.Namespace(t, c)
	w := &workload{t: t, cs: cs, ns: ns, mark: ns}
	backend := &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}
	for i := range 505 {
		name := fmt.Sprintf("a-%03d", i)
		if i >= 500 {
			name = fmt.Sprintf("z-a-much-longer-name-than-the-first-page-has-%d", i)
		}
		w.ingress(name, nil, networkingv1.IngressSpec{DefaultBackend: backend}, nil)
	}
	for _, v := range []variant{
		{name: "default"},
		{name: "no-headers", args: []string{"--no-headers"}, opts: render.TableOptions{NoHeaders: true}},
		{name: "chunk-size-0", args: []string{"--chunk-size=0"}, opts: render.TableOptions{ChunkSize: -1}},
		{name: "chunk-size-100", args: []string{"--chunk-size=100", "--show-labels"}, opts: render.TableOptions{ChunkSize: 100, ShowLabels: true}},
	} {
		t.Run(v.name, func(t *testing.T) { compare(t, c, dyn, ingressesGVR, ns, "", v) })
	}
}
