package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// TestSecureHistory reads history through the real agent's --secure-listen
// with real ServiceAccount tokens: an object's revisions need get on the
// object, a LIST from history (Exact resourceVersion, at=) needs list, as
// kube-apiserver asks for its own GET and LIST; through the API and through
// `kubectl krm history` and `get --at`.
func TestSecureHistory(t *testing.T) {
	f := startSecureFixture(t, "pods,deployments")
	c, cs, nsA := f.c, f.cs, f.nsA
	ctx := t.Context()
	createDeployment(t, cs, nsA, "x", 1)
	scaleDeployment(t, cs, nsA, "x", 2)
	d, err := cs.AppsV1().Deployments(nsA).Get(ctx, "x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rv := d.ResourceVersion

	// reader (the fixture's) may read pods in nsA, not deployments. getter
	// may get deployments in nsA, lister may also list them; each lives in
	// a namespace of its own and is granted nsA's deployments there.
	grant := func(name string, verbs ...string) (kubeconfig, user string) {
		home := clustertest.Namespace(t, c)
		kubeconfig = restrictedKubeconfig(t, c, cs, home, name, []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}})
		user = fmt.Sprintf("system:serviceaccount:%s:%s", home, name)
		if _, err := cs.RbacV1().Roles(nsA).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: verbs}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.RbacV1().RoleBindings(nsA).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: home}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		grantKrmStatus(t, cs, kubeconfig, home, name)
		// The agent caches a denial for 10s: ask the API server until the
		// Role applies.
		waitSelfAllowed(t, kubeconfig, authorizationv1.ResourceAttributes{Namespace: nsA, Group: "apps", Resource: "deployments", Verb: verbs[len(verbs)-1]})
		return kubeconfig, user
	}
	getterKC, getter := grant("getter", "get")
	listerKC, _ := grant("lister", "get", "list")
	readerKC, reader := f.kubeconfig, fmt.Sprintf("system:serviceaccount:%s:reader", nsA)
	grantKrmStatus(t, cs, readerKC, nsA, "reader")

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(kubeconfig, path string) (int, string) {
		t.Helper()
		kc, err := clientcmd.LoadFromFile(kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+f.addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+kc.AuthInfos[kc.CurrentContext].Token)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	revisions := "/apis/krm.io/v1alpha1/revisions?resource=deployments.apps&namespace=" + nsA + "&name=x"
	waitFor(t, 30*time.Second, "the agent's history to reach resourceVersion "+rv, func() error {
		code, body := get(getterKC, revisions)
		if code != http.StatusOK {
			return fmt.Errorf("%d %s", code, body)
		}
		if !strings.Contains(body, `"resourceVersion":"`+rv+`"`) {
			return errNotYet(rv)
		}
		return nil
	})
	at := time.Now().UTC().Format(time.RFC3339Nano)
	exact := "/apis/apps/v1/namespaces/" + nsA + "/deployments?resourceVersion=" + rv + "&resourceVersionMatch=Exact"
	atList := "/apis/apps/v1/namespaces/" + nsA + "/deployments?at=" + at
	forbiddenGet := func(user string) string {
		return fmt.Sprintf(`deployments.apps "x" is forbidden: User %q cannot get resource "deployments" in API group "apps" in the namespace %q`, user, nsA)
	}
	forbiddenList := func(user string) string {
		return fmt.Sprintf(`deployments.apps is forbidden: User %q cannot list resource "deployments" in API group "apps" in the namespace %q`, user, nsA)
	}

	t.Run("API", func(t *testing.T) {
		for _, tc := range []struct {
			who, kubeconfig, path string
			code                  int
			says                  string
		}{
			{"reader", readerKC, revisions, 403, forbiddenGet(reader)},
			{"reader", readerKC, exact, 403, forbiddenList(reader)},
			{"reader", readerKC, atList, 403, forbiddenList(reader)},
			{"getter", getterKC, revisions, 200, `"kind":"RevisionList"`},
			{"getter", getterKC, exact, 403, forbiddenList(getter)},
			{"getter", getterKC, atList, 403, forbiddenList(getter)},
			{"lister", listerKC, revisions, 200, `"kind":"RevisionList"`},
			{"lister", listerKC, exact, 200, `"resourceVersion":"` + rv + `"`},
			{"lister", listerKC, atList, 200, `"name":"x"`},
		} {
			code, body := get(tc.kubeconfig, tc.path)
			said := body
			if code != http.StatusOK {
				var st metav1.Status
				_ = json.Unmarshal([]byte(body), &st)
				said = st.Message
			}
			if code != tc.code || !strings.Contains(said, tc.says) {
				t.Errorf("%s GET %s: %d %s\nwant %d with %s", tc.who, tc.path, code, body, tc.code, tc.says)
			}
			if tc.code == 403 && strings.Contains(body, `"replicas"`) {
				t.Errorf("%s GET %s: a refusal shows the object: %s", tc.who, tc.path, body)
			}
		}
		// What the getter reads is the deployment's history.
		_, body := get(getterKC, revisions)
		var list krmv1alpha1.RevisionList
		if err := json.Unmarshal([]byte(body), &list); err != nil || len(list.Items) < 2 || list.Items[0].Event != "ADDED" {
			t.Errorf("the getter's history of x: %v %s, want ADDED and the scale", err, body)
		}
	})

	p := buildPlugin(t, c)
	secure := []string{"--agent-url", "https://" + f.addr, "--agent-insecure-skip-tls-verify"}
	t.Run("plugin", func(t *testing.T) {
		for _, tc := range []struct {
			who, kubeconfig string
			args            []string
			code            int
			stdout, stderr  string
		}{
			{"reader", readerKC, []string{"history", "deployment/x", "-n", nsA}, 1, "", forbiddenGet(reader)},
			{"reader", readerKC, []string{"get", "deployments", "-n", nsA, "--at", at}, 1, "", forbiddenList(reader)},
			{"getter", getterKC, []string{"history", "deployment/x", "-n", nsA}, 0, "ADDED", ""},
			{"getter", getterKC, []string{"get", "deployments", "-n", nsA, "--at", at}, 1, "", forbiddenList(getter)},
			{"lister", listerKC, []string{"history", "deployment/x", "-n", nsA}, 0, "spec.replicas", ""},
			{"lister", listerKC, []string{"get", "deployments", "-n", nsA, "--at", at, "-o", "jsonpath={.items[*].spec.replicas}"}, 0, "2", ""},
		} {
			r := p.withKubeconfig(tc.kubeconfig).krm(t, append(tc.args, secure...)...)
			if r.code != tc.code || !strings.Contains(r.stdout, tc.stdout) || !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("%s: kubectl krm %s: want exit %d, stdout with %q, stderr with %q\n%s", tc.who, strings.Join(tc.args, " "), tc.code, tc.stdout, tc.stderr, r)
			}
			if tc.code != 0 && strings.Contains(r.stdout, "x") {
				t.Errorf("%s: kubectl krm %s printed the refused object\n%s", tc.who, strings.Join(tc.args, " "), r)
			}
		}
	})
}

// waitSelfAllowed waits until kubeconfig's user may do attrs, as the API
// server answers a SelfSubjectAccessReview.
func waitSelfAllowed(t *testing.T, kubeconfig string, attrs authorizationv1.ResourceAttributes) {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("%s %s in %s to be allowed", attrs.Verb, attrs.Resource, attrs.Namespace), func() error {
		rev, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(t.Context(), &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs},
		}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if !rev.Status.Allowed {
			return errNotYet("not allowed")
		}
		return nil
	})
}
