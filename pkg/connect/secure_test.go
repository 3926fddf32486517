package connect

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/client"
)

// secureAgent is an agent's secure listener as the plugin sees it: it
// accepts the bearer token token, answers any other Authorization 401, and
// records the Authorization header of every request.
type secureAgent struct {
	*httptest.Server
	token string
	// forbidStatus makes krm.io's AgentStatus 403.
	forbidStatus bool

	mu   sync.Mutex
	auth []string
	gzip []string // Accept-Encoding as it arrived
}

func (a *secureAgent) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.auth...)
}

func writeStatus(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.ErrStatus
	st.Kind, st.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	_ = json.NewEncoder(w).Encode(st)
}

func (a *secureAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.auth = append(a.auth, r.Header.Get("Authorization"))
	a.gzip = append(a.gzip, r.Header.Get("Accept-Encoding"))
	a.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+a.token {
		writeStatus(w, apierrors.NewUnauthorized("Unauthorized"))
		return
	}
	const user = "system:serviceaccount:team-a:reader"
	switch r.URL.Path {
	case "/healthz":
		_, _ = w.Write([]byte("ok"))
	case "/apis/krm.io/v1alpha1/agentstatuses/agent":
		if a.forbidStatus {
			writeStatus(w, apierrors.NewForbidden(krmv1alpha1.Resource(krmv1alpha1.ResourceAgentStatuses), "agent",
				fmt.Errorf(`User %q cannot get resource "agentstatuses" in API group "krm.io" at the cluster scope`, user)))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(krmv1alpha1.AgentStatus{
			TypeMeta:   metav1.TypeMeta{Kind: "AgentStatus", APIVersion: "krm.io/v1alpha1"},
			ObjectMeta: metav1.ObjectMeta{Name: "agent"},
			Status:     krmv1alpha1.AgentState{AgentVersion: "v9", Ready: true},
		})
	case "/api/v1/pods":
		writeStatus(w, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "",
			fmt.Errorf(`User %q cannot list resource "pods" in API group "" at the cluster scope`, user)))
	default:
		http.NotFound(w, r)
	}
}

// newSecureAgent starts a secureAgent on https, or on http with plain.
func newSecureAgent(t *testing.T, token string, plain bool) *secureAgent {
	t.Helper()
	a := &secureAgent{token: token}
	a.Server = httptest.NewUnstartedServer(a)
	// Handshakes the tests fail on purpose are not news.
	a.Config.ErrorLog = log.New(io.Discard, "", 0)
	if plain {
		a.Start()
	} else {
		a.StartTLS()
	}
	t.Cleanup(a.Close)
	return a
}

// caFile writes the agent's certificate as a PEM file.
func (a *secureAgent) caFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent-ca.crt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// restConfig is what kubectl's flags make of a kubeconfig whose user is
// user, with overrides as --token, --as and the like give them.
func restConfig(t *testing.T, user *clientcmdapi.AuthInfo, overrides clientcmd.ConfigOverrides) *rest.Config {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	// The API server is never contacted with an agent URL.
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1", CertificateAuthorityData: []byte("not the agent's CA")}
	kc.AuthInfos["u"] = user
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.CurrentContext = "c"
	cfg, err := clientcmd.NewDefaultClientConfig(*kc, &overrides).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// execPlugin writes a credential plugin that prints an ExecCredential with
// token.
func execPlugin(t *testing.T, token string) *clientcmdapi.ExecConfig {
	t.Helper()
	path := filepath.Join(t.TempDir(), "credential-plugin")
	script := "#!/bin/sh\ncat <<'EOF'\n" +
		`{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"` + token + `"}}` +
		"\nEOF\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return &clientcmdapi.ExecConfig{Command: path, APIVersion: "client.authentication.k8s.io/v1", InteractiveMode: clientcmdapi.NeverExecInteractiveMode}
}

// testAuthProvider is an auth-provider plugin that sends its config's
// token, as the oidc provider sends its id-token.
type testAuthProvider struct{ token string }

func (p *testAuthProvider) WrapTransport(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+p.token)
		return rt.RoundTrip(r)
	})
}

func (p *testAuthProvider) Login() error { return nil }

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func init() {
	if err := rest.RegisterAuthProviderPlugin("krm-test", func(_ string, cfg map[string]string, _ rest.AuthProviderConfigPersister) (rest.AuthProvider, error) {
		return &testAuthProvider{token: cfg["token"]}, nil
	}); err != nil {
		panic(err)
	}
}

func TestConnectHTTPSSendsTheKubeconfigsCredentials(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		user      *clientcmdapi.AuthInfo
		overrides clientcmd.ConfigOverrides
		token     string
	}{
		{"a token", &clientcmdapi.AuthInfo{Token: "kubeconfig-token"}, clientcmd.ConfigOverrides{}, "kubeconfig-token"},
		{"--token over the kubeconfig's client certificate", &clientcmdapi.AuthInfo{ClientCertificateData: []byte("cert"), ClientKeyData: []byte("key")},
			clientcmd.ConfigOverrides{AuthInfo: clientcmdapi.AuthInfo{Token: "flag-token"}}, "flag-token"},
		{"a token file", &clientcmdapi.AuthInfo{TokenFile: tokenFile}, clientcmd.ConfigOverrides{}, "file-token"},
		{"an exec plugin", &clientcmdapi.AuthInfo{Exec: execPlugin(t, "exec-token")}, clientcmd.ConfigOverrides{}, "exec-token"},
		{"an auth-provider plugin", &clientcmdapi.AuthInfo{AuthProvider: &clientcmdapi.AuthProviderConfig{Name: "krm-test", Config: map[string]string{"token": "provider-token"}}},
			clientcmd.ConfigOverrides{}, "provider-token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agent := newSecureAgent(t, tt.token, false)
			cfg := restConfig(t, tt.user, tt.overrides)
			conn, err := Connect(t.Context(), cfg, Options{URL: agent.URL, CAFile: agent.caFile(t)})
			if err != nil {
				t.Fatal(err)
			}
			if conn.Agent == nil || conn.Agent.Status.AgentVersion != "v9" {
				t.Errorf("the agent's status: %+v, want the agent's answer", conn.Agent)
			}
			if conn.Transport == nil {
				t.Error("the connection has no transport of its own, want the credentials' (for the proxy)")
			}
			want := []string{"Bearer " + tt.token, "Bearer " + tt.token}
			if diff := cmp.Diff(want, agent.seen()); diff != "" {
				t.Errorf("Authorization headers the agent received (-want +got):\n%s", diff)
			}
			// The kubeconfig's configuration is not changed for the API
			// server.
			if cfg.Host != "https://127.0.0.1:1" || string(cfg.CAData) != "not the agent's CA" {
				t.Errorf("Connect changed the kubeconfig's rest.Config: host %s, CA %q", cfg.Host, cfg.CAData)
			}
		})
	}
}

func TestConnectHTTPSendsNoCredentials(t *testing.T) {
	// The agent would take the token, but it travels in the clear: it is
	// never sent to an http URL.
	agent := newSecureAgent(t, "kubeconfig-token", true)
	cfg := restConfig(t, &clientcmdapi.AuthInfo{Token: "kubeconfig-token"}, clientcmd.ConfigOverrides{})
	_, err := Connect(t.Context(), cfg, Options{URL: agent.URL})
	if !apierrors.IsUnauthorized(err) {
		t.Errorf("Connect: %v, want the agent's 401 (no credentials sent)", err)
	}
	if diff := cmp.Diff([]string{""}, agent.seen()); diff != "" {
		t.Errorf("Authorization headers the agent received (-want +got):\n%s", diff)
	}
}

func TestConnectHTTPSRefusesWhatTheAgentCannotCheck(t *testing.T) {
	tokenHint := "the agent's secure listener authenticates bearer tokens, which it has the cluster's API server review (TokenReview); " +
		"give a token with --token (e.g. from `kubectl create token SERVICEACCOUNT`) or use a kubeconfig whose user has a token or an exec plugin, " +
		"or drop --agent-url to read through a port-forward to the agent pod"
	certFile := filepath.Join(t.TempDir(), "client.crt")
	if err := os.WriteFile(certFile, []byte("a certificate and key"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		user      *clientcmdapi.AuthInfo
		overrides clientcmd.ConfigOverrides
		want      string // %s is the agent's URL
	}{
		{"a client certificate", &clientcmdapi.AuthInfo{ClientCertificateData: []byte("cert"), ClientKeyData: []byte("key")}, clientcmd.ConfigOverrides{},
			"your kubeconfig's user authenticates with a client certificate only, which the krm agent at %s cannot check: " + tokenHint},
		{"a client certificate file", &clientcmdapi.AuthInfo{ClientCertificate: certFile, ClientKey: certFile}, clientcmd.ConfigOverrides{},
			"your kubeconfig's user authenticates with a client certificate only, which the krm agent at %s cannot check: " + tokenHint},
		{"basic auth", &clientcmdapi.AuthInfo{Username: "jane", Password: "secret"}, clientcmd.ConfigOverrides{},
			"your kubeconfig's user authenticates with a username and password only, which the krm agent at %s does not accept: " + tokenHint},
		{"no credentials", &clientcmdapi.AuthInfo{}, clientcmd.ConfigOverrides{},
			"your kubeconfig's user has no credentials to send to the krm agent at %s: " + tokenHint},
		{"--as", &clientcmdapi.AuthInfo{Token: "t"}, clientcmd.ConfigOverrides{AuthInfo: clientcmdapi.AuthInfo{Impersonate: "jane"}},
			"impersonation (--as, --as-group, --as-uid or the kubeconfig's as: fields) does not work with --agent-url %s: the agent's secure listener does not implement it, and reading as yourself instead is not what you asked for; drop the impersonation, or drop --agent-url to read through a port-forward to the agent pod"},
		{"--as-group", &clientcmdapi.AuthInfo{Token: "t"}, clientcmd.ConfigOverrides{AuthInfo: clientcmdapi.AuthInfo{Impersonate: "jane", ImpersonateGroups: []string{"admins"}}},
			"impersonation (--as, --as-group, --as-uid or the kubeconfig's as: fields) does not work with --agent-url %s: …"},
		{"the kubeconfig's impersonation", &clientcmdapi.AuthInfo{Token: "t", Impersonate: "jane"}, clientcmd.ConfigOverrides{},
			"impersonation (--as, --as-group, --as-uid or the kubeconfig's as: fields) does not work with --agent-url %s: …"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agent := newSecureAgent(t, "t", false)
			_, err := Connect(t.Context(), restConfig(t, tt.user, tt.overrides), Options{URL: agent.URL, InsecureSkipTLSVerify: true})
			checkError(t, err, fmt.Sprintf(tt.want, agent.URL))
			if got := agent.seen(); len(got) != 0 {
				t.Errorf("the agent received %d requests, want none: the plugin refuses before sending", len(got))
			}
		})
	}
	t.Run("no kubeconfig", func(t *testing.T) {
		_, err := Connect(t.Context(), nil, Options{URL: "https://127.0.0.1:1"})
		checkError(t, err, "--agent-url https://127.0.0.1:1 is https, so the plugin sends it your kubeconfig's credentials, but there is no kubeconfig; "+tokenHint)
	})
}

// checkError compares err's message with want, or with its start when want
// ends in "…".
func checkError(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	if prefix, ok := strings.CutSuffix(want, "…"); ok {
		if !strings.HasPrefix(err.Error(), prefix) {
			t.Errorf("error\n%s\nwant it to start with\n%s", err, prefix)
		}
		return
	}
	if err.Error() != want {
		t.Errorf("error\n%s\nwant\n%s", err, want)
	}
}

func TestConnectHTTPSVerifiesTheAgent(t *testing.T) {
	agent := newSecureAgent(t, "t", false)
	cfg := restConfig(t, &clientcmdapi.AuthInfo{Token: "t"}, clientcmd.ConfigOverrides{})
	notPEM := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Another CA than the agent's.
	otherCert, _, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	otherCA := filepath.Join(t.TempDir(), "other-ca.crt")
	if err := os.WriteFile(otherCA, otherCert, 0o600); err != nil {
		t.Fatal(err)
	}

	// The system's roots do not know httptest's certificate.
	_, err = Connect(t.Context(), cfg, Options{URL: agent.URL})
	var untrusted *UntrustedCertificateError
	if !errors.As(err, &untrusted) {
		t.Errorf("Connect without a CA: %v, want an *UntrustedCertificateError", err)
	}
	checkError(t, err, "the krm agent at "+agent.URL+": the agent's TLS certificate is not trusted (…")
	for _, hint := range []string{"--agent-certificate-authority FILE", "--agent-insecure-skip-tls-verify", "self-signed certificate unless it runs with --tls-cert-file"} {
		if !strings.Contains(err.Error(), hint) {
			t.Errorf("error %q, want it to say %q", err, hint)
		}
	}
	if got := agent.seen(); len(got) != 0 {
		t.Errorf("the agent received %d requests from a client that does not trust it, want none", len(got))
	}
	_, err = Connect(t.Context(), cfg, Options{URL: agent.URL, CAFile: otherCA})
	if !errors.As(err, &untrusted) {
		t.Errorf("Connect with another CA: %v, want an *UntrustedCertificateError", err)
	}

	if _, err := Connect(t.Context(), cfg, Options{URL: agent.URL, InsecureSkipTLSVerify: true}); err != nil {
		t.Errorf("Connect with --agent-insecure-skip-tls-verify: %v", err)
	}
	if _, err := Connect(t.Context(), cfg, Options{URL: agent.URL, CAFile: agent.caFile(t)}); err != nil {
		t.Errorf("Connect with the agent's CA: %v", err)
	}

	for name, tt := range map[string]struct {
		opts Options
		want string
	}{
		"both flags": {Options{URL: agent.URL, CAFile: agent.caFile(t), InsecureSkipTLSVerify: true},
			"--agent-certificate-authority and --agent-insecure-skip-tls-verify cannot be used together: give the CA to verify the agent with, or skip verifying it"},
		"a missing CA file": {Options{URL: agent.URL, CAFile: "/nonexistent/ca.crt"},
			"--agent-certificate-authority: open /nonexistent/ca.crt: no such file or directory"},
		"a CA file that is not PEM": {Options{URL: agent.URL, CAFile: notPEM},
			"--agent-certificate-authority " + notPEM + " holds no PEM certificate; give the PEM file of the CA that signed the agent's certificate"},
		"TLS flags with an http URL": {Options{URL: "http://127.0.0.1:1", InsecureSkipTLSVerify: true},
			"--agent-certificate-authority and --agent-insecure-skip-tls-verify are for an https --agent-url, and http://127.0.0.1:1 is plain http"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Connect(t.Context(), cfg, tt.opts)
			checkError(t, err, tt.want)
		})
	}
}

func TestConnectHTTPSAgentRefuses(t *testing.T) {
	cfg := restConfig(t, &clientcmdapi.AuthInfo{Token: "t"}, clientcmd.ConfigOverrides{})

	// 401: the API server did not take the token.
	agent := newSecureAgent(t, "another token", false)
	_, err := Connect(t.Context(), cfg, Options{URL: agent.URL, InsecureSkipTLSVerify: true})
	checkError(t, err, "the krm agent at "+agent.URL+" answered Unauthorized: its API server did not accept your credentials when the agent asked it to review them (TokenReview); "+
		"check that your token or exec plugin is for the cluster the agent runs in and has not expired (`kubectl auth whoami` asks that API server who you are)")
	if !apierrors.IsUnauthorized(err) {
		t.Errorf("%v is not a 401 for apierrors", err)
	}

	// 403 on the agent's own status: the agent's words, and what it takes.
	agent = newSecureAgent(t, "t", false)
	agent.forbidStatus = true
	_, err = Connect(t.Context(), cfg, Options{URL: agent.URL, InsecureSkipTLSVerify: true})
	checkError(t, err, "the krm agent at "+agent.URL+`: agentstatuses.krm.io "agent" is forbidden: User "system:serviceaccount:team-a:reader" cannot get resource "agentstatuses" in API group "krm.io" at the cluster scope; `+
		"the plugin reads the agent's own status first, which needs get on agentstatuses and list on resourcestatuses in API group krm.io (they hold no object content)")

	// 403 on a read: the agent's Status, as it is.
	agent.forbidStatus = false
	conn, err := Connect(t.Context(), cfg, Options{URL: agent.URL, InsecureSkipTLSVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Client.List(t.Context(), client.ResourceInfo{Name: "pods", Resource: "pods", Version: "v1", Namespaced: true}, client.ListOptions{})
	checkError(t, err, `pods is forbidden: User "system:serviceaccount:team-a:reader" cannot list resource "pods" in API group "" at the cluster scope`)
	if !apierrors.IsForbidden(err) {
		t.Errorf("%v is not a 403 for apierrors", err)
	}
}

func TestConnectHTTPSForAProxy(t *testing.T) {
	agent := newSecureAgent(t, "t", false)
	cfg := restConfig(t, &clientcmdapi.AuthInfo{Token: "t"}, clientcmd.ConfigOverrides{})
	conn, err := Connect(t.Context(), cfg, Options{URL: agent.URL, InsecureSkipTLSVerify: true, DisableCompression: true})
	if err != nil {
		t.Fatal(err)
	}
	// What a proxy sends through the connection's transport carries the
	// credentials and asks for no compression of the transport's own.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, agent.URL+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := conn.Transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz through the connection's transport: %s, want 200", resp.Status)
	}
	agent.mu.Lock()
	defer agent.mu.Unlock()
	if diff := cmp.Diff([]string{"Bearer t", "Bearer t", "Bearer t"}, agent.auth); diff != "" {
		t.Errorf("Authorization headers (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"", "", ""}, agent.gzip); diff != "" {
		t.Errorf("Accept-Encoding headers (-want +got):\n%s", diff)
	}
}
