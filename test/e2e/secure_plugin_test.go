package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/connect"
)

// TestSecurePlugin runs the real plugin against the real agent's
// --secure-listen with real ServiceAccount tokens: `kubectl krm get` and
// `kubectl krm proxy` read as the kubeconfig's user, exactly what the API
// server lets that user read, with a token or an exec plugin; a kubeconfig
// the agent cannot check is refused up front.
func TestSecurePlugin(t *testing.T) {
	f := startSecureFixture(t, "pods")
	c, cs, nsA, kubeconfig := f.c, f.cs, f.nsA, f.kubeconfig
	// reader may also read the agent's own status objects, which the
	// plugin reads first.
	user := fmt.Sprintf("system:serviceaccount:%s:reader", nsA)
	grantKrmStatus(t, cs, kubeconfig, nsA, "reader")
	agentURL := "https://" + f.addr
	// The agent runs without --tls-cert-file: its certificate is
	// self-signed.
	secure := []string{"--agent-url", agentURL, "--agent-insecure-skip-tls-verify"}

	p := buildPlugin(t, c)
	reader := p.withKubeconfig(kubeconfig)
	check := func(t *testing.T, r result, code int, stdout, stderr []string) {
		t.Helper()
		if r.code != code {
			t.Errorf("exit code %d, want %d\n%s", r.code, code, r)
		}
		for _, w := range stdout {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("stdout lacks %q\n%s", w, r)
			}
		}
		for _, w := range stderr {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("stderr lacks %q\n%s", w, r)
			}
		}
	}
	forbiddenAll := fmt.Sprintf(`pods is forbidden: User %q cannot list resource "pods" in API group "" at the cluster scope`, user)

	t.Run("a token reads its namespace", func(t *testing.T) {
		r := reader.krm(t, append([]string{"get", "pods", "-n", nsA}, secure...)...)
		check(t, r, 0, []string{"readable"}, nil)
	})
	t.Run("a token is refused all namespaces", func(t *testing.T) {
		r := reader.krm(t, append([]string{"get", "pods", "-A"}, secure...)...)
		check(t, r, 1, nil, []string{forbiddenAll})
		if strings.Contains(r.stdout, "hidden") {
			t.Errorf("printed another namespace's pod\n%s", r)
		}
	})
	t.Run("an exec plugin's token reads its namespace", func(t *testing.T) {
		r := p.withKubeconfig(execKubeconfig(t, kubeconfig)).krm(t, append([]string{"get", "pods", "-n", nsA}, secure...)...)
		check(t, r, 0, []string{"readable"}, nil)
	})
	t.Run("the admin's client certificate is refused up front", func(t *testing.T) {
		kc, err := clientcmd.LoadFromFile(c.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		u := kc.AuthInfos[kc.Contexts[kc.CurrentContext].AuthInfo]
		if u == nil || (len(u.ClientCertificateData) == 0 && u.ClientCertificate == "") || u.Token != "" || u.Exec != nil {
			t.Skip("the cluster's admin kubeconfig does not authenticate with a client certificate only")
		}
		r := p.krm(t, append([]string{"get", "pods", "-n", nsA}, secure...)...)
		check(t, r, 1, nil, []string{"your kubeconfig's user authenticates with a client certificate only, which the krm agent at " + agentURL + " cannot check: " + connect.TokenHint})
	})
	t.Run("impersonation is refused", func(t *testing.T) {
		r := reader.krm(t, append([]string{"get", "pods", "-n", nsA, "--as", "jane"}, secure...)...)
		check(t, r, 1, nil, []string{"impersonation (--as, --as-group, --as-uid or the kubeconfig's as: fields) does not work with --agent-url " + agentURL})
	})
	t.Run("an unverified certificate names the flags", func(t *testing.T) {
		r := reader.krm(t, "get", "pods", "-n", nsA, "--agent-url", agentURL)
		check(t, r, 1, nil, []string{"the agent's TLS certificate is not trusted", "--agent-certificate-authority FILE", "--agent-insecure-skip-tls-verify"})
	})

	t.Run("proxy", func(t *testing.T) {
		proxyURL := startKrmProxy(t, reader, agentURL, "--agent-insecure-skip-tls-verify")
		// kubectl with no credentials of its own: what it reads, it reads
		// as the proxy's user.
		anonymous := filepath.Join(t.TempDir(), "kubeconfig")
		kc := clientcmdapi.NewConfig()
		kc.Clusters["proxy"] = &clientcmdapi.Cluster{Server: proxyURL}
		kc.AuthInfos["nobody"] = &clientcmdapi.AuthInfo{}
		kc.Contexts["proxy"] = &clientcmdapi.Context{Cluster: "proxy", AuthInfo: "nobody"}
		kc.CurrentContext = "proxy"
		if err := clientcmd.WriteToFile(*kc, anonymous); err != nil {
			t.Fatal(err)
		}
		kubectl := p.withKubeconfig(anonymous)
		r := kubectl.run(t, "--server", proxyURL, "get", "pods", "-n", nsA)
		check(t, r, 0, []string{"readable"}, nil)
		r = kubectl.run(t, "--server", proxyURL, "get", "pods", "-A")
		check(t, r, 1, nil, []string{"Error from server (Forbidden): " + forbiddenAll})
		if strings.Contains(r.stdout, "hidden") {
			t.Errorf("printed another namespace's pod\n%s", r)
		}
	})
}

// grantKrmStatus lets ServiceAccount ns/name read the agent's status
// objects (krm.io agentstatuses and resourcestatuses, no object content)
// and waits until kubeconfig's user may.
func grantKrmStatus(t *testing.T, cs kubernetes.Interface, kubeconfig, ns, name string) {
	t.Helper()
	ctx := t.Context()
	role := "krm-status-reader-" + ns
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: role},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{krmv1alpha1.GroupName},
			Resources: []string{krmv1alpha1.ResourceAgentStatuses, krmv1alpha1.ResourceResourceStatuses},
			Verbs:     []string{"get", "list"},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoles().Delete(ctx, role, metav1.DeleteOptions{})
	})
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(ctx, role, metav1.DeleteOptions{})
	})
	// The agent caches a denial for 10s: ask the API server, not the
	// agent, until the binding applies.
	rcfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rcs, err := kubernetes.NewForConfig(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the krm.io status permissions to apply", func() error {
		for _, attrs := range []authorizationv1.ResourceAttributes{
			{Group: krmv1alpha1.GroupName, Resource: krmv1alpha1.ResourceAgentStatuses, Verb: "get"},
			{Group: krmv1alpha1.GroupName, Resource: krmv1alpha1.ResourceResourceStatuses, Verb: "list"},
		} {
			rev, err := rcs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs},
			}, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			if !rev.Status.Allowed {
				return fmt.Errorf("%s %s not allowed yet", attrs.Verb, attrs.Resource)
			}
		}
		return nil
	})
}

// execKubeconfig is kubeconfig with its user's token given by an exec
// credential plugin instead, as cloud providers' kubeconfigs do.
func execKubeconfig(t *testing.T, kubeconfig string) string {
	t.Helper()
	kc, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, u := range kc.AuthInfos {
		plugin := filepath.Join(dir, "credential-plugin-"+name)
		script := "#!/bin/sh\ncat <<'EOF'\n" +
			`{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"` + u.Token + `"}}` +
			"\nEOF\n"
		if err := os.WriteFile(plugin, []byte(script), 0o700); err != nil {
			t.Fatal(err)
		}
		kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{
			Command: plugin, APIVersion: "client.authentication.k8s.io/v1", InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
		}}
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}
