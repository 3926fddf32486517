package connect

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"
)

// secureRequestTimeout bounds a whole request to an https agent, as the
// client package's default does for a plain one; watches go without it.
const secureRequestTimeout = 2 * time.Minute

// TokenHint says how to read through the agent's secure listener, for a
// user whose kubeconfig has no credential it accepts.
const TokenHint = "the agent's secure listener authenticates bearer tokens, which it has the cluster's API server review (TokenReview); " +
	"give a token with --token (e.g. from `kubectl create token SERVICEACCOUNT`) or use a kubeconfig whose user has a token or an exec plugin, " +
	"or drop --agent-url to read through a port-forward to the agent pod"

// UntrustedCertificateError is a TLS handshake with an https agent whose
// certificate does not verify.
type UntrustedCertificateError struct {
	Err error
}

func (e *UntrustedCertificateError) Error() string {
	return fmt.Sprintf("the agent's TLS certificate is not trusted (%v): give the CA that signed it with --agent-certificate-authority FILE, "+
		"or skip verifying it with --agent-insecure-skip-tls-verify (the agent serves a self-signed certificate unless it runs with --tls-cert-file)", e.Err)
}

func (e *UntrustedCertificateError) Unwrap() error { return e.Err }

// secureTransport is what to talk to an https agent with: cfg (the
// kubeconfig's *rest.Config, with its credentials) aimed at o.URL, with the
// agent's TLS verification instead of the API server's. Exec and
// auth-provider plugins apply as client-go applies them. A kubeconfig
// without a credential the agent can check, or one that impersonates, is
// refused here, before anything is sent.
func secureTransport(cfg *rest.Config, o Options) (http.RoundTripper, time.Duration, error) {
	if cfg == nil {
		return nil, 0, fmt.Errorf("--agent-url %s is https, so the plugin sends it your kubeconfig's credentials, but there is no kubeconfig; %s", o.URL, TokenHint)
	}
	if err := checkCredentials(cfg, o.URL); err != nil {
		return nil, 0, err
	}
	tlsCfg, err := agentTLS(o)
	if err != nil {
		return nil, 0, err
	}
	c := rest.CopyConfig(cfg)
	c.Host, c.APIPath = o.URL, ""
	c.TLSClientConfig = tlsCfg
	// The kubeconfig's proxy-url and dialer are the way to its API server,
	// not to the agent: reach the agent as the plain client does.
	c.Proxy, c.Dial = nil, nil
	c.DisableCompression = o.DisableCompression
	timeout := c.Timeout
	if timeout == 0 {
		timeout = secureRequestTimeout
	}
	c.Timeout = 0
	rt, err := rest.TransportFor(c)
	if err != nil {
		return nil, 0, fmt.Errorf("setting up the credentials for --agent-url %s: %w", o.URL, err)
	}
	return &certificateHint{rt: rt}, timeout, nil
}

// checkCredentials refuses what the agent's secure listener cannot check:
// it authenticates bearer tokens only, and it does not impersonate.
func checkCredentials(cfg *rest.Config, agentURL string) error {
	imp := cfg.Impersonate
	if imp.UserName != "" || imp.UID != "" || len(imp.Groups) > 0 || len(imp.Extra) > 0 {
		return fmt.Errorf("impersonation (--as, --as-group, --as-uid or the kubeconfig's as: fields) does not work with --agent-url %s: "+
			"the agent's secure listener does not implement it, and reading as yourself instead is not what you asked for; "+
			"drop the impersonation, or drop --agent-url to read through a port-forward to the agent pod", agentURL)
	}
	hasCert := len(cfg.CertData) > 0 || cfg.CertFile != ""
	switch {
	case cfg.BearerToken != "" || cfg.BearerTokenFile != "" || cfg.ExecProvider != nil || cfg.AuthProvider != nil:
		return nil
	case hasCert:
		return fmt.Errorf("your kubeconfig's user authenticates with a client certificate only, which the krm agent at %s cannot check: %s", agentURL, TokenHint)
	case cfg.Username != "" || cfg.Password != "":
		return fmt.Errorf("your kubeconfig's user authenticates with a username and password only, which the krm agent at %s does not accept: %s", agentURL, TokenHint)
	default:
		return fmt.Errorf("your kubeconfig's user has no credentials to send to the krm agent at %s: %s", agentURL, TokenHint)
	}
}

// agentTLS verifies the agent with o's CA file, or skips verifying it, or
// uses the system's roots.
func agentTLS(o Options) (rest.TLSClientConfig, error) {
	if o.InsecureSkipTLSVerify && o.CAFile != "" {
		return rest.TLSClientConfig{}, errors.New("--agent-certificate-authority and --agent-insecure-skip-tls-verify cannot be used together: give the CA to verify the agent with, or skip verifying it")
	}
	if o.CAFile == "" {
		return rest.TLSClientConfig{Insecure: o.InsecureSkipTLSVerify}, nil
	}
	pem, err := os.ReadFile(o.CAFile)
	if err != nil {
		return rest.TLSClientConfig{}, fmt.Errorf("--agent-certificate-authority: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return rest.TLSClientConfig{}, fmt.Errorf("--agent-certificate-authority %s holds no PEM certificate; give the PEM file of the CA that signed the agent's certificate", o.CAFile)
	}
	return rest.TLSClientConfig{CAData: pem}, nil
}

// certificateHint turns a certificate the handshake did not trust into an
// *UntrustedCertificateError, which says what to do about it.
type certificateHint struct {
	rt http.RoundTripper
}

func (h *certificateHint) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := h.rt.RoundTrip(req)
	if err != nil && untrusted(err) {
		return nil, &UntrustedCertificateError{Err: err}
	}
	return resp, err
}

// CloseIdleConnections closes the idle connections below the credential
// wrappers.
func (h *certificateHint) CloseIdleConnections() { utilnet.CloseIdleConnectionsFor(h.rt) }

// WrappedRoundTripper lets client-go's helpers see through the hint.
func (h *certificateHint) WrappedRoundTripper() http.RoundTripper { return h.rt }

func untrusted(err error) bool {
	var verify *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	return errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid)
}
