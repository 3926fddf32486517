package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/krm-project/krm/test/cluster/clustertest"
)

// TestOneUnreadableResource: an agent whose ServiceAccount may list pods in
// its namespace but not nodes is Ready, serves the pods, answers nodes 503
// with the API server's reason, and `kubectl krm status` (which connects
// only to a Ready agent) shows that reason. Before readiness was per
// resource, /readyz stayed 503 and status could not connect at all.
func TestOneUnreadableResource(t *testing.T) {
	c := clustertest.Get(t)
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ns := clustertest.Namespace(t, c)
	createPod(t, cs, ns, "readable", false)
	kubeconfig := restrictedKubeconfig(t, c, cs, ns, "pods-only", []rbacv1.PolicyRule{{
		APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"},
	}})
	p := startAgent(t, buildAgent(t), "--kubeconfig", kubeconfig, "--resources", "pods,nodes", "--namespace", ns, "--verify-interval", "5s")
	p.waitReady(t, 30*time.Second)

	resp, err := http.Get(p.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "serving 1 of 2 resources; cannot list nodes (") || !strings.Contains(string(body), "forbidden") {
		t.Errorf("/readyz: %d %q, want 200 naming nodes and the API server's refusal", resp.StatusCode, body)
	}

	plug := buildPlugin(t, c)
	if r := plug.krm(t, "get", "pods", "-n", ns, "--agent-url", p.URL); r.code != 0 || !strings.Contains(r.stdout, "readable") {
		t.Errorf("kubectl krm get pods: %s", r)
	}
	r := plug.krm(t, "get", "nodes", "--agent-url", p.URL)
	if r.code == 0 || !strings.Contains(r.stderr, "has not listed nodes yet") || !strings.Contains(r.stderr, "forbidden") {
		t.Errorf("kubectl krm get nodes: %s, want an error saying nodes cannot be listed and why", r)
	}
	st := plug.krm(t, "status", "--agent-url", p.URL)
	if st.code != 0 {
		t.Fatalf("kubectl krm status: %s", st)
	}
	if !strings.Contains(st.stdout, "Errors:\n  nodes: listing nodes: nodes is forbidden") {
		t.Errorf("kubectl krm status does not show why nodes are not served:\n%s", st.stdout)
	}
}
