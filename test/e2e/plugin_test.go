package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/krm-project/krm/pkg/api"
	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// TestPlugin builds kubectl-krm and krm-agent once and runs the plugin the
// way users do, through kubectl's plugin dispatch, against agents on the
// local cluster.
func TestPlugin(t *testing.T) {
	c := clustertest.Get(t)
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	agentBin := buildAgent(t)
	p := buildPlugin(t, c)

	t.Run("Get", func(t *testing.T) {
		t.Parallel()
		testPluginGet(t, c, cs, agentBin, p)
	})
	t.Run("DiffVerified", func(t *testing.T) {
		t.Parallel()
		testDiffVerified(t, c, cs, agentBin, p)
	})
	t.Run("DiffVerifiedDrift", func(t *testing.T) {
		t.Parallel()
		testDiffVerifiedDrift(t, c, cs, agentBin, p)
	})
	t.Run("Errors", func(t *testing.T) {
		t.Parallel()
		testPluginErrors(t, c, cs, agentBin, p)
	})
	t.Run("DefaultAgentFlags", func(t *testing.T) {
		t.Parallel()
		testDefaultAgentFlags(t, c, cs, agentBin, p)
	})
}

// testPluginGet runs an agent as a process "inside" a kwok pod, and checks
// that `kubectl krm get`, reaching it by port-forward, prints what
// `kubectl get` prints for a varied workload.
func testPluginGet(t *testing.T, c *cluster.State, cs kubernetes.Interface, bin string, p *plugin) {
	ctx := t.Context()
	agentNS := clustertest.Namespace(t, c)
	ns := clustertest.Namespace(t, c)
	empty := clustertest.Namespace(t, c)

	a := startAgent(t, bin, "--kubeconfig", c.Kubeconfig, "--verify-interval", "5s")
	a.waitReady(t, 60*time.Second)
	agentPod(t, c, cs, agentNS, "krm-agent-0", portOf(t, a.URL))

	createWorkload(t, cs, ns)
	// A pod of the same name in another namespace, for -A.
	other := clustertest.Namespace(t, c)
	if _, err := cs.CoreV1().Pods(other).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "solo", Labels: map[string]string{"app": "solo", "krm-e2e": "plugin"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "solo", Image: "krm-e2e/solo:2"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the workload's pods to run", func() error {
		if err := workloadRunning(ctx, cs, ns); err != nil {
			return err
		}
		return podsRunning(ctx, cs, other, 1)
	})

	agentFlags := []string{"--agent-namespace", agentNS}
	kinds := []string{"pods", "deployments", "persistentvolumeclaims", "services", "ingresses"}
	var cases [][]string
	for _, k := range kinds {
		all := []string{"-A"}
		if k == "pods" {
			// Others' pods come and go by the thousand (krm-bench makes
			// 10000): two snapshots of them may never agree.
			all = append(all, "-l", "krm-e2e=plugin")
		}
		cases = append(cases,
			[]string{"get", k, "-n", ns},
			[]string{"get", k, "-n", ns, "-o", "wide"},
			append([]string{"get", k}, all...),
			append([]string{"get", k, "-o", "wide"}, all...),
		)
	}
	cases = append(cases,
		[]string{"get", "nodes"},
		[]string{"get", "nodes", "-o", "wide"},
		[]string{"get", "nodes", "-A"},
		[]string{"get", "nodes", "-A", "-o", "wide"},
		// The kubeconfig's namespace (default) without -n.
		[]string{"get", "services"},
		// Short names, several kinds in one table set.
		[]string{"get", "po,deploy,svc", "-n", ns},
		[]string{"get", "deploy", "-n", ns, "--show-labels"},
		[]string{"get", "pods", "-n", ns, "-L", "app,tier"},
		[]string{"get", "pods,svc", "-n", ns, "-o", "name"},
		[]string{"get", "pods", "-n", ns, "-o", "json"},
		[]string{"get", "services", "-A", "-o", "json"},
		[]string{"get", "ingresses", "-n", ns, "-o", "yaml"},
		[]string{"get", "pods", "-n", ns, "-o", "jsonpath={.items[*].metadata.name}"},
		[]string{"get", "services", "-A", "--sort-by=.metadata.name"},
		[]string{"get", "pods", "-n", ns, "--sort-by=.metadata.uid"},
		[]string{"get", "pods", "-n", ns, "-l", "app=web"},
		[]string{"get", "pods", "-A", "-l", "app in (web,worker,solo),tier!=cache", "-o", "wide"},
		[]string{"get", "pods", "-n", ns, "--field-selector", "status.phase=Running"},
		[]string{"get", "pods", "-n", ns, "--field-selector", "status.phase!=Running"},
		[]string{"get", "pods", "solo", "-n", ns},
		[]string{"get", "pod/solo", "-n", ns},
		[]string{"get", "pod/solo", "svc/web", "ing/tls", "-n", ns},
		// Named objects come in the order asked for.
		[]string{"get", "pods", "solo", "pending", "-n", ns, "-o", "wide"},
		[]string{"get", "pod/web-missing", "pod/solo", "pod/multi", "-n", ns},
		[]string{"get", "pod", "solo", "-n", ns, "-o", "json"},
		[]string{"get", "node", c.Nodes[0], "-o", "name"},
		// Nothing there: kubectl's message on stderr.
		[]string{"get", "ingresses", "-n", empty},
		// Missing names: kubectl's NotFound line, exit 1, after what was
		// found.
		[]string{"get", "pods", "nosuch", "-n", ns},
		[]string{"get", "pods", "solo", "nosuch", "-n", ns},
		[]string{"get", "deploy/nosuch", "ing/nosuch", "-n", ns},
		[]string{"get", "pods", "nosuch", "-n", ns, "-o", "json"},
		[]string{"get", "nodes", "nosuch", "-o", "name"},
	)
	// A few at a time: each mostly waits for processes and the network.
	// (t.Run may be called from several goroutines; t.Parallel would queue
	// behind -parallel.)
	work := make(chan []string)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for args := range work {
				// Named without the namespaces' random suffixes, so -run
				// can pick one.
				name := strings.NewReplacer(ns, "NS", other, "OTHER", empty, "EMPTY").Replace(strings.Join(args[1:], " "))
				t.Run(name, func(t *testing.T) {
					sameAsKubectl(t, p, args, agentFlags)
				})
			}
		})
	}
	for _, args := range cases {
		work <- args
	}
	close(work)
	wg.Wait()

	t.Run("json items", func(t *testing.T) {
		// The bytes matched above; this names what that means.
		got := sameAsKubectl(t, p, []string{"get", "deployments", "-n", ns, "-o", "json"}, agentFlags)
		want := p.run(t, "get", "deployments", "-n", ns, "-o", "json")
		if diff := cmp.Diff(itemRefs(t, want.stdout), itemRefs(t, got.stdout)); diff != "" {
			t.Errorf("items' namespace/name/uid/resourceVersion (-kubectl +krm):\n%s", diff)
		}
	})

	t.Run("show-source", func(t *testing.T) {
		want := p.run(t, "get", "pods", "-n", ns)
		got := p.krm(t, append([]string{"get", "pods", "-n", ns, "--show-source"}, agentFlags...)...)
		if got.code != 0 {
			t.Fatalf("kubectl krm get pods --show-source:\n%s", got)
		}
		wt, gt := parseTables(want.stdout), parseTables(got.stdout)
		if len(gt) != 1 {
			t.Fatalf("want one table, got:\n%s", got.stdout)
		}
		w, g := wt[0], gt[0]
		if diff := cmp.Diff(append(w.header, "SOURCE", "VERIFIED"), g.header); diff != "" {
			t.Fatalf("header (-want +got):\n%s", diff)
		}
		var names []string
		for _, row := range g.rows() {
			names = append(names, row[0])
			if src := row[len(row)-2]; src != "verified" && src != "streamed" {
				t.Errorf("%s: SOURCE %q, want verified or streamed", row[0], src)
			}
			if v := row[len(row)-1]; v == "" || v == "<never>" || !strings.ContainsAny(v[len(v)-1:], "smhdy") {
				t.Errorf("%s: VERIFIED %q, want the age of the last LIST", row[0], v)
			}
		}
		var wantNames []string
		for _, row := range w.rows() {
			wantNames = append(wantNames, row[0])
		}
		if diff := cmp.Diff(wantNames, names); diff != "" {
			t.Errorf("pods (-kubectl +krm):\n%s", diff)
		}
	})

	t.Run("status", func(t *testing.T) {
		r := p.krm(t, append([]string{"status"}, agentFlags...)...)
		if r.code != 0 {
			t.Fatalf("kubectl krm status:\n%s", r)
		}
		tb := parseTables(r.stdout)
		if len(tb) != 1 {
			t.Fatalf("want one table:\n%s", r.stdout)
		}
		want := []string{"RESOURCE", "VERIFIED", "RESOURCEVERSION", "OBJECTS", "STREAM", "EVENTS/MIN", "DRIFT", "STORE"}
		if diff := cmp.Diff(want, tb[0].header); diff != "" {
			t.Errorf("header (-want +got):\n%s", diff)
		}
		var resources []string
		for _, row := range tb[0].rows() {
			resources = append(resources, row[0])
			if row[4] != "connected" || row[1] == "<never>" || row[7] != "memory" {
				t.Errorf("%s: STREAM %q, VERIFIED %q, STORE %q; want connected, an age, memory", row[0], row[4], row[1], row[7])
			}
		}
		if diff := cmp.Diff(defaultResources, resources); diff != "" {
			t.Errorf("resources (-want +got):\n%s", diff)
		}
	})

	t.Run("version", func(t *testing.T) {
		list, err := a.Client.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r := p.krm(t, append([]string{"version"}, agentFlags...)...)
		// Neither binary was stamped: both are "dev".
		want := fmt.Sprintf("Plugin Version: dev\nAgent Version: %s\nAPI Version: %s\n", list.Agent.AgentVersion, krmv1alpha1.SchemeGroupVersion)
		if r.code != 0 || r.stdout != want {
			t.Errorf("kubectl krm version:\n%s\nwant exit 0 and\n%s", r, want)
		}
		if list.Agent.AgentVersion == "" {
			t.Errorf("the agent reports no version")
		}
	})

	t.Run("completion", func(t *testing.T) {
		r := p.krm(t, "completion", "bash")
		if r.code != 0 || !strings.Contains(r.stdout, "complete -o default -F __start_kubectl-krm kubectl-krm") {
			t.Errorf("kubectl krm completion bash: want exit 0 and a bash completion script for kubectl-krm, got exit %d, stderr %q, stdout starting %q",
				r.code, r.stderr, r.stdout[:min(200, len(r.stdout))])
		}
		// kubectl (1.26+) completes `kubectl krm …` by running
		// kubectl_complete-krm from PATH.
		for _, tc := range []struct {
			args []string
			want []string
		}{
			{[]string{"g"}, []string{"get\tDisplay one or many resources from the krm cache", ":4"}},
			{[]string{"diff", ""}, []string{"verified\tShow what the stream holds that the last LIST has not confirmed, and what it missed", ":4"}},
			{[]string{"get", "--agent-n"}, []string{"--agent-namespace\tNamespace of the krm agent pod.", ":4"}},
			{[]string{"diff", "verified", "--hist"}, []string{"--history\tShow the whole drift ledger, not only what the last LIST found.", ":4"}},
		} {
			r := p.run(t, append([]string{"__complete", "krm"}, tc.args...)...)
			if diff := cmp.Diff(tc.want, strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")); r.code != 0 || diff != "" {
				t.Errorf("kubectl __complete krm %q: exit %d, completions (-want +got):\n%s\nstderr:\n%s", tc.args, r.code, diff, r.stderr)
			}
		}
	})
}

// itemRefs lists the namespace/name/uid/resourceVersion of a List's items,
// in order.
func itemRefs(t *testing.T, listJSON string) []ref {
	t.Helper()
	var list unstructured.UnstructuredList
	if err := list.UnmarshalJSON([]byte(listJSON)); err != nil {
		t.Fatalf("decoding a list: %v\n%s", err, listJSON)
	}
	var refs []ref
	for i := range list.Items {
		refs = append(refs, refOf(&list.Items[i]))
	}
	if len(refs) == 0 {
		t.Fatalf("the list has no items:\n%s", listJSON)
	}
	return refs
}

// workloadPods are the pods createWorkload makes that run; "pending" waits
// for a node that does not exist.
var workloadPods = map[string]int{"web": 3, "worker": 2, "solo": 1, "multi": 1}

// createWorkload makes, in ns: deployments web (3 replicas), worker (2) and
// idle (0); services of each type; three pvcs; three ingresses; and the
// standalone pods solo, multi (two containers) and pending (unschedulable).
// Every pod is labelled krm-e2e=plugin.
func createWorkload(t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	ctx := t.Context()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("creating %s in %s: %v", what, ns, err)
		}
	}
	container := func(name string, port int32) corev1.Container {
		return corev1.Container{
			Name: name, Image: "krm-e2e/" + name + ":1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port}},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi"),
			}},
		}
	}
	for _, d := range []struct {
		name, tier string
		replicas   int32
	}{{"web", "frontend", 3}, {"worker", "backend", 2}, {"idle", "batch", 0}} {
		labels := map[string]string{"app": d.name, "tier": d.tier}
		_, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: d.name, Labels: labels},
			Spec: appsv1.DeploymentSpec{
				Replicas: &d.replicas,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": d.name}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": d.name, "tier": d.tier, "krm-e2e": "plugin"}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{container(d.name, 8080)}},
				},
			},
		}, metav1.CreateOptions{})
		must("deployment "+d.name, err)
	}

	ports := []corev1.ServicePort{
		{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
		{Name: "metrics", Port: 9090, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(9090)},
	}
	for _, svc := range []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: ports}},
		{ObjectMeta: metav1.ObjectMeta{Name: "worker"},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "worker"}, Ports: ports[:1]}},
		{ObjectMeta: metav1.ObjectMeta{Name: "edge"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "web"}, Ports: ports[:1]}},
		{ObjectMeta: metav1.ObjectMeta{Name: "lb"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"}, Ports: ports,
				ExternalIPs: []string{"192.0.2.10"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "ext"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}},
	} {
		_, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
		must("service "+svc.Name, err)
	}

	block := corev1.PersistentVolumeBlock
	standard := "standard"
	for _, pvc := range []*corev1.PersistentVolumeClaim{
		{ObjectMeta: metav1.ObjectMeta{Name: "data"}, Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "shared", Labels: map[string]string{"app": "worker"}}, Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany, corev1.ReadOnlyMany},
			StorageClassName: &standard,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}},
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "raw"}, Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOncePod},
			VolumeMode:  &block,
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("512Mi")}},
		}},
	} {
		_, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{})
		must("pvc "+pvc.Name, err)
	}

	prefix := networkingv1.PathTypePrefix
	backend := func(svc string) networkingv1.IngressBackend {
		return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Name: "http"}}}
	}
	rule := func(host, svc string) networkingv1.IngressRule {
		return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
			Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &prefix, Backend: backend(svc)}},
		}}}
	}
	class := "nginx"
	for _, ing := range []*networkingv1.Ingress{
		{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: networkingv1.IngressSpec{
			IngressClassName: &class, Rules: []networkingv1.IngressRule{rule("web.krm-e2e.test", "web")},
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "tls"}, Spec: networkingv1.IngressSpec{
			TLS:   []networkingv1.IngressTLS{{Hosts: []string{"a.krm-e2e.test", "b.krm-e2e.test"}, SecretName: "tls"}},
			Rules: []networkingv1.IngressRule{rule("a.krm-e2e.test", "web"), rule("b.krm-e2e.test", "worker")},
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "fallback"}, Spec: networkingv1.IngressSpec{
			DefaultBackend: &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}},
		}},
	} {
		_, err := cs.NetworkingV1().Ingresses(ns).Create(ctx, ing, metav1.CreateOptions{})
		must("ingress "+ing.Name, err)
	}

	for _, pod := range []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "solo", Labels: map[string]string{"app": "solo", "tier": "cache", "krm-e2e": "plugin"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{container("solo", 6379)}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "multi", Labels: map[string]string{"app": "multi", "krm-e2e": "plugin"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{container("main", 8080), container("sidecar", 9090)}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "pending", Labels: map[string]string{"app": "pending", "krm-e2e": "plugin"}},
			Spec: corev1.PodSpec{
				NodeSelector: map[string]string{"krm-e2e/no-such-node": "true"},
				Containers:   []corev1.Container{container("pending", 8080)},
			}},
	} {
		_, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		must("pod "+pod.Name, err)
	}
}

// workloadRunning says whether the workload's pods run, and the
// deployments say so.
func workloadRunning(ctx context.Context, cs kubernetes.Interface, ns string) error {
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	running := map[string]int{}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			running[p.Labels["app"]]++
		}
	}
	if !cmp.Equal(workloadPods, running) {
		return fmt.Errorf("running pods by app: %v, want %v", running, workloadPods)
	}
	deps, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, d := range deps.Items {
		if d.Status.ObservedGeneration != d.Generation || d.Status.AvailableReplicas != *d.Spec.Replicas || d.Status.UpdatedReplicas != *d.Spec.Replicas {
			return fmt.Errorf("deployment %s: %d of %d replicas available", d.Name, d.Status.AvailableReplicas, *d.Spec.Replicas)
		}
	}
	return nil
}

// driftRows reads `kubectl krm diff verified`'s summary as
// resource/namespace/name/change lines, sorted.
func driftRows(t *testing.T, out string) []string {
	t.Helper()
	if out == "" {
		return nil
	}
	tb := parseTables(out)
	want := []string{"RESOURCE", "NAMESPACE", "NAME", "CHANGE", "STREAMED", "VERIFIED", "AGE"}
	if len(tb) != 1 || !cmp.Equal(tb[0].header, want) {
		t.Fatalf("want one table with columns %v, got:\n%s", want, out)
	}
	var rows []string
	for _, r := range tb[0].rows() {
		rows = append(rows, strings.Join(r[:4], " "))
	}
	slices.Sort(rows)
	return rows
}

// decodeReports decodes `diff verified -o json`: a krm.io DriftReportList.
func decodeReports(t *testing.T, out string) []api.DriftReport {
	t.Helper()
	var list krmv1alpha1.DriftReportList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("kubectl krm diff verified -o json printed something that is not a list of drift reports: %v\n%s", err, out)
	}
	if list.Kind != "DriftReportList" || list.APIVersion != "krm.io/v1alpha1" {
		t.Errorf("kubectl krm diff verified -o json printed a %s %s, want a krm.io/v1alpha1 DriftReportList", list.APIVersion, list.Kind)
	}
	var reports []api.DriftReport
	for _, item := range list.Items {
		reports = append(reports, item.Status)
	}
	return reports
}
