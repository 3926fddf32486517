package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/krm-project/krm/internal/manifests"
	"github.com/krm-project/krm/pkg/api"
	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/client"
	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/cluster/clustertest"
	"github.com/krm-project/krm/test/deploy"
)

// manifestsDir is the repo's manifests/, seen from test/e2e.
var manifestsDir = filepath.Join("..", "..", "manifests")

// TestManifests installs krm from manifests/ as a user would, runs the
// agent as the manifests' ServiceAccount behind the agent pod, and reads
// through it with the plugin's defaults: namespace krm-system, the
// Deployment's label, a port-forward to the pod. Then the same for the HA
// overlay, whose replicas elect a leader with the Role's lease verbs.
//
// krm-system and the ClusterRole are cluster-wide, so this test owns them
// (clustertest.LockInstall, shared with TestHelm): it removes an earlier
// install first and its own at the end.
func TestManifests(t *testing.T) {
	c := clustertest.Get(t)
	clustertest.LockInstall(t, c)
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	bin := buildAgent(t)
	p := buildPlugin(t, c)
	t.Run("default", func(t *testing.T) { testDefaultInstall(t, c, cs, bin, p) })
	t.Run("ha", func(t *testing.T) { testHAInstall(t, c, cs, bin, p) })
	t.Run("influxdb", func(t *testing.T) { testInfluxDBInstall(t, c, cs, bin, p) })
}

// install applies the kustomization dir (relative to manifests/) with the
// agents behind their pods, and checks every agent pod is Ready on a kwok
// node. Everything is removed when the test ends.
func install(t *testing.T, c *cluster.State, cs kubernetes.Interface, bin, dir string) *deploy.Installed {
	t.Helper()
	uninstall(t, c, cs)
	t.Cleanup(func() { uninstall(t, c, cs) })
	inst, err := deploy.Apply(t.Context(), deploy.Config{
		Cluster:       c,
		Kustomization: filepath.Join(manifestsDir, dir),
		Agent:         bin,
		Dir:           t.TempDir(),
		Start:         startProcess(t),
		Log:           testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	// deploy.Apply waited for the processes' /readyz and the rollout.
	for _, a := range inst.Agents {
		pod, err := cs.CoreV1().Pods(deploy.Namespace).Get(t.Context(), a.Pod, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		node, err := cs.CoreV1().Nodes().Get(t.Context(), pod.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("node %q of pod %s: %v", pod.Spec.NodeName, a.Pod, err)
		}
		if _, ok := node.Annotations[cluster.NodeAnnotation]; !ok {
			t.Errorf("agent pod %s runs on %s, not a kwok node", a.Pod, node.Name)
		}
		if !podReady(pod) {
			t.Errorf("agent pod %s is not Ready: %+v", a.Pod, pod.Status.Conditions)
		}
	}
	return inst
}

func testDefaultInstall(t *testing.T, c *cluster.State, cs kubernetes.Interface, bin string, p *plugin) {
	inst := install(t, c, cs, bin, ".")
	if len(inst.Agents) != 1 {
		t.Fatalf("the default install runs %d agents, want 1", len(inst.Agents))
	}
	t.Run("secrets kept", func(t *testing.T) { testSecretsKept(t, c, cs, bin, ".", inst, "krm-redis") })

	t.Run("dry-run=server", func(t *testing.T) { testServerDryRun(t, c) })

	ns := clustertest.Namespace(t, c)
	createWorkload(t, cs, ns)
	waitFor(t, 60*time.Second, "the workload in "+ns+" to run", func() error {
		return workloadRunning(t.Context(), cs, ns)
	})

	// The plugin finds the pod by the manifests' labels in krm-system and
	// port-forwards to it; no --agent-url.
	sameAsKubectl(t, p, []string{"get", "pods", "-n", ns}, nil)
	sameAsKubectl(t, p, []string{"get", "deployments,services,persistentvolumeclaims,ingresses", "-n", ns}, nil)
	sameAsKubectl(t, p, []string{"get", "nodes"}, nil)

	// Everything the agent watches by default must be readable with the
	// ClusterRole, and the probe must work with the Role: a verb missing
	// from either leaves an error here.
	status := p.krm(t, "status", "-o", "json")
	if status.code != 0 {
		t.Fatalf("kubectl krm status: %s", status)
	}
	var list krmv1alpha1.ResourceStatusList
	if err := json.Unmarshal([]byte(status.stdout), &list); err != nil {
		t.Fatalf("kubectl krm status -o json: %v\n%s", err, status.stdout)
	}
	var names []string
	for _, item := range list.Items {
		r := item.Status
		names = append(names, r.Name)
		if r.LastError != "" || !r.StreamConnected || r.Verifications == 0 {
			t.Errorf("resource %s: connected=%t verifications=%d error=%q", r.Name, r.StreamConnected, r.Verifications, r.LastError)
		}
	}
	for _, w := range api.DefaultResources {
		if !slices.Contains(names, w) {
			t.Errorf("kubectl krm status lists %v, missing %s", names, w)
		}
	}

	// The canary probe creates and deletes a ConfigMap in krm-system every
	// 10s with the Role's verbs; its samples show it got through.
	waitFor(t, 30*time.Second, "a canary probe sample", func() error {
		r := p.krm(t, "delay", api.ProbeResource, "-o", "json")
		if r.code != 0 {
			return fmt.Errorf("kubectl krm delay %s: %s", api.ProbeResource, r)
		}
		var reps krmv1alpha1.DelayReportList
		if err := json.Unmarshal([]byte(r.stdout), &reps); err != nil {
			return fmt.Errorf("kubectl krm delay -o json: %v\n%s", err, r.stdout)
		}
		for _, rep := range reps.Items {
			for _, st := range rep.Status.Stats {
				if st.Resource == api.ProbeResource && st.Count > 0 {
					return nil
				}
			}
		}
		return fmt.Errorf("no probe samples yet:\n%s", r.stdout)
	})

	// The agent is as weak as its ServiceAccount: it may not read secrets.
	kc := p.withKubeconfig(inst.Kubeconfig)
	if r := kc.run(t, "auth", "can-i", "list", "secrets", "-A"); r.code == 0 || strings.TrimSpace(r.stdout) != "no" {
		t.Errorf("the agent's ServiceAccount may list secrets: %s", r)
	}
	// It may read only the Secret its initContainer generated, by name.
	for _, q := range [][]string{{"get", "secrets/krm-redis", "-n", deploy.Namespace}, {"create", "secrets", "-n", deploy.Namespace}} {
		if r := kc.run(t, append([]string{"auth", "can-i"}, q...)...); r.code != 0 {
			t.Errorf("the agent's ServiceAccount may not %v, which its initContainer needs: %s", q, r)
		}
	}
	for _, q := range [][]string{{"get", "secrets/other", "-n", deploy.Namespace}, {"list", "secrets", "-n", deploy.Namespace}, {"watch", "secrets", "-n", deploy.Namespace}} {
		if r := kc.run(t, append([]string{"auth", "can-i"}, q...)...); r.code == 0 {
			t.Errorf("the agent's ServiceAccount may %v: %s", q, r)
		}
	}
	if r := kc.run(t, "auth", "can-i", "watch", "pods", "-A"); r.code != 0 {
		t.Errorf("the agent's ServiceAccount may not watch pods: %s", r)
	}
	testStatusReader(t, cs, p)
	// The cluster's identity in Redis is kube-system's UID: get on that one
	// namespace, by name, and no other.
	if r := kc.run(t, "auth", "can-i", "get", "namespaces/kube-system"); r.code != 0 {
		t.Errorf("the agent's ServiceAccount may not get namespaces/kube-system, the cluster's identity: %s", r)
	}
	for _, q := range [][]string{{"get", "namespaces/default"}, {"list", "namespaces"}} {
		if r := kc.run(t, append([]string{"auth", "can-i"}, q...)...); r.code == 0 {
			t.Errorf("the agent's ServiceAccount may %v: %s", q, r)
		}
	}
	// --secure-listen delegates to the API server through
	// system:auth-delegator (TestSecureListener exercises both reviews).
	for _, review := range []string{"tokenreviews.authentication.k8s.io", "subjectaccessreviews.authorization.k8s.io"} {
		if r := kc.run(t, "auth", "can-i", "create", review); r.code != 0 {
			t.Errorf("the agent's ServiceAccount may not create %s, which --secure-listen needs: %s", review, r)
		}
	}
}

// testHAInstall runs the HA overlay's two replicas: one holds the Lease
// (get, create, update in the Role) and writes Redis, the other follows it,
// and both answer like kubectl.
func testHAInstall(t *testing.T, c *cluster.State, cs kubernetes.Interface, bin string, p *plugin) {
	inst := install(t, c, cs, bin, "overlays/ha")
	if len(inst.Agents) != 2 {
		t.Fatalf("the HA install runs %d agents, want 2", len(inst.Agents))
	}
	lease, err := cs.CoordinationV1().Leases(deploy.Namespace).Get(t.Context(), deploy.AgentName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the leader's Lease: %v", err)
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		t.Fatalf("Lease %s/%s has no holder: %+v", deploy.Namespace, deploy.AgentName, lease.Spec)
	}
	sameAsKubectl(t, p, []string{"get", "nodes"}, nil)
	for _, a := range inst.Agents {
		sameAsKubectl(t, p, []string{"get", "nodes"}, []string{"--agent-url", a.URL})
	}
	// A follower names the leader once its elector has read the Lease.
	want := map[string]string{"leader": *lease.Spec.HolderIdentity, "follower": *lease.Spec.HolderIdentity}
	waitFor(t, 30*time.Second, "one leader and one follower naming the Lease's holder", func() error {
		roles := map[string]string{} // role -> the leader it names
		for _, a := range inst.Agents {
			c, err := client.New(a.URL, nil)
			if err != nil {
				return err
			}
			st, err := c.AgentStatus(t.Context())
			if err != nil {
				return fmt.Errorf("the AgentStatus of %s: %w", a.Pod, err)
			}
			roles[st.Status.Role] = st.Status.Leader
		}
		if diff := cmp.Diff(want, roles); diff != "" {
			return fmt.Errorf("the replicas' roles and leaders (-want +got):\n%s", diff)
		}
		return nil
	})
	if r := p.krm(t, "status"); !strings.Contains(r.stdout, "Replica: ") {
		t.Errorf("kubectl krm status does not say which replica answered:\n%s", r)
	}
}

// testInfluxDBInstall installs the influxdb overlay: its initContainer
// generates krm-influxdb as well as krm-redis, with the component's Role.
// The agent writes to the harness's InfluxDB, which runs without
// authentication (TestInfluxDBAuthentication runs one with it).
func testInfluxDBInstall(t *testing.T, c *cluster.State, cs kubernetes.Interface, bin string, p *plugin) {
	inst := install(t, c, cs, bin, "overlays/influxdb")
	sec, err := cs.CoreV1().Secrets(deploy.Namespace).Get(t.Context(), "krm-influxdb", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the influxdb overlay's initContainer did not make its Secret: %v", err)
	}
	if tok := string(sec.Data["token"]); tok != string(sec.Data["user"])+":"+string(sec.Data["password"]) {
		t.Errorf("Secret krm-influxdb: token is not user:password")
	}
	testSecretsKept(t, c, cs, bin, "overlays/influxdb", inst, "krm-redis", "krm-influxdb")
	sameAsKubectl(t, p, []string{"get", "nodes"}, nil)
}

// testSecretsKept checks the Secrets the initContainers generated: each
// has a password of 43 random characters, and re-applying the
// kustomization and running the initContainers again (as a new pod would)
// keeps every one, byte for byte, and the agent keeps writing Redis with
// it. The re-run takes the Role's get on each Secret by name; the first run
// took its create.
func testSecretsKept(t *testing.T, c *cluster.State, cs kubernetes.Interface, bin, dir string, inst *deploy.Installed, names ...string) {
	before := map[string]map[string][]byte{}
	for _, name := range names {
		sec, err := cs.CoreV1().Secrets(deploy.Namespace).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("Secret %s was not generated: %v", name, err)
		}
		if pw := sec.Data["password"]; len(pw) != 43 || strings.Contains(string(pw), "change-me") {
			t.Errorf("Secret %s: a password of %d bytes, want 43 generated ones", name, len(pw))
		}
		before[name] = sec.Data
	}
	out, err := kubectl(t.Context(), c.Kubectl, c.Kubeconfig, "apply", "-k", filepath.Join(manifestsDir, dir))
	if err != nil {
		t.Fatalf("kubectl apply -k %s again: %v\n%s", dir, err, out)
	}
	d, err := cs.AppsV1().Deployments(deploy.Namespace).Get(t.Context(), deploy.AgentName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := deploy.RunInitContainers(t.Context(), deploy.Config{Cluster: c, Agent: bin, Log: testWriter{t}}, d, inst.Kubeconfig); err != nil {
		t.Fatalf("the initContainers on a second start: %v", err)
	}
	for _, name := range names {
		sec, err := cs.CoreV1().Secrets(deploy.Namespace).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("Secret %s after re-applying: %v", name, err)
		}
		if !maps.EqualFunc(before[name], sec.Data, bytes.Equal) {
			t.Errorf("Secret %s changed when the install was applied and started again", name)
		}
	}
	// Redis still takes the agent's password: the store stays healthy.
	ac, err := client.New(inst.Agents[0].URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := ac.AgentStatus(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.Store.Kind != "redis" || !st.Status.Store.Healthy {
		t.Errorf("the agent's store after re-applying: %+v, want a healthy redis", st.Status.Store)
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// testServerDryRun checks that kube-apiserver accepts every kustomization
// and rendered install, as an update of the install in place.
//
// A server-side dry run cannot create a namespace and its contents in one
// go (the namespace is never created), so it runs here with krm-system
// already installed.
func testServerDryRun(t *testing.T, c *cluster.State) {
	for _, k := range manifests.Targets {
		t.Run(k.Kustomization, func(t *testing.T) {
			out, err := kubectl(t.Context(), c.Kubectl, c.Kubeconfig, "apply", "-k", filepath.Join(manifestsDir, k.Kustomization), "--dry-run=server")
			if err != nil {
				t.Errorf("kubectl apply -k %s --dry-run=server: %v\n%s", k.Kustomization, err, out)
			}
		})
		t.Run(k.File, func(t *testing.T) {
			out, err := kubectl(t.Context(), c.Kubectl, c.Kubeconfig, "apply", "-f", filepath.Join(manifestsDir, k.File), "--dry-run=server")
			if err != nil {
				t.Errorf("kubectl apply -f %s --dry-run=server: %v\n%s", k.File, err, out)
			}
		})
	}
}

// uninstall deletes what the manifests create and waits until krm-system
// is gone, so that a later install starts clean.
func uninstall(t *testing.T, c *cluster.State, cs kubernetes.Interface) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, k := range manifests.Targets {
		out, err := kubectl(ctx, c.Kubectl, c.Kubeconfig, "delete", "-k", filepath.Join(manifestsDir, k.Kustomization), "--ignore-not-found", "--wait=false")
		if err != nil {
			t.Errorf("kubectl delete -k %s: %v\n%s", k.Kustomization, err, out)
		}
	}
	for ctx.Err() == nil {
		_, err := cs.CoreV1().Namespaces().Get(ctx, deploy.Namespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("namespace %s still exists 2m after deleting it", deploy.Namespace)
}

// startProcess is a deploy.StartFunc for tests: the process runs until the
// test ends, and its output is shown if the test failed.
func startProcess(t *testing.T) deploy.StartFunc {
	return func(name, binary string, args, env []string) error {
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), env...)
		var out lockedBuffer
		w := writerFunc(func(b []byte) (int, error) {
			out.writeLine(bytes.TrimSuffix(b, []byte("\n")))
			return len(b), nil
		})
		cmd.Stdout, cmd.Stderr = w, w
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			if t.Failed() {
				t.Logf("%s %v output:\n%s", name, args, out.String())
			}
		})
		return nil
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// testWriter logs each write to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// testStatusReader: krm-status-reader aggregates into view, so a cluster
// viewer may read the agent's status through --secure-listen (the plugin
// reads it first), and not the drift reports, which hold objects. Asked
// with SubjectAccessReviews, as the secure listener asks: kubectl auth
// can-i resolves types through the API server's discovery, which does not
// serve krm.io.
func testStatusReader(t *testing.T, cs kubernetes.Interface, _ *plugin) {
	const user = "krm-e2e-viewer"
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(t.Context(), crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(context.WithoutCancel(t.Context()), user, metav1.DeleteOptions{})
	})
	allowed := func(verb, resource string) (bool, error) {
		sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(t.Context(), &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: user, ResourceAttributes: &authorizationv1.ResourceAttributes{
				Group: "krm.io", Resource: resource, Verb: verb,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return sar.Status.Allowed, nil
	}
	// kube-controller-manager aggregates the rules into view.
	waitFor(t, 60*time.Second, "view to include krm-status-reader", func() error {
		for _, resource := range []string{"agentstatuses", "resourcestatuses"} {
			for _, verb := range []string{"get", "list"} {
				ok, err := allowed(verb, resource)
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("a viewer may not %s %s.krm.io", verb, resource)
				}
			}
		}
		return nil
	})
	for _, resource := range []string{"driftreports", "delayreports"} {
		if ok, err := allowed("get", resource); err != nil || ok {
			t.Errorf("a viewer may get %s.krm.io (%v), which krm-status-reader must not grant", resource, err)
		}
	}
}
