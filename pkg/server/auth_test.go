package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/rest"
)

const testUser = "system:serviceaccount:team-a:reader"

// tokenAuthenticator knows one token, parsed from the Authorization
// header by k8s.io/apiserver's own bearer-token authenticator.
func tokenAuthenticator() authenticator.Request {
	return bearertoken.New(authenticator.TokenFunc(func(_ context.Context, token string) (*authenticator.Response, bool, error) {
		if token != "good-token" {
			return nil, false, nil
		}
		return &authenticator.Response{User: &user.DefaultInfo{Name: testUser, Groups: []string{"system:authenticated"}}}, true, nil
	}))
}

// recordingAuthorizer allows what allow says and records what it was asked.
type recordingAuthorizer struct {
	mu     sync.Mutex
	asked  []authorizer.AttributesRecord
	allow  func(authorizer.Attributes) bool
	reason string
	err    error
}

func (a *recordingAuthorizer) Authorize(_ context.Context, attrs authorizer.Attributes) (authorizer.Decision, string, error) {
	rec, ok := attrs.(*authorizer.AttributesRecord)
	if !ok {
		return authorizer.DecisionDeny, "", fmt.Errorf("asked with a %T, want the *authorizer.AttributesRecord kube-apiserver passes", attrs)
	}
	a.mu.Lock()
	a.asked = append(a.asked, *rec)
	a.mu.Unlock()
	if a.allow != nil && a.allow(attrs) {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, a.reason, a.err
}

func (a *recordingAuthorizer) last(t *testing.T) authorizer.AttributesRecord {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.asked) == 0 {
		t.Fatal("the authorizer was not asked")
	}
	return a.asked[len(a.asked)-1]
}

func startSecureServer(t *testing.T, authz authorizer.UnconditionalAuthorizer) *httptest.Server {
	t.Helper()
	s, _ := newTestServer(t)
	ts := httptest.NewTLSServer(s.SecureHandler(tokenAuthenticator(), authz))
	t.Cleanup(ts.Close)
	return ts
}

// call sends method path with the Authorization header auth ("" for
// none) and returns the code and the Status, if the body is one.
func call(t *testing.T, ts *httptest.Server, method, path, auth string) (int, metav1.Status, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var st metav1.Status
	if json.Unmarshal(b, &st) != nil || st.Kind != "Status" {
		st = metav1.Status{}
	}
	return resp.StatusCode, st, string(b)
}

func TestSecureHandlerRefusesWithoutAValidToken(t *testing.T) {
	authz := &recordingAuthorizer{allow: func(authorizer.Attributes) bool { return true }}
	ts := startSecureServer(t, authz)
	for name, auth := range map[string]string{
		"no token":        "",
		"empty bearer":    "Bearer ",
		"unknown token":   "Bearer bad-token",
		"truncated":       "Bearer good-toke",
		"two spaces":      "Bearer  good-token",
		"basic":           "Basic Z29vZC10b2tlbjo=",
		"no scheme":       "good-token",
		"lowercase extra": "bearer",
	} {
		for _, path := range []string{"/api/v1/namespaces/dev/pods", "/version", "/healthz", "/apis/krm.io/v1alpha1/resourcestatuses"} {
			code, st, body := call(t, ts, http.MethodGet, path, auth)
			if code != http.StatusUnauthorized || st.Reason != metav1.StatusReasonUnauthorized || st.Message != "Unauthorized" {
				t.Errorf("%s, GET %s: %d %s, want 401 with a Status, reason Unauthorized", name, path, code, body)
			}
		}
	}
	if len(authz.asked) != 0 {
		t.Errorf("the authorizer was asked about unauthenticated requests: %+v", authz.asked)
	}
	if code, _, body := call(t, ts, http.MethodGet, "/api/v1/namespaces/dev/pods", "Bearer good-token"); code != http.StatusOK {
		t.Errorf("with the good token: %d %s", code, body)
	}
}

// The web view's files hold no data and load without a token; what they
// show they read from the API, which still refuses a caller without one.
func TestSecureHandlerServesTheViewWithoutAToken(t *testing.T) {
	authz := &recordingAuthorizer{allow: func(authorizer.Attributes) bool { return true }}
	ts := startSecureServer(t, authz)
	for _, path := range []string{"/ui/", "/ui/app.js", "/ui/vendor/uPlot.iife.min.js"} {
		if code, _, body := call(t, ts, http.MethodGet, path, ""); code != http.StatusOK {
			t.Errorf("GET %s without a token: %d %.200s, want 200", path, code, body)
		}
	}
	if code, _, _ := call(t, ts, http.MethodGet, "/ui/../apis/krm.io/v1alpha1/resourcestatuses", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /ui/../apis/… without a token: %d, want 401", code)
	}
	if len(authz.asked) != 0 {
		t.Errorf("the authorizer was asked about unauthenticated requests: %+v", authz.asked)
	}
}

// TestSecureHandlerAsksWhatKubeAPIServerAsks checks the attributes of each
// kind of request against those kube-apiserver's authorization filter
// builds for it.
func TestSecureHandlerAsksWhatKubeAPIServerAsks(t *testing.T) {
	authz := &recordingAuthorizer{allow: func(authorizer.Attributes) bool { return true }}
	ts := startSecureServer(t, authz)
	res := func(verb, group, version, resource, ns, name string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{Verb: verb, APIGroup: group, APIVersion: version, Resource: resource, Namespace: ns, Name: name, ResourceRequest: true}
	}
	path := func(p string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{Verb: "get", Path: p}
	}
	for _, tc := range []struct {
		method, path string
		want         authorizer.AttributesRecord
		code         int
	}{
		{"GET", "/api/v1/namespaces/dev/pods", res("list", "", "v1", "pods", "dev", ""), 200},
		{"GET", "/api/v1/pods", res("list", "", "v1", "pods", "", ""), 200},
		{"GET", "/api/v1/namespaces/dev/pods/api-1", res("get", "", "v1", "pods", "dev", "api-1"), 200},
		{"HEAD", "/api/v1/namespaces/dev/pods/api-1", res("get", "", "v1", "pods", "dev", "api-1"), 200},
		// Selectors go to the authorizer, and a name selector names the
		// object, as in kube-apiserver.
		{"GET", "/api/v1/namespaces/dev/pods?fieldSelector=metadata.name%3Dapi-1", func() authorizer.AttributesRecord {
			a := res("list", "", "v1", "pods", "dev", "api-1")
			a.FieldSelectorRequirements = fields.Requirements{{Operator: selection.Equals, Field: "metadata.name", Value: "api-1"}}
			return a
		}(), 200},
		{"GET", "/api/v1/namespaces/dev/pods?labelSelector=app%3Dapi", func() authorizer.AttributesRecord {
			a := res("list", "", "v1", "pods", "dev", "")
			sel, _ := labels.Parse("app=api")
			a.LabelSelectorRequirements, _ = sel.Requirements()
			return a
		}(), 200},
		{"GET", "/apis/apps/v1/deployments", res("list", "apps", "v1", "deployments", "", ""), 200},
		{"GET", "/apis/apps/v1/namespaces/dev/deployments/web", res("get", "apps", "v1", "deployments", "dev", "web"), 404},
		{"GET", "/api/v1/namespaces/dev/pods/api-1/log", func() authorizer.AttributesRecord {
			a := res("get", "", "v1", "pods", "dev", "api-1")
			a.Subresource = "log"
			return a
		}(), 404},
		// Resources krm does not cache are authorized before the 404, as
		// kube-apiserver authorizes before it looks.
		{"GET", "/api/v1/namespaces/dev/secrets", res("list", "", "v1", "secrets", "dev", ""), 404},
		// A namespace is in itself.
		{"GET", "/api/v1/namespaces/dev", res("get", "", "v1", "namespaces", "dev", "dev"), 200},
		{"GET", "/apis/krm.io/v1alpha1/resourcestatuses", res("list", "krm.io", "v1alpha1", "resourcestatuses", "", ""), 200},
		{"GET", "/apis/krm.io/v1alpha1/resourcestatuses/pods", res("get", "krm.io", "v1alpha1", "resourcestatuses", "", "pods"), 200},
		{"GET", "/apis/krm.io/v1alpha1/driftreports", res("list", "krm.io", "v1alpha1", "driftreports", "", ""), 200},
		{"GET", "/apis/krm.io/v1alpha1/agentstatuses/agent", res("get", "krm.io", "v1alpha1", "agentstatuses", "", "agent"), 200},
		{"GET", "/version", path("/version"), 200},
		{"GET", "/healthz", path("/healthz"), 200},
		{"GET", "/readyz", path("/readyz"), 200},
		{"GET", "/api", path("/api"), 200},
		{"GET", "/api/v1", path("/api/v1"), 200},
		{"GET", "/apis", path("/apis"), 200},
		{"GET", "/apis/apps", path("/apis/apps"), 200},
		{"GET", "/apis/apps/v1", path("/apis/apps/v1"), 200},
		{"GET", "/api//v1/pods", path("/api//v1/pods"), 404},
		{"GET", "/nowhere", path("/nowhere"), 404},
		// Writes are authorized as kube-apiserver would, then refused.
		{"DELETE", "/api/v1/namespaces/dev/pods", res("deletecollection", "", "v1", "pods", "dev", ""), 405},
		{"DELETE", "/api/v1/namespaces/dev/pods/api-1", res("delete", "", "v1", "pods", "dev", "api-1"), 405},
		{"POST", "/api/v1/namespaces/dev/pods", res("create", "", "v1", "pods", "dev", ""), 405},
	} {
		code, _, body := call(t, ts, tc.method, tc.path, "Bearer good-token")
		got := authz.last(t)
		if got.User == nil || got.User.GetName() != testUser {
			t.Errorf("%s %s: asked for user %v, want %s", tc.method, tc.path, got.User, testUser)
		}
		got.User = nil
		if tc.want.ResourceRequest {
			tc.want.Path = strings.Split(tc.path, "?")[0]
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s %s: attributes (-want +got):\n%s", tc.method, tc.path, diff)
		}
		if code != tc.code {
			t.Errorf("%s %s: %d, want %d: %s", tc.method, tc.path, code, tc.code, body)
		}
	}
}

func TestSecureHandlerAsksWatchForWatches(t *testing.T) {
	authz := &recordingAuthorizer{allow: func(authorizer.Attributes) bool { return true }}
	ts := startSecureServer(t, authz)
	for path, want := range map[string]authorizer.AttributesRecord{
		"/api/v1/namespaces/dev/pods?watch=true": {Verb: "watch", APIVersion: "v1", Resource: "pods", Namespace: "dev"},
		"/api/v1/pods?watch=1":                   {Verb: "watch", APIVersion: "v1", Resource: "pods"},
		// A watch of one name is a watch with the name, by every spelling.
		"/api/v1/watch/namespaces/dev/pods/api-1":      {Verb: "watch", APIVersion: "v1", Resource: "pods", Namespace: "dev", Name: "api-1"},
		"/api/v1/namespaces/dev/pods/api-1?watch=true": {Verb: "watch", APIVersion: "v1", Resource: "pods", Namespace: "dev", Name: "api-1"},
		"/api/v1/namespaces/dev/pods?watch=true&fieldSelector=metadata.name=x": {Verb: "watch", APIVersion: "v1", Resource: "pods", Namespace: "dev", Name: "x",
			FieldSelectorRequirements: fields.Requirements{{Operator: selection.Equals, Field: "metadata.name", Value: "x"}}},
		"/api/v1/watch/pods": {Verb: "watch", APIVersion: "v1", Resource: "pods"},
		// The web view's overview follows the statuses with a watch.
		"/apis/krm.io/v1alpha1/resourcestatuses?watch=true": {Verb: "watch", APIGroup: "krm.io", APIVersion: "v1alpha1", Resource: "resourcestatuses"},
	} {
		ctx, cancel := context.WithCancel(t.Context())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+path, nil)
		req.Header.Set("Authorization", "Bearer good-token")
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
		cancel()
		resp.Body.Close()
		got := authz.last(t)
		got.User = nil
		want.ResourceRequest = true
		want.Path = strings.Split(path, "?")[0]
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GET %s: attributes (-want +got):\n%s", path, diff)
		}
	}
}

// TestSecureHandlerForbidsAsKubeAPIServer checks the 403's wording against
// kube-apiserver's, for each kind of request.
func TestSecureHandlerForbidsAsKubeAPIServer(t *testing.T) {
	authz := &recordingAuthorizer{}
	ts := startSecureServer(t, authz)
	u := `User "` + testUser + `"`
	for path, want := range map[string]string{
		"/api/v1/namespaces/dev/pods":             `pods is forbidden: ` + u + ` cannot list resource "pods" in API group "" in the namespace "dev"`,
		"/api/v1/pods":                            `pods is forbidden: ` + u + ` cannot list resource "pods" in API group "" at the cluster scope`,
		"/api/v1/nodes":                           `nodes is forbidden: ` + u + ` cannot list resource "nodes" in API group "" at the cluster scope`,
		"/api/v1/namespaces/prod/pods/db-0":       `pods "db-0" is forbidden: ` + u + ` cannot get resource "pods" in API group "" in the namespace "prod"`,
		"/api/v1/namespaces/dev/pods?watch=true":  `pods is forbidden: ` + u + ` cannot watch resource "pods" in API group "" in the namespace "dev"`,
		"/apis/apps/v1/deployments":               `deployments.apps is forbidden: ` + u + ` cannot list resource "deployments" in API group "apps" at the cluster scope`,
		"/apis/krm.io/v1alpha1/resourcestatuses":  `resourcestatuses.krm.io is forbidden: ` + u + ` cannot list resource "resourcestatuses" in API group "krm.io" at the cluster scope`,
		"/api/v1/namespaces/dev/pods/api-1/log":   `pods "api-1" is forbidden: ` + u + ` cannot get resource "pods/log" in API group "" in the namespace "dev"`,
		"/version":                                `forbidden: ` + u + ` cannot get path "/version"`,
		"/api/v1/namespaces/dev/secrets/a<b>&amp": `secrets "a<b>&amp" is forbidden: ` + u + ` cannot get resource "secrets" in API group "" in the namespace "dev"`,
	} {
		code, st, body := call(t, ts, http.MethodGet, path, "Bearer good-token")
		if code != http.StatusForbidden || st.Reason != metav1.StatusReasonForbidden || st.Code != http.StatusForbidden {
			t.Errorf("GET %s: %d %s, want 403 with a Status, reason Forbidden", path, code, body)
			continue
		}
		if st.Message != want {
			t.Errorf("GET %s: message\n%s\nwant\n%s", path, st.Message, want)
		}
	}
	// The authorizer's reason follows, as kube-apiserver appends it.
	authz.reason = "no RBAC policy matched"
	_, st, _ := call(t, ts, http.MethodGet, "/api/v1/namespaces/dev/pods", "Bearer good-token")
	if want := `pods is forbidden: ` + u + ` cannot list resource "pods" in API group "" in the namespace "dev": no RBAC policy matched`; st.Message != want {
		t.Errorf("with a reason: %q, want %q", st.Message, want)
	}
	if st.Details == nil || st.Details.Kind != "pods" {
		t.Errorf("details %+v, want kind pods", st.Details)
	}
}

// TestSecureHandlerServesOnlyWhatIsAllowed allows one namespace and checks
// that nothing of the others is answered, not even whether it exists.
func TestSecureHandlerServesOnlyWhatIsAllowed(t *testing.T) {
	authz := &recordingAuthorizer{allow: func(a authorizer.Attributes) bool {
		return !a.IsResourceRequest() || (a.GetNamespace() == "dev" && a.GetResource() == "pods" && a.GetVerb() != "delete")
	}}
	ts := startSecureServer(t, authz)
	cfg := &rest.Config{Host: ts.URL, BearerToken: "good-token", TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	cs := clientset(t, cfg)
	pods, err := cs.CoreV1().Pods("dev").List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("client-go list of the allowed namespace: %v", err)
	}
	if got := podNames(pods.Items); got != "dev/api-1,dev/api-2,dev/web-1" {
		t.Errorf("pods in dev: %s", got)
	}
	if _, err := cs.CoreV1().Pods("dev").Get(t.Context(), "api-1", metav1.GetOptions{}); err != nil {
		t.Errorf("get in dev: %v", err)
	}
	for name, err := range map[string]error{
		"all namespaces": func() error { _, err := cs.CoreV1().Pods("").List(t.Context(), metav1.ListOptions{}); return err }(),
		"prod": func() error {
			_, err := cs.CoreV1().Pods("prod").Get(t.Context(), "db-0", metav1.GetOptions{})
			return err
		}(),
		"missing in prod": func() error {
			_, err := cs.CoreV1().Pods("prod").Get(t.Context(), "nope", metav1.GetOptions{})
			return err
		}(),
		"nodes": func() error { _, err := cs.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{}); return err }(),
		"deployments": func() error {
			_, err := cs.AppsV1().Deployments("dev").List(t.Context(), metav1.ListOptions{})
			return err
		}(),
	} {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want forbidden", name, err)
		}
	}
	// Discovery is open to any authenticated caller, as kube-apiserver's
	// system:discovery role makes it.
	if _, err := cs.Discovery().ServerVersion(); err != nil {
		t.Errorf("version: %v", err)
	}
}

func TestSecureHandlerAnswers500WhenTheAuthorizerFails(t *testing.T) {
	ts := startSecureServer(t, &recordingAuthorizer{err: errors.New("SubjectAccessReview: connection refused")})
	code, st, body := call(t, ts, http.MethodGet, "/api/v1/namespaces/dev/pods", "Bearer good-token")
	if code != http.StatusInternalServerError || !strings.Contains(st.Message, "connection refused") {
		t.Errorf("%d %s, want 500 naming the authorizer's error", code, body)
	}
	if strings.Contains(body, "api-1") {
		t.Errorf("the 500 carries object data: %s", body)
	}
}

// FuzzSecureHandlerAuthorization sends any Authorization header and path:
// without the one good token the answer is 401 before the authorizer is
// asked; with it, the denying authorizer makes every answer a 403. Nothing
// is ever served.
func FuzzSecureHandlerAuthorization(f *testing.F) {
	for _, h := range []string{"", "Bearer good-token", "Bearer ", "bearer good-token", "Bearer good-token extra", "Basic Zm9vOmJhcg==", "Bearer \x00", "Bearer  good-token", "Negotiate x"} {
		f.Add(h, "/api/v1/namespaces/dev/pods")
	}
	f.Add("Bearer good-token", "/api/v1/watch/pods")
	f.Add("Bearer good-token", "/apis/krm.io/v1alpha1/driftreports/pods")
	f.Add("Bearer good-token", "/version")
	s, _ := newTestServer(f)
	authz := &recordingAuthorizer{}
	h := s.SecureHandler(tokenAuthenticator(), authz)
	f.Fuzz(func(t *testing.T, auth, path string) {
		u, err := url.Parse(path)
		if err != nil || u.Path == "" || u.Path[0] != '/' {
			return
		}
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL = u
		req.Header["Authorization"] = []string{auth}
		resp, _, _ := tokenAuthenticator().AuthenticateRequest(req.Clone(t.Context()))
		authz.mu.Lock()
		asked := len(authz.asked)
		authz.mu.Unlock()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		authz.mu.Lock()
		askedNow := len(authz.asked)
		authz.mu.Unlock()
		var st metav1.Status
		if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.Kind != "Status" {
			t.Fatalf("Authorization %q, GET %q: %d %q, not a Status", auth, path, rec.Code, rec.Body.String())
		}
		switch {
		case resp == nil && (rec.Code != http.StatusUnauthorized || askedNow != asked):
			t.Fatalf("Authorization %q, GET %q: %d (authorizer asked: %t), want 401 before authorization", auth, path, rec.Code, askedNow != asked)
		case resp != nil && rec.Code != http.StatusForbidden:
			t.Fatalf("Authorization %q, GET %q: %d, want 403 from the denying authorizer", auth, path, rec.Code)
		}
	})
}

// An impersonating request is refused, not answered as the caller: the
// agent cannot act as another user, and the caller believes it does.
func TestSecureHandlerRefusesImpersonation(t *testing.T) {
	authz := &recordingAuthorizer{allow: func(authorizer.Attributes) bool { return true }}
	ts := startSecureServer(t, authz)
	for _, h := range []string{"Impersonate-User", "Impersonate-Group", "Impersonate-Uid", "Impersonate-Extra-Scopes"} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.URL+"/api/v1/namespaces/dev/pods", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer good-token")
		req.Header.Set(h, "someone-else")
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var st metav1.Status
		_ = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || st.Reason != metav1.StatusReasonForbidden || !strings.Contains(st.Message, "does not support impersonation ("+h+")") {
			t.Errorf("%s: %d %+v, want 403 naming the header", h, resp.StatusCode, st)
		}
	}
	if len(authz.asked) != 0 {
		t.Errorf("the authorizer was asked about impersonating requests: %+v", authz.asked)
	}
}
