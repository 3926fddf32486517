package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// authzDenyAfter is how long a revoked RoleBinding may still be honoured:
// the agent's allow cache (10s, --secure-listen's help) plus slack for the
// API server's RBAC informer and the poll.
const authzDenyAfter = 10*time.Second + 5*time.Second

// TestSecureListener runs the agent with --secure-listen and reads it with
// real ServiceAccount tokens from the TokenRequest API: each reads exactly
// what the API server lets it read, and losing the RoleBinding takes effect
// within the authorization cache's TTL.
func TestSecureListener(t *testing.T) {
	f := startSecureFixture(t, "pods,nodes")
	c, cs, nsA, nsB, kubeconfig := f.c, f.cs, f.nsA, f.nsB, f.kubeconfig
	kc, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	token := kc.AuthInfos["reader"].Token
	if token == "" {
		t.Fatal("the restricted kubeconfig has no token")
	}
	// A token whose ServiceAccount is gone: the TokenReview fails.
	goneToken := deletedServiceAccountToken(t, cs, nsA, "gone")
	expiredToken := expiredServiceAccountToken(t, c, cs, nsA, "expired")
	base := "https://" + f.addr

	// The certificate is self-signed; what matters here is who may read.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(path, auth string) (int, metav1.Status, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var st metav1.Status
		if json.Unmarshal(b, &st) != nil || st.Kind != "Status" {
			st = metav1.Status{}
		}
		return resp.StatusCode, st, string(b)
	}
	bearer := "Bearer " + token
	user := fmt.Sprintf("system:serviceaccount:%s:reader", nsA)

	// The namespace it may read.
	code, _, body := get("/api/v1/namespaces/"+nsA+"/pods", bearer)
	if code != http.StatusOK {
		t.Fatalf("listing pods in %s: %d %s", nsA, code, body)
	}
	var pods corev1.PodList
	if err := json.Unmarshal([]byte(body), &pods); err != nil || len(pods.Items) != 1 || pods.Items[0].Name != "readable" {
		t.Errorf("pods in %s: %v %s, want the one pod, readable", nsA, err, body)
	}
	if code, _, body := get("/api/v1/namespaces/"+nsA+"/pods/readable", bearer); code != http.StatusOK {
		t.Errorf("getting %s/readable: %d %s", nsA, code, body)
	}

	// What it may not: 403, worded as kube-apiserver words it.
	for path, want := range map[string]string{
		"/api/v1/pods":  fmt.Sprintf(`pods is forbidden: User %q cannot list resource "pods" in API group "" at the cluster scope`, user),
		"/api/v1/nodes": fmt.Sprintf(`nodes is forbidden: User %q cannot list resource "nodes" in API group "" at the cluster scope`, user),
		"/api/v1/namespaces/" + nsB + "/pods/hidden": fmt.Sprintf(`pods "hidden" is forbidden: User %q cannot get resource "pods" in API group "" in the namespace %q`, user, nsB),
		"/api/v1/namespaces/" + nsB + "/pods":        fmt.Sprintf(`pods is forbidden: User %q cannot list resource "pods" in API group "" in the namespace %q`, user, nsB),
	} {
		code, st, body := get(path, bearer)
		if code != http.StatusForbidden || st.Reason != metav1.StatusReasonForbidden {
			t.Errorf("GET %s: %d %s, want 403 Forbidden", path, code, body)
			continue
		}
		// The API server may add its authorizer's reason after a colon.
		if st.Message != want && (len(st.Message) <= len(want) || st.Message[:len(want)+1] != want+":") {
			t.Errorf("GET %s: message\n%s\nwant\n%s", path, st.Message, want)
		}
	}

	// No token, a malformed one, and a revoked one: 401.
	for name, auth := range map[string]string{
		"no token":                         "",
		"a malformed token":                "Bearer not-a-token",
		"a truncated token":                "Bearer " + token[:len(token)-4],
		"a deleted ServiceAccount's token": "Bearer " + goneToken,
		"an expired token":                 "Bearer " + expiredToken,
	} {
		code, st, body := get("/api/v1/namespaces/"+nsA+"/pods", auth)
		if code != http.StatusUnauthorized || st.Reason != metav1.StatusReasonUnauthorized {
			t.Errorf("%s: %d %s, want 401 Unauthorized", name, code, body)
		}
	}

	// client-go reads it like any API server, with a bearer token.
	rcs, err := kubernetes.NewForConfig(&rest.Config{Host: base, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	list, err := rcs.CoreV1().Pods(nsA).List(t.Context(), metav1.ListOptions{})
	if err != nil || len(list.Items) != 1 {
		t.Errorf("client-go list of %s: %v (%d pods), want the one pod", nsA, err, len(list.Items))
	}
	if _, err := rcs.CoreV1().Pods("").List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("client-go list of all namespaces: %v, want forbidden", err)
	}
	if _, err := rcs.Discovery().ServerVersion(); err != nil {
		t.Errorf("client-go /version: %v", err)
	}

	// Revoking the RoleBinding takes effect within the allow cache's TTL.
	if err := cs.RbacV1().RoleBindings(nsA).Delete(t.Context(), "reader", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	for {
		code, _, body := get("/api/v1/namespaces/"+nsA+"/pods", bearer)
		if code == http.StatusForbidden {
			t.Logf("the RoleBinding's removal took effect after %s", time.Since(revoked).Round(100*time.Millisecond))
			break
		}
		if code != http.StatusOK {
			t.Fatalf("listing pods in %s after revoking: %d %s", nsA, code, body)
		}
		if time.Since(revoked) > authzDenyAfter {
			t.Fatalf("still allowed %s after the RoleBinding was deleted, want 403 within %s", time.Since(revoked).Round(time.Second), authzDenyAfter)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// deletedServiceAccountToken returns a token of a ServiceAccount that no
// longer exists, so the API server rejects it on review.
func deletedServiceAccountToken(t *testing.T, cs kubernetes.Interface, ns, name string) string {
	t.Helper()
	ctx := t.Context()
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expiry := int64(600)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting a token for ServiceAccount %s/%s: %v", ns, name, err)
	}
	if err := cs.CoreV1().ServiceAccounts(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The API server reads ServiceAccounts through an informer: wait until
	// it rejects the token.
	waitFor(t, 30*time.Second, "the deleted ServiceAccount's token to be rejected", func() error {
		rev, err := cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: tr.Status.Token}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if rev.Status.Authenticated {
			return fmt.Errorf("still authenticated as %s", rev.Status.User.Username)
		}
		return nil
	})
	return tr.Status.Token
}

// secureFixture is what the secure listener's tests share: namespace nsA
// with a pod "readable" that ServiceAccount "reader" (kubeconfig) may get,
// list and watch, namespace nsB with a pod "hidden" it may not read, and
// the real agent serving --secure-listen at addr.
type secureFixture struct {
	c          *cluster.State
	cs         kubernetes.Interface
	nsA, nsB   string
	kubeconfig string
	addr       string
}

func startSecureFixture(t *testing.T, resources string) secureFixture {
	t.Helper()
	f := secureFixture{c: clustertest.Get(t)}
	cs, err := f.c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	f.cs = cs
	f.nsA, f.nsB = clustertest.Namespace(t, f.c), clustertest.Namespace(t, f.c)
	createPod(t, cs, f.nsA, "readable", false)
	createPod(t, cs, f.nsB, "hidden", false)
	f.kubeconfig = restrictedKubeconfig(t, f.c, cs, f.nsA, "reader", []rbacv1.PolicyRule{{
		APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"},
	}})
	port, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	f.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	startAgent(t, buildAgent(t), "--kubeconfig", f.c.Kubeconfig, "--resources", resources, "--secure-listen", f.addr).waitReady(t, 30*time.Second)
	return f
}
