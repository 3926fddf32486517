package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/krm-project/krm/pkg/connect"
	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// testPluginErrors checks that each way of failing to reach or use the agent
// ends `kubectl krm` with exit code 1 (2 for diff) and a message that says
// what is wrong.
func testPluginErrors(t *testing.T, c *cluster.State, cs kubernetes.Interface, bin string, p *plugin) {
	ctx := t.Context()
	// An agent for the cases that need one: it caches pods and nodes of one
	// namespace, which also holds its pod.
	agentNS := clustertest.Namespace(t, c)
	a := startAgent(t, bin, "--kubeconfig", c.Kubeconfig, "--resources", "pods,nodes", "--namespace", agentNS, "--verify-interval", "5s")
	a.waitReady(t, 30*time.Second)
	agentPod(t, c, cs, agentNS, "krm-agent-0", portOf(t, a.URL))

	// Through kubectl's dispatch; want are substrings of stderr.
	check := func(t *testing.T, r result, code int, want ...string) {
		t.Helper()
		if r.code != code {
			t.Errorf("exit code %d, want %d\n%s", r.code, code, r)
		}
		for _, w := range want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("stderr lacks %q\n%s", w, r)
			}
		}
	}

	t.Run("reachable", func(t *testing.T) {
		// The control for the cases below: this agent, found by its pod,
		// answers.
		r := p.krm(t, "get", "pods", "-n", agentNS, "--agent-namespace", agentNS)
		check(t, r, 0)
		if !strings.Contains(r.stdout, "krm-agent-0") {
			t.Errorf("kubectl krm get pods does not list the agent's pod:\n%s", r)
		}
	})

	t.Run("no agent pod", func(t *testing.T) {
		empty := clustertest.Namespace(t, c)
		r := p.krm(t, "get", "pods", "--agent-namespace", empty)
		check(t, r, 1, fmt.Sprintf("error: no krm agent pod in namespace %q with selector %q", empty, connect.DefaultSelector), connect.InstallHint)
		if r.stdout != "" {
			t.Errorf("stdout: %q, want nothing", r.stdout)
		}
		// A selector that matches nothing is named the same way.
		r = p.krm(t, "status", "--agent-namespace", agentNS, "--agent-selector", "app=nothing-here")
		check(t, r, 1, fmt.Sprintf("no krm agent pod in namespace %q with selector %q", agentNS, "app=nothing-here"))
		// diff's errors exit 2, as kubectl diff's do.
		r = p.krm(t, "diff", "verified", "--agent-namespace", empty)
		check(t, r, 2, "no krm agent pod in namespace")
	})

	t.Run("not ready", func(t *testing.T) {
		ns := clustertest.Namespace(t, c)
		pod := agentPodSpec("krm-agent-0")
		// No node has this label: the pod stays Pending.
		pod.Spec.NodeSelector = map[string]string{"krm-e2e/no-such-node": "true"}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		r := p.krm(t, "get", "pods", "--agent-namespace", ns)
		check(t, r, 1, "the krm agent is not ready", fmt.Sprintf("no pod in namespace %s with selector %s is Running and Ready: krm-agent-0 (Pending)", ns, connect.DefaultSelector))
	})

	t.Run("port-forward forbidden", func(t *testing.T) {
		// A user who may find the agent's pod but not port-forward to it.
		kubeconfig := restrictedKubeconfig(t, c, cs, agentNS, "finds-agent", []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
		})
		r := p.withKubeconfig(kubeconfig).krm(t, "get", "pods", "--agent-namespace", agentNS)
		check(t, r, 1, "port-forward forbidden", "needs the RBAC permission create on pods/portforward in namespace "+agentNS)
	})

	t.Run("pods list forbidden", func(t *testing.T) {
		kubeconfig := restrictedKubeconfig(t, c, cs, agentNS, "nobody", nil)
		r := p.withKubeconfig(kubeconfig).krm(t, "get", "pods", "--agent-namespace", agentNS)
		check(t, r, 1, "not allowed to find the krm agent: listing pods in namespace "+agentNS+" needs the RBAC permission list on pods there")
	})

	t.Run("unreachable", func(t *testing.T) {
		// A ready pod whose port leads nowhere.
		ns := clustertest.Namespace(t, c)
		agentPod(t, c, cs, ns, "krm-agent-0", closedPort(t))
		r := p.krm(t, "get", "pods", "--agent-namespace", ns)
		check(t, r, 1, "(through a port-forward to pod "+ns+"/krm-agent-0) is unreachable")

		url := fmt.Sprintf("http://127.0.0.1:%d", closedPort(t))
		r = p.krm(t, "get", "pods", "--agent-url", url)
		check(t, r, 1, "the krm agent at "+url+" is unreachable", "connection refused")
		r = p.krm(t, "diff", "verified", "--agent-url", url)
		check(t, r, 2, "the krm agent at "+url+" is unreachable")
	})

	t.Run("version skew", func(t *testing.T) {
		// An agent of another API version: alive, but without krm.io/v1alpha1.
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
		srv := httptest.NewServer(mux)
		defer srv.Close()
		r := p.krm(t, "get", "pods", "--agent-url", srv.URL)
		check(t, r, 1, "error: version skew: the agent at "+srv.URL+" does not serve krm's API krm.io/v1alpha1", "kubectl krm version")
		r = p.krm(t, "version", "--agent-url", srv.URL)
		check(t, r, 1, "version skew")
		if want := "Plugin Version: dev\nAgent Version: unknown (see the error below)\nAPI Version: krm.io/v1alpha1\n"; r.stdout != want {
			t.Errorf("kubectl krm version: stdout %q, want %q", r.stdout, want)
		}
	})

	t.Run("unknown resource type", func(t *testing.T) {
		r := p.krm(t, "get", "widgets", "--agent-namespace", agentNS)
		want := "error: the krm agent does not cache a resource type \"widgets\"; it caches: nodes, pods (start the agent with --resources to add more)\n"
		if r.code != 1 || r.stderr != want || r.stdout != "" {
			t.Errorf("kubectl krm get widgets:\n%s\nwant exit 1 and stderr %q", r, want)
		}
		r = p.krm(t, "diff", "verified", "deployments", "--agent-namespace", agentNS)
		check(t, r, 2, `does not cache a resource type "deployments"; it caches: nodes, pods`)
	})

	t.Run("bad flags", func(t *testing.T) {
		// Refused before the agent is looked for: no agent flags needed.
		r := p.krm(t, "get", "pods", "--view", "newest")
		if want := "error: --view: unknown view \"newest\": use aggregated, verified or streamed\n"; r.code != 1 || r.stderr != want {
			t.Errorf("kubectl krm get --view newest:\n%s\nwant exit 1 and stderr %q", r, want)
		}
		// -o is kubectl get's own, so is its complaint.
		want := p.run(t, "get", "pods", "-o", "yml")
		r = p.krm(t, "get", "pods", "-o", "yml")
		if r.code != 1 || want.code != 1 || r.stderr != want.stderr {
			t.Errorf("kubectl krm get -o yml:\n%s\nwant exit 1 and kubectl's stderr %q", r, want.stderr)
		}
		r = p.krm(t, "get", "pods", "--show-source", "-o", "json")
		check(t, r, 1, "--show-source adds table columns; it cannot be used with -o json")
		r = p.krm(t, "status", "-o", "yml")
		check(t, r, 1, `unable to match a printer suitable for the output format "yml", allowed formats are: custom-columns,custom-columns-file,go-template,go-template-file,json,jsonpath,jsonpath-as-json,jsonpath-file,kyaml,name,template,templatefile,wide,yaml`)
		r = p.krm(t, "diff", "verified", "-o", "wide")
		check(t, r, 2, `unable to match a printer suitable for the output format "wide", allowed formats are: custom-columns,custom-columns-file,diff,go-template,go-template-file,json,jsonpath,jsonpath-as-json,jsonpath-file,kyaml,name,template,templatefile,yaml`)
		r = p.krm(t, "get", "pods", "solo", "-A")
		check(t, r, 1, "a resource cannot be retrieved by name across all namespaces")
		r = p.krm(t, "get")
		check(t, r, 1, "you must specify the type of resource to get")
	})
}

// restrictedKubeconfig makes a ServiceAccount name in ns bound to a Role with
// rules, and writes a kubeconfig that authenticates as it with a token from
// the TokenRequest API.
func restrictedKubeconfig(t *testing.T, c *cluster.State, cs kubernetes.Interface, ns, name string, rules []rbacv1.PolicyRule) string {
	t.Helper()
	ctx := t.Context()
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if rules != nil {
		if _, err := cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	expiry := int64(600)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting a token for ServiceAccount %s/%s: %v", ns, name, err)
	}
	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["krm-local"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: "krm-local", AuthInfo: name, Namespace: ns}
	kc.CurrentContext = name
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	// RBAC takes effect through the authorizer's informers: wait until the
	// user can do what the role allows, and no more.
	rcfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	rcs, err := kubernetes.NewForConfig(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the ServiceAccount's permissions to apply", func() error {
		_, err := rcs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if rules == nil {
			if apierrors.IsForbidden(err) {
				return nil
			}
			return fmt.Errorf("listing pods: %v, want forbidden", err)
		}
		return err
	})
	return path
}
