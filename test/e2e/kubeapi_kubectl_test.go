package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// kubectlPair runs the cluster's own, unmodified kubectl twice: against
// kube-apiserver, and through a kubeconfig whose server is the agent.
type kubectlPair struct {
	api, agent *plugin
}

// newKubectlPair writes a kubeconfig for agentURL (plain http, no
// credentials) and gives both kubectls a discovery cache of this test's
// own, so every run discovers afresh what each server lists.
func newKubectlPair(t *testing.T, c *cluster.State, agentURL string) kubectlPair {
	t.Helper()
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "agent.kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: krm-agent
  cluster:
    server: %s
users:
- name: anonymous
  user: {}
contexts:
- name: krm-agent
  context:
    cluster: krm-agent
    user: anonymous
current-context: krm-agent
`, agentURL)
	if err := os.WriteFile(kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	api := pluginWithEnv(c, "KUBECACHEDIR="+filepath.Join(dir, "cache"))
	return kubectlPair{api: api, agent: api.withKubeconfig(kubeconfig)}
}

// same runs `kubectl args…` against kube-apiserver, then through the
// agent, until both exit alike and print the same stdout and stderr. The
// one allowance is sameOutput's: an AGE cell that the clock moved on between
// the two runs. The agent follows the cluster through a watch, so a
// difference gets up to 30s to go away. It returns the agent's result.
func (k kubectlPair) same(t *testing.T, args ...string) result {
	t.Helper()
	return untilSame(t, "kube-apiserver", "agent", 500*time.Millisecond, func() (result, result) {
		return k.api.run(t, args...), k.agent.run(t, args...)
	}, func(problems string) string {
		return fmt.Sprintf("kubectl %s through the agent never printed what it prints against kube-apiserver within 30s; last difference:\n%s", strings.Join(args, " "), problems)
	})
}

// kubectlKind is one resource the test reads through the agent.
type kubectlKind struct {
	resource string // as typed on kubectl's command line
	name     string // an object of it, labelled app=<name>
	// fieldSelectors are those the resource supports beyond
	// metadata.name and metadata.namespace.
	fieldSelectors []string
}

// kubectlGetArgs are the `kubectl get` command lines compared for a
// namespaced kind k in ns; mark is a label only this test's objects carry.
func kubectlGetArgs(k kubectlKind, ns, mark string) [][]string {
	get := func(args ...string) []string { return append([]string{"get", k.resource}, args...) }
	all := [][]string{
		get("-n", ns),
		get("-n", ns, "-o", "wide"),
		get("-n", ns, "-o", "json"),
		get("-n", ns, "-o", "yaml"),
		get("-n", ns, "-o", "name"),
		get("-n", ns, "-o", "custom-columns=NAME:.metadata.name,RV:.metadata.resourceVersion,UID:.metadata.uid"),
		get("-n", ns, "--show-labels"),
		get("-n", ns, "--server-print=false"),
		get("-n", ns, "-l", "app="+k.name),
		get("-n", ns, "-l", "app="+k.name, "-o", "wide"),
		get("-n", ns, "-l", "app notin ("+k.name+")"),
		get("-n", ns, "-l", "!app"),
		get("-n", ns, "-l", "app="+k.name+","+mark),
		get("-n", ns, "--field-selector", "metadata.name="+k.name),
		get("-n", ns, "--field-selector", "metadata.name!="+k.name),
		get("-n", ns, "--field-selector", "metadata.namespace="+ns),
		get("-A", "-l", mark),
		get("-A", "-l", mark, "-o", "wide"),
		get("-A", "-l", mark, "--field-selector", "metadata.namespace="+ns),
		get("-n", ns, "--chunk-size", "1"),
		get("-n", ns, "--chunk-size", "1", "-o", "json"),
		get("-A", "-l", mark, "--chunk-size", "1"),
		get(k.name, "-n", ns),
		get(k.name, "-n", ns, "-o", "wide"),
		get(k.name, "-n", ns, "-o", "json"),
		get(k.name, "-n", ns, "-o", "yaml"),
		get("missing", "-n", ns),
		get(k.name, "missing", "-n", ns),
	}
	for _, fs := range k.fieldSelectors {
		all = append(all, get("-n", ns, "--field-selector", fs), get("-n", ns, "--field-selector", fs, "-o", "wide"))
	}
	return all
}

// TestKubectlThroughAgent checks that kubectl v1.37, pointed at the agent
// by a kubeconfig, prints byte for byte what it prints against
// kube-apiserver (AGE aside) for the six default kinds, nodes and a custom
// resource with printer columns, in every output format, with selectors,
// chunking and across namespaces; that discovery lists exactly the cached
// resources, read-only; that the agent reports the cluster's version; and
// that writes through it fail and change nothing.
func TestKubectlThroughAgent(t *testing.T) {
	c := clustertest.Get(t)
	ctx := t.Context()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ns := clustertest.Namespace(t, c)
	suffix := rand.String(6)
	mark := "kubectl-e2e=" + suffix
	widgets, short := createKubectlWidgetCRD(t, c, suffix)

	resources := []string{"pods", "deployments", "persistentvolumeclaims", "services", "ingresses", "nodes", widgets}
	agent := startAgent(t, buildAgent(t), "--kubeconfig", c.Kubeconfig, "--resources", strings.Join(resources, ","), "--verify-interval", "5s")
	agent.waitReady(t, 60*time.Second)
	k := newKubectlPair(t, c, agent.URL)

	// Made after the agent is ready, so they reach it through its watches.
	createKubectlObjects(t, c, cs, ns, suffix, widgets)
	waitFor(t, 90*time.Second, "the objects in "+ns+" to settle", func() error {
		return kubectlObjectsSettled(ctx, cs, ns)
	})
	solo, err := cs.CoreV1().Pods(ns).Get(ctx, "solo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "kubectl through the agent to list the pods in "+ns, func() error {
		want := "pod/solo\npod/stuck\n"
		got := k.agent.run(t, "get", "pods", "-n", ns, "-o", "name", "-l", "app in (solo,stuck)")
		if got.code != 0 || got.stdout != want {
			return fmt.Errorf("want stdout %q:\n%s", want, got)
		}
		return nil
	})

	t.Run("get", func(t *testing.T) {
		kinds := []kubectlKind{
			{resource: "pods", name: "solo", fieldSelectors: []string{
				"spec.nodeName=" + solo.Spec.NodeName,
				"spec.nodeName=",
				"status.phase=Running",
				"status.phase=Pending",
				"status.phase!=Running,metadata.name!=solo",
				"spec.restartPolicy=Always",
			}},
			{resource: "deployments", name: "web"},
			{resource: "persistentvolumeclaims", name: "data"},
			{resource: "services", name: "web", fieldSelectors: []string{"spec.clusterIP=None", "spec.type=ExternalName"}},
			{resource: "ingresses", name: "web"},
			{resource: widgets, name: "w0"},
		}
		for _, kind := range kinds {
			t.Run(kind.resource, func(t *testing.T) {
				t.Parallel()
				for _, args := range kubectlGetArgs(kind, ns, mark) {
					k.same(t, args...)
				}
			})
		}
		t.Run("nodes", func(t *testing.T) {
			t.Parallel()
			node := c.Nodes[0]
			for _, args := range [][]string{
				{"get", "nodes"},
				{"get", "nodes", "-o", "wide"},
				{"get", "nodes", "-o", "name"},
				{"get", "nodes", "-o", "json"},
				{"get", "nodes", "--show-labels"},
				{"get", "nodes", "-l", "type=kwok"},
				{"get", "nodes", "-l", "kubernetes.io/hostname=" + node},
				{"get", "nodes", "--field-selector", "metadata.name=" + node},
				{"get", "nodes", "--field-selector", "spec.unschedulable=false"},
				{"get", "nodes", "--chunk-size", "1"},
				{"get", "nodes", "-A"},
				{"get", "nodes", node},
				{"get", "nodes", node, "-o", "yaml"},
				{"get", "nodes", "missing"},
			} {
				k.same(t, args...)
			}
		})
		t.Run("short names and several kinds", func(t *testing.T) {
			t.Parallel()
			for _, args := range [][]string{
				{"get", "po,deploy,svc,ing,pvc", "-n", ns},
				{"get", "po,deploy,svc,ing,pvc", "-n", ns, "-o", "name"},
				{"get", "pods,services", "-n", ns, "-l", "app=web", "--show-kind"},
				{"get", "deployment/web", "pod/solo", "service/ext", "-n", ns},
				{"get", short, "-n", ns},
				{"get", "widget", "-n", ns, "-o", "wide"},
				{"get", "pod/solo", "-n", ns, "-o", "jsonpath={.metadata.uid} {.spec.nodeName} {.status.phase}"},
				{"get", "no", "-l", "type=kwok", "-o", "name"},
			} {
				k.same(t, args...)
			}
		})
		t.Run("category all", func(t *testing.T) {
			t.Parallel()
			// kube-apiserver's "all" holds replicasets too, which the agent
			// does not cache: through the agent it is its cached members.
			deadline := time.Now().Add(30 * time.Second)
			for {
				want := k.api.run(t, "get", "pods,services,deployments", "-n", ns, "-o", "name")
				got := k.agent.run(t, "get", "all", "-n", ns, "-o", "name")
				if got.code == 0 && got.stdout == want.stdout && got.stderr == want.stderr {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("kubectl get all through the agent does not list its cached pods, services and deployments:\nkube-apiserver:\n%s\nagent:\n%s", want, got)
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
		})
		t.Run("errors", func(t *testing.T) {
			t.Parallel()
			for _, args := range [][]string{
				{"get", "pods", "-n", ns, "--field-selector", "spec.nosuchfield=x"},
				{"get", "deployments", "-n", ns, "--field-selector", "status.replicas=2"},
				{"get", "pods", "-n", ns, "-l", "app in (a"},
				{"get", "pods", "-n", ns, "-l", "nosuch=label"},
				{"get", "pod/missing", "-n", ns},
				{"get", widgets, "missing", "-n", ns},
				{"get", "pods", "-n", "kubectl-e2e-no-such-namespace"},
				// kubectl asks whether the namespace exists after a
				// NotFound, except in default.
				{"get", "pods", "missing", "-n", "default"},
			} {
				k.same(t, args...)
			}
			// krm does not cache namespaces, so it cannot tell kubectl's
			// check that one is missing: kubectl says the object is not
			// found, which is true, where kube-apiserver names the
			// namespace (docs/kubernetes-api.md).
			r := k.agent.run(t, "get", "pods", "missing", "-n", "kubectl-e2e-no-such-namespace")
			if want := "Error from server (NotFound): pods \"missing\" not found\n"; r.code != 1 || r.stderr != want {
				t.Errorf("kubectl get pods missing in a namespace that does not exist, through the agent:\n%s\nwant exit 1 and %q", r, want)
			}
		})
		t.Run("wait", func(t *testing.T) {
			t.Parallel()
			r := k.same(t, "wait", "--for=condition=Ready", "pod/solo", "-n", ns, "--timeout=20s")
			if r.code != 0 {
				t.Errorf("kubectl wait through the agent:\n%s", r)
			}
		})
	})

	t.Run("api-resources", func(t *testing.T) {
		testKubectlAPIResources(t, k, []string{"pods.v1", "deployments.apps/v1", "persistentvolumeclaims.v1",
			"services.v1", "ingresses.networking.k8s.io/v1", "nodes.v1", widgets + "/v1"})
	})

	t.Run("version", func(t *testing.T) {
		k.same(t, "version")
		k.same(t, "version", "-o", "json")
	})

	t.Run("uncached", func(t *testing.T) {
		r := k.agent.run(t, "get", "configmaps", "-n", ns)
		if want := `the server doesn't have a resource type "configmaps"`; r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("kubectl get configmaps through the agent: want a failure saying %q:\n%s", want, r)
		}
		r = k.agent.run(t, "get", "--raw", "/api/v1/namespaces/"+ns+"/configmaps")
		if r.code == 0 || !strings.Contains(r.stderr, "NotFound") || !strings.Contains(r.stderr, "--resources") {
			t.Errorf("kubectl get --raw of configmaps through the agent: want a NotFound naming --resources:\n%s", r)
		}
	})

	t.Run("writes", func(t *testing.T) {
		testKubectlWritesRejected(t, k, cs, ns)
	})
}

// testKubectlAPIResources checks `kubectl api-resources -o wide` through
// the agent: kube-apiserver's row for each cached resource (keys are
// NAME.APIVERSION), with VERBS get,list,watch, and nothing else but krm's
// own group, read-only too.
func testKubectlAPIResources(t *testing.T, k kubectlPair, keys []string) {
	apiOut := k.api.run(t, "api-resources", "-o", "wide")
	agentOut := k.agent.run(t, "api-resources", "-o", "wide")
	if apiOut.code != 0 || agentOut.code != 0 {
		t.Fatalf("kubectl api-resources -o wide:\n%s\n%s", apiOut, agentOut)
	}
	if agentOut.stderr != "" {
		t.Errorf("kubectl api-resources -o wide through the agent wrote to stderr:\n%s", agentOut)
	}
	rows := func(out string) (header []string, byKey map[string][]string) {
		tables := parseTables(out)
		if len(tables) != 1 {
			t.Fatalf("kubectl api-resources printed %d tables:\n%s", len(tables), out)
		}
		byKey = map[string][]string{}
		tb := tables[0]
		name, gv := tb.column("NAME"), tb.column("APIVERSION")
		if name < 0 || gv < 0 || tb.column("VERBS") < 0 {
			t.Fatalf("kubectl api-resources -o wide: header %q lacks NAME, APIVERSION or VERBS", tb.header)
		}
		for _, r := range tb.rows() {
			byKey[r[name]+"."+r[gv]] = r
		}
		return tb.header, byKey
	}
	apiHeader, apiRows := rows(apiOut.stdout)
	agentHeader, agentRows := rows(agentOut.stdout)
	if diff := cmp.Diff(apiHeader, agentHeader); diff != "" {
		t.Errorf("api-resources header (-kube-apiserver +agent):\n%s", diff)
	}
	verbs := slices.Index(agentHeader, "VERBS")
	want := map[string][]string{}
	for _, key := range keys {
		r, ok := apiRows[key]
		if !ok {
			t.Fatalf("kube-apiserver's api-resources has no row %s:\n%s", key, apiOut.stdout)
		}
		r = slices.Clone(r)
		r[verbs] = "get,list,watch"
		want[key] = r
	}
	got := map[string][]string{}
	for key, r := range agentRows {
		if strings.Contains(key, ".krm.io/") {
			// krm's own group: listed, and read-only too.
			for _, v := range strings.Split(r[verbs], ",") {
				if !slices.Contains([]string{"get", "list", "watch"}, v) {
					t.Errorf("api-resources through the agent: %s has VERBS %s, want only get, list and watch", key, r[verbs])
				}
			}
			continue
		}
		got[key] = r
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kubectl api-resources -o wide through the agent (-kube-apiserver's rows for the cached resources, read-only +agent):\n%s\nagent's output:\n%s", diff, agentOut.stdout)
	}
	r := k.agent.run(t, "api-resources", "--verbs=create", "-o", "name")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "" {
		t.Errorf("api-resources --verbs=create through the agent lists something it could create:\n%s", r)
	}
}

// testKubectlWritesRejected runs writes through the agent: each must fail,
// those that reach it with its read-only answer, and none may change the
// cluster.
func testKubectlWritesRejected(t *testing.T, k kubectlPair, cs kubernetes.Interface, ns string) {
	ctx := t.Context()
	dir := t.TempDir()
	manifest := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	newPod := manifest("pod.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: made-through-agent
  namespace: %s
spec:
  containers:
  - name: c
    image: krm-e2e/never:1
`, ns))
	changedService := manifest("service.yaml", fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: %s
  labels:
    applied: through-agent
spec:
  ports:
  - name: http
    port: 81
`, ns))
	for _, tc := range []struct {
		args []string
		// readOnly: the request reaches the agent, whose answer says it
		// is read-only. Otherwise kubectl may stop earlier; it must fail
		// all the same.
		readOnly bool
	}{
		{[]string{"delete", "pod", "solo", "-n", ns}, true},
		{[]string{"delete", "pod", "solo", "-n", ns, "--grace-period=0", "--force"}, true},
		{[]string{"delete", "pods", "-n", ns, "-l", "app=web"}, true},
		{[]string{"delete", "deployment", "worker", "-n", ns}, true},
		{[]string{"label", "pod", "solo", "-n", ns, "a=b"}, true},
		{[]string{"annotate", "deployment", "web", "-n", ns, "a=b"}, true},
		// kubectl validates a manifest with the server's OpenAPI first.
		{[]string{"create", "-f", newPod}, false},
		{[]string{"apply", "-f", changedService}, false},
		{[]string{"create", "-f", newPod, "--validate=false"}, true},
		{[]string{"apply", "-f", changedService, "--validate=false"}, true},
		{[]string{"apply", "--server-side", "-f", changedService, "--validate=false"}, true},
		{[]string{"replace", "-f", changedService, "--validate=false"}, true},
		{[]string{"scale", "deployment", "web", "-n", ns, "--replicas=5"}, true},
		{[]string{"create", "configmap", "made-through-agent", "-n", ns, "--from-literal=a=b"}, true},
	} {
		r := k.agent.run(t, tc.args...)
		switch {
		case r.code == 0:
			t.Errorf("a write through the agent succeeded:\n%s", r)
		case tc.readOnly && !strings.Contains(r.stderr, "read-only"):
			t.Errorf("a write through the agent failed without saying the agent is read-only:\n%s", r)
		default:
			t.Logf("as it should, this write through the agent failed:\n%s", r)
		}
	}

	// Against kube-apiserver: everything is as it was.
	pod, err := cs.CoreV1().Pods(ns).Get(ctx, "solo", metav1.GetOptions{})
	switch {
	case err != nil:
		t.Errorf("pod solo after the writes through the agent: %v", err)
	case pod.DeletionTimestamp != nil:
		t.Errorf("pod solo is being deleted after the writes through the agent")
	case pod.Labels["a"] != "":
		t.Errorf("pod solo has label a=%s after kubectl label through the agent", pod.Labels["a"])
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			t.Errorf("pod %s is being deleted after kubectl delete through the agent", p.Name)
		}
	}
	for name, replicas := range map[string]int32{"web": 2, "worker": 1} {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case err != nil:
			t.Errorf("deployment %s after the writes through the agent: %v", name, err)
		case d.DeletionTimestamp != nil:
			t.Errorf("deployment %s is being deleted after kubectl delete through the agent", name)
		case *d.Spec.Replicas != replicas:
			t.Errorf("deployment %s has %d replicas after kubectl scale through the agent, want %d", name, *d.Spec.Replicas, replicas)
		case d.Annotations["a"] != "":
			t.Errorf("deployment %s has annotation a=%s after kubectl annotate through the agent", name, d.Annotations["a"])
		}
	}
	svc, err := cs.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	switch {
	case err != nil:
		t.Errorf("service web after kubectl apply through the agent: %v", err)
	case svc.Labels["applied"] != "" || svc.Spec.Ports[0].Port != 80:
		t.Errorf("service web changed by kubectl apply through the agent: labels %v, port %d", svc.Labels, svc.Spec.Ports[0].Port)
	}
	if _, err := cs.CoreV1().Pods(ns).Get(ctx, "made-through-agent", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod made-through-agent: got %v, want NotFound: kubectl create through the agent made it", err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "made-through-agent", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("configmap made-through-agent: got %v, want NotFound: kubectl create configmap through the agent made it", err)
	}
}

// createKubectlWidgetCRD makes a namespaced CRD with printer columns of
// several types in a group of this run's own, and returns its
// plural.group and short name. It is deleted when the test ends.
func createKubectlWidgetCRD(t *testing.T, c *cluster.State, suffix string) (resource, short string) {
	t.Helper()
	group := "kubectl-" + suffix + ".krm.example.com"
	short = "kwd" + suffix
	createWidgetCRD(t, kubectlDynamic(t, c), group, short,
		printerColumn("Size", "integer", ".spec.size", 0),
		printerColumn("Color", "string", ".spec.color", 0),
		printerColumn("Ratio", "number", ".spec.ratio", 0),
		printerColumn("Ready", "boolean", ".status.ready", 1),
		printerColumn("Since", "date", ".spec.since", 1),
		printerColumn("Age", "date", ".metadata.creationTimestamp", 0),
	)
	return "widgets." + group, short
}

func kubectlDynamic(t *testing.T, c *cluster.State) dynamic.Interface {
	t.Helper()
	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return dyn
}

// createKubectlObjects makes, in ns, every object labelled kubectl-e2e=suffix
// and app=<its name or app>: deployments web (2 replicas) and worker (1),
// the Running pod solo and the Pending (unschedulable) pod stuck, services
// web (ClusterIP), worker (headless) and ext (ExternalName), ingresses web
// and worker, pvcs data and scratch, and widgets w0, w1 and w2.
func createKubectlObjects(t *testing.T, c *cluster.State, cs kubernetes.Interface, ns, suffix, widgets string) {
	t.Helper()
	ctx := t.Context()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("creating %s: %v", what, err)
		}
	}
	labels := func(app string) map[string]string { return map[string]string{"app": app, "kubectl-e2e": suffix} }
	meta := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name, Labels: labels(name)} }
	container := func(app string) corev1.Container {
		return corev1.Container{
			Name: app, Image: "krm-e2e/" + app + ":1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi"),
			}},
		}
	}
	for _, app := range []string{"web", "worker"} {
		replicas := map[string]int32{"web": 2, "worker": 1}[app]
		_, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: meta(app),
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: labels(app)},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels(app)},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{container(app)}},
				},
			},
		}, metav1.CreateOptions{})
		must("deployment "+app, err)

		svc := &corev1.Service{
			ObjectMeta: meta(app),
			Spec: corev1.ServiceSpec{
				Selector: labels(app),
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
			ObjectMeta: meta(app),
			Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{
				Host: app + ".kubectl-e2e.test",
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
	_, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: meta("ext"),
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "ext.kubectl-e2e.test"},
	}, metav1.CreateOptions{})
	must("service ext", err)
	for _, name := range []string{"data", "scratch"} {
		_, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
			ObjectMeta: meta(name),
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		}, metav1.CreateOptions{})
		must("pvc "+name, err)
	}
	_, err = cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: meta("solo"),
		Spec:       corev1.PodSpec{Containers: []corev1.Container{container("solo")}},
	}, metav1.CreateOptions{})
	must("pod solo", err)
	// No node has this label: the scheduler leaves the pod Pending.
	_, err = cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: meta("stuck"),
		Spec: corev1.PodSpec{
			Containers:   []corev1.Container{container("stuck")},
			NodeSelector: map[string]string{"kubectl-e2e": "no-such-node"},
		},
	}, metav1.CreateOptions{})
	must("pod stuck", err)

	group := strings.TrimPrefix(widgets, "widgets.")
	wr := kubectlDynamic(t, c).Resource(schema.GroupVersionResource{Group: group, Version: "v1", Resource: "widgets"}).Namespace(ns)
	for i, spec := range []map[string]any{
		{"size": int64(3), "color": "red", "ratio": 0.5, "since": "2024-01-02T03:04:05Z"},
		{"size": int64(12), "color": "a much longer colour name", "ratio": int64(2)},
		{"color": "none of the rest"},
	} {
		name := fmt.Sprintf("w%d", i)
		w := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": group + "/v1", "kind": "Widget",
			"metadata": map[string]any{"name": name, "labels": map[string]any{"app": name, "kubectl-e2e": suffix}},
			"spec":     spec,
		}}
		if i == 0 {
			w.Object["status"] = map[string]any{"ready": true}
		}
		_, err := wr.Create(ctx, w, metav1.CreateOptions{})
		must("widget "+name, err)
	}
}

// kubectlObjectsSettled says whether the objects of createKubectlObjects
// have stopped changing: every pod but stuck Running and Ready, stuck
// found unschedulable, and both deployments complete.
func kubectlObjectsSettled(ctx context.Context, cs kubernetes.Interface, ns string) error {
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(pods.Items) != 5 {
		return fmt.Errorf("%d pods, want 5", len(pods.Items))
	}
	for _, p := range pods.Items {
		if p.Name == "stuck" {
			if !kubectlPodCondition(&p, corev1.PodScheduled, corev1.ConditionFalse) {
				return fmt.Errorf("pod stuck not yet found unschedulable")
			}
			continue
		}
		if p.Status.Phase != corev1.PodRunning || !kubectlPodCondition(&p, corev1.PodReady, corev1.ConditionTrue) {
			return fmt.Errorf("pod %s is %s, not yet Running and Ready", p.Name, p.Status.Phase)
		}
	}
	deployments, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, d := range deployments.Items {
		s := d.Status
		complete := false
		for _, c := range s.Conditions {
			if c.Type == appsv1.DeploymentProgressing && c.Reason == "NewReplicaSetAvailable" {
				complete = true
			}
		}
		if !complete || s.ObservedGeneration != d.Generation || s.AvailableReplicas != *d.Spec.Replicas || s.UpdatedReplicas != *d.Spec.Replicas {
			return fmt.Errorf("deployment %s not yet complete: %+v", d.Name, s)
		}
	}
	return nil
}

func kubectlPodCondition(p *corev1.Pod, typ corev1.PodConditionType, status corev1.ConditionStatus) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c.Status == status
		}
	}
	return false
}

// TestKubectlWatchThroughAgent runs `kubectl get pods -w`, plain and with
// --output-watch-events, against kube-apiserver and through the agent at
// the same time, makes a scripted sequence of changes, and checks that
// both print the same lines, AGE aside.
func TestKubectlWatchThroughAgent(t *testing.T) {
	c := clustertest.Get(t)
	ctx := t.Context()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ns := clustertest.Namespace(t, c)
	agent := startAgent(t, buildAgent(t), "--kubeconfig", c.Kubeconfig, "--resources", "pods", "--verify-interval", "5s")
	agent.waitReady(t, 60*time.Second)
	k := newKubectlPair(t, c, agent.URL)

	create := func(name string, unschedulable bool) {
		t.Helper()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "krm-e2e/watch:1"}}},
		}
		if unschedulable {
			pod.Spec.NodeSelector = map[string]string{"kubectl-e2e": "no-such-node"}
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	settled := func(name string, cond corev1.PodConditionType, status corev1.ConditionStatus) {
		t.Helper()
		waitFor(t, 60*time.Second, "pod "+name+" to have "+string(cond)+"="+string(status), func() error {
			p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !kubectlPodCondition(p, cond, status) {
				return fmt.Errorf("conditions %+v", p.Status.Conditions)
			}
			return nil
		})
	}
	gone := func(name string) {
		t.Helper()
		waitFor(t, 60*time.Second, "pod "+name+" to be gone", func() error {
			_, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("still there (%v)", err)
		})
	}
	run := func(args ...string) {
		t.Helper()
		if r := k.api.run(t, args...); r.code != 0 {
			t.Fatalf("against kube-apiserver:\n%s", r)
		}
	}

	// A pod to list, so every watch starts with a header and a row.
	create("before", false)
	settled("before", corev1.PodReady, corev1.ConditionTrue)
	waitFor(t, 30*time.Second, "the agent to list pod before", func() error {
		r := k.agent.run(t, "get", "pods", "-n", ns, "-o", "name")
		if r.code != 0 || r.stdout != "pod/before\n" {
			return fmt.Errorf("%s", r)
		}
		return nil
	})

	watchArgs := map[string][]string{
		"-w":                                  {"get", "pods", "-n", ns, "-w"},
		"-w --output-watch-events":            {"get", "pods", "-n", ns, "-w", "--output-watch-events"},
		"-o wide -w":                          {"get", "pods", "-n", ns, "-o", "wide", "-w"},
		"pod/before -w --output-watch-events": {"get", "pod/before", "-n", ns, "-w", "--output-watch-events"},
	}
	type pair struct{ api, agent *watcher }
	watches := map[string]pair{}
	for name, args := range watchArgs {
		watches[name] = pair{api: startWatch(t, k.api, args...), agent: startWatch(t, k.agent, args...)}
	}
	for name, w := range watches {
		for _, one := range []*watcher{w.api, w.agent} {
			waitFor(t, 30*time.Second, "kubectl get "+name+" to print its list", func() error {
				if out := one.output(); len(out) < 2 {
					return fmt.Errorf("printed %q", out)
				}
				return nil
			})
		}
	}

	// The script: each step waits until the cluster has settled, so the
	// lines come in one order.
	create("alpha", false)
	settled("alpha", corev1.PodReady, corev1.ConditionTrue)
	run("label", "pod", "alpha", "-n", ns, "step=one")
	create("beta", true)
	settled("beta", corev1.PodScheduled, corev1.ConditionFalse)
	run("annotate", "pod", "before", "-n", ns, "step=two")
	run("delete", "pod", "beta", "-n", ns, "--wait=false")
	gone("beta")
	run("label", "pod", "alpha", "-n", ns, "step=two", "--overwrite")
	run("delete", "pod", "alpha", "-n", ns, "--grace-period=0", "--force")
	gone("alpha")
	run("delete", "pod", "before", "-n", ns, "--wait=false")
	gone("before")

	// kube-apiserver's watches are done when they show pod before deleted:
	// those that name events say so; the others print a line per event, as
	// many as the one that names them.
	events := watches["-w --output-watch-events"].api
	deleted := regexp.MustCompile(`^DELETED +before `)
	for name, w := range watches {
		if !strings.Contains(name, "--output-watch-events") {
			continue
		}
		waitFor(t, 30*time.Second, "kubectl get "+name+" to show pod before deleted", func() error {
			if !slices.ContainsFunc(w.api.output(), deleted.MatchString) {
				return fmt.Errorf("printed:\n%s", strings.Join(w.api.output(), "\n"))
			}
			return nil
		})
	}
	for name, w := range watches {
		if strings.Contains(name, "--output-watch-events") {
			continue
		}
		waitFor(t, 30*time.Second, "kubectl get "+name+" to print every event", func() error {
			if got, want := len(w.api.output()), len(events.output()); got != want {
				return fmt.Errorf("%d lines, want %d", got, want)
			}
			return nil
		})
	}
	for name, w := range watches {
		deadline := time.Now().Add(30 * time.Second)
		for {
			want, got := kubectlWatchCells(w.api.output()), kubectlWatchCells(w.agent.output())
			diff := cmp.Diff(want, got)
			if diff == "" {
				t.Logf("kubectl get %s printed, against both:\n%s", name, strings.Join(w.agent.output(), "\n"))
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("kubectl get %s: through the agent it printed other lines than against kube-apiserver (cells split at 3+ spaces, AGE masked; -kube-apiserver +agent):\n%s\nkube-apiserver:\n%s\nagent:\n%s",
					name, diff, strings.Join(w.api.output(), "\n"), strings.Join(w.agent.output(), "\n"))
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
}

// kubectlWatchCells cuts the lines of `kubectl get -w` into cells at the
// column gaps (three spaces or more) and masks the AGE cell, the one thing
// that may differ as the two kubectls print their lines a moment apart. Its
// width can move the later columns, so padding is not compared.
func kubectlWatchCells(lines []string) []string {
	if len(lines) == 0 {
		return nil
	}
	gap := regexp.MustCompile(` {3,}`)
	age := slices.Index(gap.Split(strings.TrimRight(lines[0], " "), -1), "AGE")
	out := make([]string, len(lines))
	for i, l := range lines {
		cells := gap.Split(strings.TrimRight(l, " "), -1)
		if i > 0 && age >= 0 && age < len(cells) {
			if _, _, ok := parseAge(cells[age]); ok {
				cells[age] = "<age>"
			}
		}
		out[i] = strings.Join(cells, " | ")
	}
	return out
}
