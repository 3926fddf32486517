package connect

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/client"
)

// Defaults for finding the agent, matching the manifests.
const (
	DefaultNamespace = "krm-system"
	DefaultSelector  = "app.kubernetes.io/name=krm-agent"
	DefaultPort      = 8080
)

// InstallHint tells a user without an agent how to get one.
const InstallHint = "install the agent with `kubectl apply -k <krm>/manifests`, point at it with --agent-namespace and --agent-selector, or give its address with --agent-url"

// Options say where the agent is.
type Options struct {
	// URL skips the port-forward when set. An https URL is sent the
	// kubeconfig's credentials (the agent's --secure-listen); an http one
	// none.
	URL       string
	Namespace string
	Selector  string
	Port      int
	// CAFile verifies an https agent's certificate; with neither it nor
	// InsecureSkipTLSVerify, the system's roots do.
	CAFile                string
	InsecureSkipTLSVerify bool
	// DisableCompression passes the agent's bytes and Content-Encoding
	// through as they are, as a proxy must.
	DisableCompression bool
	// HTTPClient is used for the API of a port-forward or an http URL; nil
	// means the client package's default. An https URL gets a client made
	// from the kubeconfig.
	HTTPClient *http.Client
}

// Connection is a reachable agent.
type Connection struct {
	Client *client.Client
	// Agent is the agent's status as Connect read it, checking that the
	// agent serves krm.io/v1alpha1.
	Agent *krmv1alpha1.AgentStatus
	// Pod is namespace/name of the agent pod, empty with a URL.
	Pod string
	// URL is where the client talks to.
	URL string
	// Transport sends the kubeconfig's credentials to an https URL and
	// verifies the agent's certificate; nil for a port-forward or an http
	// URL, which take no credentials.
	Transport http.RoundTripper
}

// Connect reaches the agent: at o.URL, or by port-forwarding to a ready pod
// matching o.Selector in o.Namespace. The port-forward lasts until ctx is
// done. An https o.URL is sent cfg's credentials, as client-go sends them to
// an API server; nothing else is. Every failure is an error that says what
// was tried and what to do.
func Connect(ctx context.Context, cfg *rest.Config, o Options) (*Connection, error) {
	if o.URL != "" {
		return connectURL(ctx, cfg, o)
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Selector == "" {
		o.Selector = DefaultSelector
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if cfg == nil {
		return nil, errors.New("no Kubernetes client configuration to find the agent with; give --agent-url or a kubeconfig")
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	pod, err := findPod(ctx, cs, o)
	if err != nil {
		return nil, err
	}
	port, err := PortForward(ctx, cfg, pod.Namespace, pod.Name, o.Port)
	if err != nil {
		return nil, err
	}
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	c, err := client.New(u, o.HTTPClient)
	if err != nil {
		return nil, err
	}
	conn := &Connection{Client: c, Pod: pod.Namespace + "/" + pod.Name, URL: u}
	return conn, check(ctx, conn)
}

// connectURL reaches the agent at o.URL.
func connectURL(ctx context.Context, cfg *rest.Config, o Options) (*Connection, error) {
	hc := o.HTTPClient
	if _, err := client.New(o.URL, hc); err != nil {
		return nil, fmt.Errorf("--agent-url %q: %w", o.URL, err)
	}
	u, _ := url.Parse(o.URL) // client.New has parsed it
	var rt http.RoundTripper
	if u.Scheme == "https" {
		var timeout time.Duration
		var err error
		if rt, timeout, err = secureTransport(cfg, o); err != nil {
			return nil, err
		}
		hc = &http.Client{Transport: rt, Timeout: timeout}
	} else if o.CAFile != "" || o.InsecureSkipTLSVerify {
		return nil, fmt.Errorf("--agent-certificate-authority and --agent-insecure-skip-tls-verify are for an https --agent-url, and %s is plain http", o.URL)
	}
	c, err := client.New(o.URL, hc)
	if err != nil {
		return nil, fmt.Errorf("--agent-url %q: %w", o.URL, err)
	}
	conn := &Connection{Client: c, URL: o.URL, Transport: rt}
	return conn, check(ctx, conn)
}

// findPod picks a ready agent pod, preferring the newest.
func findPod(ctx context.Context, cs kubernetes.Interface, o Options) (*corev1.Pod, error) {
	pods, err := cs.CoreV1().Pods(o.Namespace).List(ctx, metav1.ListOptions{LabelSelector: o.Selector})
	switch {
	case apierrors.IsForbidden(err):
		return nil, fmt.Errorf("not allowed to find the krm agent: listing pods in namespace %s needs the RBAC permission list on pods there: %w", o.Namespace, err)
	case err != nil:
		return nil, fmt.Errorf("finding the krm agent (pods in namespace %s with selector %s): %w", o.Namespace, o.Selector, err)
	case len(pods.Items) == 0:
		return nil, fmt.Errorf("no krm agent pod in namespace %q with selector %q: %s", o.Namespace, o.Selector, InstallHint)
	}
	items := pods.Items
	sort.Slice(items, func(i, j int) bool { return items[j].CreationTimestamp.Before(&items[i].CreationTimestamp) })
	var states []string
	for i := range items {
		p := &items[i]
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podReady(p) {
			return p, nil
		}
		states = append(states, fmt.Sprintf("%s (%s%s)", p.Name, p.Status.Phase, notReadyReason(p)))
	}
	return nil, fmt.Errorf("the krm agent is not ready: no pod in namespace %s with selector %s is Running and Ready: %s; check `kubectl -n %s describe pod` and the agent's /readyz",
		o.Namespace, o.Selector, strings.Join(states, ", "), o.Namespace)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func notReadyReason(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return ", terminating"
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status != corev1.ConditionTrue {
			if c.Reason != "" {
				return ", not ready: " + c.Reason
			}
			return ", not ready"
		}
	}
	return ""
}

// check makes sure an agent answers and serves krm.io/v1alpha1, the API
// this plugin reads; it keeps the AgentStatus it read.
func check(ctx context.Context, conn *Connection) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	where := conn.URL
	if conn.Pod != "" {
		where = fmt.Sprintf("%s (through a port-forward to pod %s)", conn.URL, conn.Pod)
	}
	var untrusted *UntrustedCertificateError
	err := conn.Client.Healthz(ctx)
	switch {
	case errors.As(err, &untrusted):
		return fmt.Errorf("the krm agent at %s: %w", where, untrusted)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("the krm agent at %s answered %w: its API server did not accept your credentials when the agent asked it to review them (TokenReview); "+
			"check that your token or exec plugin is for the cluster the agent runs in and has not expired (`kubectl auth whoami` asks that API server who you are)", where, err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("the krm agent at %s: %w", where, err)
	case err != nil:
		return fmt.Errorf("the krm agent at %s is unreachable: %w", where, err)
	}
	st, err := conn.Client.AgentStatus(ctx)
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("version skew: the agent at %s does not serve krm's API %s that this plugin speaks; install matching versions of the plugin and the agent (`kubectl krm version` shows both)",
			where, krmv1alpha1.SchemeGroupVersion)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("the krm agent at %s: %w; the plugin reads the agent's own status first, which needs get on agentstatuses and list on resourcestatuses in API group %s (they hold no object content)",
			where, err, krmv1alpha1.GroupName)
	case err != nil:
		return fmt.Errorf("the krm agent at %s: %w", where, err)
	}
	conn.Agent = st
	return nil
}
