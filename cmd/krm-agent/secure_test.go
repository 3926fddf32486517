package main

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	certutil "k8s.io/client-go/util/cert"
)

// writePair writes a fresh self-signed pair for host and returns the
// certificate's DER.
func writePair(t *testing.T, certFile, keyFile, host string, mtime time.Time) []byte {
	t.Helper()
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey(host, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for file, b := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(file, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair.Certificate[0]
}

func TestCertFilesReloadWhenTheFilesChange(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	t0 := time.Now().Add(-time.Hour)
	first := writePair(t, certFile, keyFile, "first.example", t0)
	c := &certFiles{certFile: certFile, keyFile: keyFile, log: slog.New(slog.DiscardHandler)}
	serving := func() []byte {
		t.Helper()
		cert, err := c.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return cert.Certificate[0]
	}
	if !slices.Equal(serving(), first) {
		t.Fatal("not serving the files' certificate")
	}
	second := writePair(t, certFile, keyFile, "second.example", t0.Add(time.Minute))
	if !slices.Equal(serving(), second) {
		t.Error("still serving the old certificate after the files changed")
	}
	// A half-written or broken pair keeps the last good one.
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(serving(), second) {
		t.Error("a broken key file replaced the serving certificate")
	}
	third := writePair(t, certFile, keyFile, "third.example", t0.Add(2*time.Minute))
	if !slices.Equal(serving(), third) {
		t.Error("did not recover once the files were good again")
	}
}

func TestCertFilesFailWithoutAGoodPair(t *testing.T) {
	dir := t.TempDir()
	c := &certFiles{certFile: filepath.Join(dir, "none.crt"), keyFile: filepath.Join(dir, "none.key"), log: slog.New(slog.DiscardHandler)}
	if _, err := c.GetCertificate(nil); err == nil || !strings.Contains(err.Error(), "none.crt") {
		t.Errorf("got %v, want an error naming the file", err)
	}
}

func TestSelfSignedCertificateNamesLoopbackAndHost(t *testing.T) {
	o := &SecureOptions{Listen: "127.0.0.1:0"}
	cfg, err := o.tlsConfig(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"localhost", "127.0.0.1"} {
		if err := leaf.VerifyHostname(host); err != nil {
			t.Errorf("the self-signed certificate does not cover %s: %v", host, err)
		}
	}
	if h, _ := os.Hostname(); h != "" {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("the self-signed certificate does not cover the host name %s: %v", h, err)
		}
	}
	if !slices.ContainsFunc(leaf.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.ParseIP("127.0.0.1")) }) {
		t.Errorf("IP SANs %v, want 127.0.0.1", leaf.IPAddresses)
	}
}

func TestSecureOptionsValidate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writePair(t, certFile, keyFile, "localhost", time.Now())
	for _, tc := range []struct {
		name string
		o    SecureOptions
		want string
	}{
		{"off", SecureOptions{}, ""},
		{"self-signed", SecureOptions{Listen: ":8443"}, ""},
		{"files", SecureOptions{Listen: ":8443", TLSCert: certFile, TLSKey: keyFile}, ""},
		{"no port", SecureOptions{Listen: "8443"}, "--secure-listen"},
		{"cert without key", SecureOptions{Listen: ":8443", TLSCert: certFile}, "go together"},
		{"files without listener", SecureOptions{TLSCert: certFile, TLSKey: keyFile}, "needs --secure-listen"},
		{"key that does not match", SecureOptions{Listen: ":8443", TLSCert: certFile, TLSKey: certFile}, "--tls-cert-file"},
	} {
		err := tc.o.validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}
