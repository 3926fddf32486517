package connect

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
	// URL skips the port-forward when set.
	URL       string
	Namespace string
	Selector  string
	Port      int
	// HTTPClient is used for the API; nil means the client package's
	// default.
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
}

// Connect reaches the agent: at o.URL, or by port-forwarding to a ready pod
// matching o.Selector in o.Namespace. The port-forward lasts until ctx is
// done. Every failure is an error that says what was tried and what to do.
func Connect(ctx context.Context, cfg *rest.Config, o Options) (*Connection, error) {
	if o.URL != "" {
		c, err := client.New(o.URL, o.HTTPClient)
		if err != nil {
			return nil, fmt.Errorf("--agent-url %q: %w", o.URL, err)
		}
		conn := &Connection{Client: c, URL: o.URL}
		return conn, check(ctx, conn)
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
	if err := conn.Client.Healthz(ctx); err != nil {
		return fmt.Errorf("the krm agent at %s is unreachable: %w", where, err)
	}
	st, err := conn.Client.AgentStatus(ctx)
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("version skew: the agent at %s does not serve krm's API %s that this plugin speaks; install matching versions of the plugin and the agent (`kubectl krm version` shows both)",
			where, krmv1alpha1.SchemeGroupVersion)
	}
	if err != nil {
		return fmt.Errorf("the krm agent at %s: %w", where, err)
	}
	conn.Agent = st
	return nil
}
