package e2e

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/krm-project/krm/test/cluster"
)

// expiredServiceAccountToken returns a token of ServiceAccount ns/name
// (created here) that kube-apiserver rejects because it expired an hour
// ago. TokenRequest will not make one (its shortest lifetime is 10
// minutes), so it is signed here with the cluster's own service-account
// key, with the claims kube-apiserver puts in a token it issues. A twin
// that expires in 10 minutes, signed the same way, must authenticate: so
// the rejection is for the expiry, not for a flaw in the signing.
func expiredServiceAccountToken(t *testing.T, c *cluster.State, cs kubernetes.Interface, ns, name string) string {
	t.Helper()
	ctx := t.Context()
	sa, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := serviceAccountSigningKey(t, c)
	now := time.Now()
	sign := func(expiry time.Time) string {
		return signRS256(t, key, map[string]any{
			"iss": cluster.ServiceAccountIssuer,
			"aud": []string{cluster.ServiceAccountIssuer},
			"sub": "system:serviceaccount:" + ns + ":" + name,
			"iat": now.Add(-2 * time.Hour).Unix(),
			"nbf": now.Add(-2 * time.Hour).Unix(),
			"exp": expiry.Unix(),
			"kubernetes.io": map[string]any{
				"namespace":      ns,
				"serviceaccount": map[string]string{"name": name, "uid": string(sa.UID)},
			},
		})
	}
	review := func(token string) *authenticationv1.TokenReview {
		t.Helper()
		rev, err := cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	user := "system:serviceaccount:" + ns + ":" + name
	if rev := review(sign(now.Add(10 * time.Minute))); !rev.Status.Authenticated || rev.Status.User.Username != user {
		t.Fatalf("a token signed here that expires in 10 minutes: authenticated=%t as %q, error %q: want %s, so that the expired one fails only for its expiry",
			rev.Status.Authenticated, rev.Status.User.Username, rev.Status.Error, user)
	}
	// kube-apiserver allows a minute of clock skew past exp.
	expired := sign(now.Add(-time.Hour))
	if rev := review(expired); rev.Status.Authenticated || !strings.Contains(rev.Status.Error, "expired") {
		t.Fatalf("the expired token: authenticated=%t, error %q: want rejected as expired", rev.Status.Authenticated, rev.Status.Error)
	}
	return expired
}

// serviceAccountSigningKey reads the cluster's RSA token signing key.
func serviceAccountSigningKey(t *testing.T, c *cluster.State) *rsa.PrivateKey {
	t.Helper()
	path := c.ServiceAccountSigningKey()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the cluster's service-account signing key: %v", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "RSA PRIVATE KEY" {
		t.Fatalf("%s holds no PEM RSA PRIVATE KEY", path)
	}
	key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return key
}

// signRS256 makes a compact JWS (RFC 7515) of claims with RS256
// (RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 section 3.3), the algorithm
// kube-apiserver signs RSA-keyed tokens with. The standard library does it
// in a few lines; kube-apiserver, which verifies it, is the test of it.
func signRS256(t *testing.T, key *rsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signingInput := enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(claims)
	digest := sha256.Sum256([]byte(signingInput))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(fmt.Errorf("signing a token: %w", err))
	}
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(sig)
}
