package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/client"
	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/cluster/clustertest"
	"github.com/krm-project/krm/test/deploy"
)

// chartDir is the repo's chart, seen from test/e2e.
var chartDir = filepath.Join("..", "..", "charts", "krm")

// helmCLI runs the cached helm against the local cluster, with Helm's own
// configuration, cache and data in a temporary directory.
type helmCLI struct {
	path string
	env  []string
}

func newHelm(t *testing.T, c *cluster.State) *helmCLI {
	t.Helper()
	path, err := cluster.EnsureHelm(t.Context(), cluster.DefaultConfig().Cache, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	return &helmCLI{path: path, env: append(os.Environ(),
		"KUBECONFIG="+c.Kubeconfig,
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)}
}

func (h *helmCLI) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, h.path, args...)
	cmd.Env = h.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// TestHelm installs the chart with `helm install` as a user would, runs the
// agent behind the chart's agent pod (test/deploy, as for the kustomize
// install), reads through it with the plugin's defaults, upgrades to a
// shorter verify interval and sees it take effect, rolls back, uninstalls,
// and checks that nothing of the release is left anywhere in the cluster.
//
// The release owns krm-system and the ClusterRole, as TestManifests does
// (clustertest.LockInstall): it removes a kustomize install first and its
// own at the end.
func TestHelm(t *testing.T) {
	c := clustertest.Get(t)
	clustertest.LockInstall(t, c)
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	bin := buildAgent(t)
	p := buildPlugin(t, c)
	h := newHelm(t, c)
	ns := deploy.Namespace

	uninstall(t, c, cs)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := h.run(ctx, "uninstall", "krm", "-n", ns, "--ignore-not-found", "--wait"); err != nil {
			t.Error(err)
		}
		uninstall(t, c, cs)
	})
	// As README's Install says: the namespace first, labelled for the
	// restricted Pod Security Standard (the chart does not own it).
	_, err = cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   ns,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// Wrong values are refused before anything is installed, with a
	// message naming the value (values.schema.json, the templates' checks).
	for _, bad := range []struct{ set, want string }{
		{"verifyInterval=soon", "verifyInterval"},
		{"ha.enabled=true,store.type=memory", "store.type redis"},
	} {
		out, err := h.run(t.Context(), "install", "krm", chartDir, "-n", ns, "--set", bad.set)
		if err == nil || !strings.Contains(string(out), bad.want) {
			t.Errorf("helm install --set %s: got %v, want an error naming %s:\n%s", bad.set, err, bad.want, out)
		}
	}
	if out, err := h.run(t.Context(), "list", "-n", ns, "-q"); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("after refused installs helm list shows %q (%v), want no release", out, err)
	}

	dir := t.TempDir()
	apply := func(t *testing.T, agents int, args ...string) *deploy.Installed {
		t.Helper()
		inst, err := deploy.Apply(t.Context(), deploy.Config{
			Cluster: c,
			Install: func(ctx context.Context) ([]byte, error) { return h.run(ctx, args...) },
			Agent:   bin,
			Dir:     dir,
			Start:   startProcess(t),
			Log:     testWriter{t},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(inst.Agents) != agents {
			t.Fatalf("helm %s runs %d agents, want %d", strings.Join(args, " "), len(inst.Agents), agents)
		}
		return inst
	}

	// Installed from the package, as from a release's chart repository
	// (make dist-chart packages it the same way).
	pkgDir := t.TempDir()
	if _, err := h.run(t.Context(), "package", chartDir, "--destination", pkgDir); err != nil {
		t.Fatal(err)
	}
	pkgs, err := filepath.Glob(filepath.Join(pkgDir, "krm-*.tgz"))
	if err != nil || len(pkgs) != 1 {
		t.Fatalf("helm package wrote %v (%v), want one krm-<version>.tgz", pkgs, err)
	}
	apply(t, 1, "install", "krm", pkgs[0], "-n", ns, "--wait", "--timeout", "2m")
	secret := redisSecret(t, cs)
	if pw := string(secret["password"]); len(pw) != 43 || string(secret["redis.conf"]) != "requirepass "+pw {
		t.Errorf("Secret krm-redis: a password of %d bytes and redis.conf %d bytes, want 43 generated ones and requirepass with them", len(pw), len(secret["redis.conf"]))
	}

	wl := clustertest.Namespace(t, c)
	createWorkload(t, cs, wl)
	waitFor(t, 60*time.Second, "the workload in "+wl+" to run", func() error {
		return workloadRunning(t.Context(), cs, wl)
	})
	// The plugin finds the chart's agent pod by its label in krm-system and
	// port-forwards to it, as for the kustomize install.
	sameAsKubectl(t, p, []string{"get", "pods", "-n", wl}, nil)
	sameAsKubectl(t, p, []string{"get", "deployments,services,persistentvolumeclaims,ingresses", "-n", wl}, nil)
	sameAsKubectl(t, p, []string{"get", "nodes"}, nil)
	// Every resource of the chart's watch list is readable with the
	// ClusterRole generated from the same list.
	for _, r := range resourceStatus(t, p) {
		if r.LastError != "" || !r.StreamConnected || r.Verifications == 0 {
			t.Errorf("resource %s: connected=%t verifications=%d error=%q", r.Name, r.StreamConnected, r.Verifications, r.LastError)
		}
	}

	t.Run("upgrade", func(t *testing.T) {
		inst := apply(t, 1, "upgrade", "krm", chartDir, "-n", ns, "--wait", "--timeout", "2m", "--set", "verifyInterval=2s")
		if args := agentArgsInCluster(t, cs); !slices.Contains(args, "--verify-interval=2s") {
			t.Errorf("after the upgrade the agent's args are %q, want --verify-interval=2s", args)
		}
		if !bytesMapEqual(secret, redisSecret(t, cs)) {
			t.Error("helm upgrade changed the generated Secret krm-redis; lookup should keep it")
		}
		// The default is 60s, so at most one LIST in 15s; at 2s a LIST
		// comes every 2s plus its wait (up to 2s) for the watch to catch
		// up, some 4 in 15s. Counted by the agent behind the new pod, and
		// through the plugin's port-forward, which must find that pod.
		ac, err := client.New(inst.Agents[0].URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		before := directVerifications(t, ac, "pods")
		time.Sleep(15 * time.Second)
		after := directVerifications(t, ac, "pods")
		if after-before < 2 {
			t.Errorf("pods verified %d times in 15s after the upgrade to verifyInterval=2s, want 2 or more", after-before)
		}
		if got := verifications(t, p, "pods"); got < after {
			t.Errorf("through the plugin pods were verified %d times, the agent behind the new pod says %d: the plugin reads another agent", got, after)
		}
		sameAsKubectl(t, p, []string{"get", "pods", "-n", wl}, nil)
	})

	t.Run("rollback", func(t *testing.T) {
		apply(t, 1, "rollback", "krm", "1", "-n", ns, "--wait", "--timeout", "2m")
		if args := agentArgsInCluster(t, cs); slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--verify-interval") }) {
			t.Errorf("after the rollback the agent's args are %q, want no --verify-interval (revision 1)", args)
		}
		if !bytesMapEqual(secret, redisSecret(t, cs)) {
			t.Error("helm rollback changed the generated Secret krm-redis")
		}
		out, err := h.run(t.Context(), "history", "krm", "-n", ns, "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var hist []struct {
			Revision int    `json:"revision"`
			Status   string `json:"status"`
		}
		if err := json.Unmarshal(out, &hist); err != nil {
			t.Fatalf("helm history -o json: %v\n%s", err, out)
		}
		if len(hist) != 3 || hist[2].Status != "deployed" {
			t.Errorf("helm history after install, upgrade and rollback: %+v, want 3 revisions, the last deployed", hist)
		}
		sameAsKubectl(t, p, []string{"get", "nodes"}, nil)
	})

	// examples/ha.yaml: two replicas elect a leader with the chart's Role.
	t.Run("ha", func(t *testing.T) {
		inst := apply(t, 2, "upgrade", "krm", chartDir, "-n", ns, "--wait", "--timeout", "2m", "--values", filepath.Join(chartDir, "examples", "ha.yaml"))
		waitFor(t, 30*time.Second, "one leader and one follower", func() error {
			var roles []string
			for _, a := range inst.Agents {
				ac, err := client.New(a.URL, nil)
				if err != nil {
					return err
				}
				st, err := ac.AgentStatus(t.Context())
				if err != nil {
					return fmt.Errorf("the AgentStatus of %s: %w", a.Pod, err)
				}
				roles = append(roles, st.Status.Role)
			}
			slices.Sort(roles)
			if !slices.Equal(roles, []string{"follower", "leader"}) {
				return fmt.Errorf("the replicas' roles are %q", roles)
			}
			return nil
		})
		sameAsKubectl(t, p, []string{"get", "nodes"}, nil)
	})

	t.Run("uninstall", func(t *testing.T) {
		// The search sees the release while it is there: a search that
		// finds nothing proves nothing.
		installed := leftovers(t, c, ns)
		for _, want := range []string{"clusterroles/krm-agent", "clusterrolebindings/krm-agent", ns + "/secrets/krm-redis",
			ns + "/deployments/krm-agent", ns + "/pods/", ns + "/replicasets/krm-redis-"} {
			if !slices.ContainsFunc(installed, func(s string) bool { return strings.HasPrefix(s, want) }) {
				t.Errorf("before helm uninstall the search for leftovers does not find %s; it finds %q", want, installed)
			}
		}
		if _, err := h.run(t.Context(), "uninstall", "krm", "-n", ns, "--wait", "--timeout", "2m"); err != nil {
			t.Fatal(err)
		}
		// The generated Secrets go with the release: they guard a cache
		// that has no persistence, and a kept Secret would be one more
		// thing to delete by hand.
		var left []string
		waitFor(t, 90*time.Second, "nothing of the release to be left", func() error {
			left = leftovers(t, c, ns)
			if len(left) > 0 {
				return fmt.Errorf("left: %s", strings.Join(left, ", "))
			}
			return nil
		})
	})
}

func redisSecret(t *testing.T, cs kubernetes.Interface) map[string][]byte {
	t.Helper()
	sec, err := cs.CoreV1().Secrets(deploy.Namespace).Get(t.Context(), deploy.RedisName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the chart's Secret krm-redis: %v", err)
	}
	return sec.Data
}

func bytesMapEqual(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func agentArgsInCluster(t *testing.T, cs kubernetes.Interface) []string {
	t.Helper()
	d, err := cs.AppsV1().Deployments(deploy.Namespace).Get(t.Context(), deploy.AgentName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "agent" {
			return c.Args
		}
	}
	t.Fatalf("deployment %s has no container agent", deploy.AgentName)
	return nil
}

func resourceStatus(t *testing.T, p *plugin) []krmv1alpha1.ResourceState {
	t.Helper()
	r := p.krm(t, "status", "-o", "json")
	if r.code != 0 {
		t.Fatalf("kubectl krm status: %s", r)
	}
	var list krmv1alpha1.ResourceStatusList
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("kubectl krm status -o json: %v\n%s", err, r.stdout)
	}
	var out []krmv1alpha1.ResourceState
	for _, item := range list.Items {
		out = append(out, item.Status)
	}
	if len(out) == 0 {
		t.Fatalf("kubectl krm status lists no resources:\n%s", r.stdout)
	}
	return out
}

func directVerifications(t *testing.T, ac *client.Client, resource string) int64 {
	t.Helper()
	list, err := ac.ResourceStatuses(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, item := range list.Items {
		if item.Status.Name == resource {
			return item.Status.Verifications
		}
	}
	t.Fatalf("the agent's status has no %s", resource)
	return 0
}

func verifications(t *testing.T, p *plugin, resource string) int64 {
	t.Helper()
	for _, r := range resourceStatus(t, p) {
		if r.Name == resource {
			return r.Verifications
		}
	}
	t.Fatalf("kubectl krm status has no %s", resource)
	return 0
}

// leftovers lists every object in the cluster, cluster-scoped ones
// included, that belongs to the release: labelled part of krm or named as
// one of its pods' apps (ReplicaSets and Pods carry only that label), and
// Helm's own release records.
func leftovers(t *testing.T, c *cluster.State, ns string) []string {
	t.Helper()
	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lists, err := cs.Discovery().ServerPreferredResources()
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	selectors := []string{
		"app.kubernetes.io/part-of=krm",
		"app.kubernetes.io/name in (krm-agent,krm-redis,krm-influxdb)",
		"owner=helm,name=krm",
	}
	var left []string
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range l.APIResources {
			if !slices.Contains(r.Verbs, "list") || strings.Contains(r.Name, "/") {
				continue
			}
			for _, sel := range selectors {
				objs, err := dyn.Resource(gv.WithResource(r.Name)).List(t.Context(), metav1.ListOptions{LabelSelector: sel})
				if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
					continue
				}
				if err != nil {
					t.Fatalf("listing %s: %v", r.Name, err)
				}
				for _, o := range objs.Items {
					name := r.Name + "/" + o.GetName()
					if o.GetNamespace() != "" {
						name = o.GetNamespace() + "/" + name
					}
					if !slices.Contains(left, name) {
						left = append(left, name)
					}
				}
			}
		}
	}
	// And whatever is in the namespace, labelled or not, but what every
	// namespace has, the Lease of --leader-elect, which the agents (not
	// Helm) create at run time and which goes with the namespace
	// (charts/krm/README.md), and kwok's PortForwards, which this harness
	// (deploy.Apply) made to reach the processes behind the pods.
	for _, l := range lists {
		gv, _ := schema.ParseGroupVersion(l.GroupVersion)
		for _, r := range l.APIResources {
			if !r.Namespaced || !slices.Contains(r.Verbs, "list") || strings.Contains(r.Name, "/") || r.Name == "events" || r.Name == "portforwards" {
				continue
			}
			objs, err := dyn.Resource(gv.WithResource(r.Name)).Namespace(ns).List(t.Context(), metav1.ListOptions{})
			if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
				continue
			}
			if err != nil {
				t.Fatalf("listing %s in %s: %v", r.Name, ns, err)
			}
			for _, o := range objs.Items {
				name := ns + "/" + r.Name + "/" + o.GetName()
				switch name {
				case ns + "/configmaps/kube-root-ca.crt", ns + "/serviceaccounts/default", ns + "/leases/" + deploy.AgentName:
					continue
				}
				if !slices.Contains(left, name) {
					left = append(left, name)
				}
			}
		}
	}
	// And by name, whatever their labels: what the chart names in the
	// namespace, and its cluster-scoped RBAC.
	for _, name := range []string{"krm-redis", "krm-influxdb"} {
		if _, err := cs.CoreV1().Secrets(ns).Get(t.Context(), name, metav1.GetOptions{}); err == nil {
			left = append(left, ns+"/secrets/"+name)
		}
	}
	for _, name := range []string{"krm-agent", "krm-agent:auth-delegator"} {
		if _, err := cs.RbacV1().ClusterRoleBindings().Get(t.Context(), name, metav1.GetOptions{}); err == nil {
			left = append(left, "clusterrolebindings/"+name)
		}
	}
	if _, err := cs.RbacV1().ClusterRoles().Get(t.Context(), "krm-agent", metav1.GetOptions{}); err == nil {
		left = append(left, "clusterroles/krm-agent")
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Get(t.Context(), deploy.ServiceAccount, metav1.GetOptions{}); err == nil {
		left = append(left, ns+"/serviceaccounts/"+deploy.ServiceAccount)
	}
	slices.Sort(left)
	return left
}
