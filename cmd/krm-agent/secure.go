package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
)

// The delegating caches' lifetimes: metrics-server's (and
// k8s.io/apiserver's options') defaults. A revoked RoleBinding or token
// stops working within them.
const (
	authnCacheTTL      = 10 * time.Second
	authzAllowTTL      = 10 * time.Second
	authzDenyTTL       = 10 * time.Second
	authWebhookTimeout = 10 * time.Second
)

// SecureOptions are the flags of the authenticated HTTPS listener.
type SecureOptions struct {
	Listen  string
	TLSCert string
	TLSKey  string
}

func (o *SecureOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.Listen, "secure-listen", o.Listen, fmt.Sprintf("Address of an HTTPS listener serving the same API to callers with a bearer token (e.g. a ServiceAccount's): each request is authenticated with a TokenReview and authorized with a SubjectAccessReview for what kube-apiserver would check, so a caller reads only what their RBAC allows. Answers are cached: tokens %s, allowed %s, denied %s. The agent's ServiceAccount needs system:auth-delegator. Default: off.", authnCacheTTL, authzAllowTTL, authzDenyTTL))
	f.StringVar(&o.TLSCert, "tls-cert-file", o.TLSCert, "PEM certificate (chain) of --secure-listen, re-read when it changes. Default: a self-signed certificate for localhost, 127.0.0.1 and the host name, made at start.")
	f.StringVar(&o.TLSKey, "tls-private-key-file", o.TLSKey, "PEM private key of --tls-cert-file, re-read when it changes.")
}

func (o *SecureOptions) validate() error {
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return errors.New("--tls-cert-file and --tls-private-key-file go together: give both or neither")
	}
	if o.Listen == "" {
		if o.TLSCert != "" {
			return errors.New("--tls-cert-file needs --secure-listen")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(o.Listen); err != nil {
		return fmt.Errorf("--secure-listen %q: want host:port, e.g. :8443: %w", o.Listen, err)
	}
	if o.TLSCert != "" {
		if _, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey); err != nil {
			return fmt.Errorf("--tls-cert-file, --tls-private-key-file: %w", err)
		}
	}
	return nil
}

// delegatingAuth builds the authenticator and authorizer that ask the
// cluster's API server, through TokenReview and SubjectAccessReview, with
// k8s.io/apiserver's caches in front.
func delegatingAuth(cfg *rest.Config) (authenticator.Request, authorizer.Authorizer, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	backoff := func() *wait.Backoff {
		return &wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}
	}
	authn, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{
		TokenAccessReviewClient:  cs.AuthenticationV1(),
		TokenAccessReviewTimeout: authWebhookTimeout,
		WebhookRetryBackoff:      backoff(),
		CacheTTL:                 authnCacheTTL,
	}.New()
	if err != nil {
		return nil, nil, fmt.Errorf("delegating authentication: %w", err)
	}
	authz, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: cs.AuthorizationV1(),
		AllowCacheTTL:             authzAllowTTL,
		DenyCacheTTL:              authzDenyTTL,
		WebhookRetryBackoff:       backoff(),
	}.New()
	if err != nil {
		return nil, nil, fmt.Errorf("delegating authorization: %w", err)
	}
	return authn, authz, nil
}

// tlsConfig serves o's certificate files, re-read when they change, or a
// self-signed certificate made now.
func (o *SecureOptions) tlsConfig(log *slog.Logger) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	if o.TLSCert != "" {
		certs := &certFiles{certFile: o.TLSCert, keyFile: o.TLSKey, log: log}
		if _, err := certs.GetCertificate(nil); err != nil {
			return nil, err
		}
		cfg.GetCertificate = certs.GetCertificate
		return cfg, nil
	}
	hostname, _ := os.Hostname()
	var names []string
	if hostname != "" && hostname != "localhost" {
		names = append(names, hostname)
	}
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("localhost", []net.IP{net.ParseIP("127.0.0.1")}, names)
	if err != nil {
		return nil, fmt.Errorf("making a self-signed certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("making a self-signed certificate: %w", err)
	}
	cfg.Certificates = []tls.Certificate{cert}
	log.Info("serving a self-signed certificate on the secure listener; give --tls-cert-file and --tls-private-key-file for one clients can verify", "hosts", append([]string{"localhost", "127.0.0.1"}, names...))
	return cfg, nil
}

// certFiles is a certificate and key on disk, loaded again on the first
// handshake after either file changes (a renewed Secret, cert-manager), so
// no restart is needed. A pair that does not load keeps the last good one.
type certFiles struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	stamp   []byte
	current *tls.Certificate
}

// GetCertificate is tls.Config's hook.
func (c *certFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	stamp, err := fileStamp(c.certFile, c.keyFile)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil && c.current != nil && bytes.Equal(stamp, c.stamp) {
		return c.current, nil
	}
	cert, lerr := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err == nil {
		err = lerr
	}
	if err != nil {
		if c.current != nil {
			c.log.Warn("the TLS certificate files changed but do not load; serving the last good certificate", "certFile", c.certFile, "keyFile", c.keyFile, "err", err)
			c.stamp = stamp
			return c.current, nil
		}
		return nil, fmt.Errorf("loading the TLS certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	if c.current != nil {
		c.log.Info("reloaded the TLS certificate", "certFile", c.certFile)
	}
	c.stamp, c.current = stamp, &cert
	return c.current, nil
}

// fileStamp identifies the files' current contents by size and
// modification time, which a rewrite or a Secret's symlink swap changes.
func fileStamp(paths ...string) ([]byte, error) {
	var b []byte
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		b = fmt.Appendf(b, "%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
	}
	return b, nil
}
