// Package secrets makes the Secrets an install needs (the Redis password,
// InfluxDB's credentials) in the cluster the first time the agent's pod
// starts, from a password drawn from crypto/rand, and leaves them alone on
// every later start: no password is committed to the repository, and
// re-applying the manifests neither rotates nor breaks one. The agent's
// `ensure-secret` command runs it as an initContainer.
package secrets

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
)

// Placeholder stands for the generated password in a key's template.
const Placeholder = "{password}"

// Bounds on a Spec: a Secret of a few keys, each a short config line.
const (
	MaxKeys        = 16
	MaxTemplateLen = 1024
	// PasswordBytes of crypto/rand make a password: 256 bits, written as
	// 43 characters of unpadded base64url (A-Z a-z 0-9 - _), which need no
	// quoting in redis.conf, InfluxDB's user:password token or a URL.
	PasswordBytes = 32
)

// Labels of a Secret this package creates.
var Labels = map[string]string{
	"app.kubernetes.io/part-of":    "krm",
	"app.kubernetes.io/managed-by": "krm-agent-ensure-secret",
}

// Spec is one Secret to ensure: its keys and, for each, a template in
// which Placeholder is replaced by the password.
type Spec struct {
	Namespace string
	Name      string
	Templates map[string]string
}

// ParseData reads KEY=TEMPLATE pairs (the --data flag) into templates.
func ParseData(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, errors.New("no keys: give at least one KEY=TEMPLATE, e.g. password=" + Placeholder)
	}
	if len(pairs) > MaxKeys {
		return nil, fmt.Errorf("%d keys: at most %d", len(pairs), MaxKeys)
	}
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		key, tmpl, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want KEY=TEMPLATE, e.g. password=%s", p, Placeholder)
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("key %q is given twice", key)
		}
		out[key] = tmpl
	}
	return out, nil
}

// Validate checks s before anything talks to the cluster.
func (s Spec) Validate() error {
	if errs := validation.IsDNS1123Subdomain(s.Name); len(errs) > 0 {
		return fmt.Errorf("secret name %q: %s", s.Name, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Label(s.Namespace); len(errs) > 0 {
		return fmt.Errorf("namespace %q: %s", s.Namespace, strings.Join(errs, "; "))
	}
	if len(s.Templates) == 0 || len(s.Templates) > MaxKeys {
		return fmt.Errorf("secret %s has %d keys: want 1 to %d", s.Name, len(s.Templates), MaxKeys)
	}
	uses := false
	for _, key := range s.Keys() {
		tmpl := s.Templates[key]
		if errs := validation.IsConfigMapKey(key); len(errs) > 0 {
			return fmt.Errorf("key %q: %s", key, strings.Join(errs, "; "))
		}
		if len(tmpl) > MaxTemplateLen {
			return fmt.Errorf("key %q: its template has %d bytes, at most %d", key, len(tmpl), MaxTemplateLen)
		}
		if tmpl == "" {
			return fmt.Errorf("key %q: its template is empty", key)
		}
		uses = uses || strings.Contains(tmpl, Placeholder)
	}
	if !uses {
		return fmt.Errorf("no key of secret %s uses %s: there would be nothing to generate", s.Name, Placeholder)
	}
	return nil
}

// Keys are the Secret's keys, sorted.
func (s Spec) Keys() []string {
	keys := make([]string, 0, len(s.Templates))
	for k := range s.Templates {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Render fills every template with password.
func (s Spec) Render(password string) map[string][]byte {
	data := make(map[string][]byte, len(s.Templates))
	for k, tmpl := range s.Templates {
		data[k] = []byte(strings.ReplaceAll(tmpl, Placeholder, password))
	}
	return data
}

// NewPassword returns PasswordBytes from crypto/rand as unpadded base64url.
func NewPassword() (string, error) {
	b := make([]byte, PasswordBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes for a password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Result says what Ensure did.
type Result string

const (
	// Created: the Secret did not exist and now holds a new password.
	Created Result = "created"
	// Kept: the Secret existed (made earlier, by a racing replica, or by
	// the user) with every key, and was left as it was.
	Kept Result = "kept"
)

// Ensure creates the Secret of s with a new password unless it exists. An
// existing Secret is never changed: it must have every key of s, or Ensure
// says which are missing and how to fix it. It needs create on secrets in
// the namespace, and get on this Secret's name.
func Ensure(ctx context.Context, cs kubernetes.Interface, s Spec) (Result, error) {
	if err := s.Validate(); err != nil {
		return "", err
	}
	password, err := NewPassword()
	if err != nil {
		return "", err
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, Labels: Labels},
		Type:       corev1.SecretTypeOpaque,
		Data:       s.Render(password),
	}
	_, err = cs.CoreV1().Secrets(s.Namespace).Create(ctx, sec, metav1.CreateOptions{})
	switch {
	case err == nil:
		return Created, nil
	case apierrors.IsForbidden(err):
		return "", fmt.Errorf("creating secret %s/%s: %w (the ServiceAccount needs create on secrets in %s: the krm-agent Role)", s.Namespace, s.Name, err, s.Namespace)
	case !apierrors.IsAlreadyExists(err):
		return "", fmt.Errorf("creating secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	existing, err := cs.CoreV1().Secrets(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
	if apierrors.IsForbidden(err) {
		return "", fmt.Errorf("secret %s/%s exists, and reading it to check its keys failed: %w (the ServiceAccount needs get on secrets named %s: the krm-agent Role)", s.Namespace, s.Name, err, s.Name)
	}
	if err != nil {
		return "", fmt.Errorf("secret %s/%s exists, and reading it to check its keys failed: %w", s.Namespace, s.Name, err)
	}
	var missing []string
	for _, k := range s.Keys() {
		if len(existing.Data[k]) == 0 {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("secret %s/%s exists without the keys %s; it is left as it is: add them, or delete the secret to have a new password made (see README, Install)",
			s.Namespace, s.Name, strings.Join(missing, ", "))
	}
	return Kept, nil
}
