// Package deploy installs krm on the local cluster from its manifests, as a
// user would with `kubectl apply -k`, and makes the installed agent real:
// the agent Deployment's pods run on kwok nodes, which run no containers, so
// for each pod a krm-agent process is started on 127.0.0.1 with the
// container's arguments, and the pod's port 8080 is mapped to it. The
// process authenticates as the manifests' ServiceAccount with a token from
// the TokenRequest API, so the manifests' RBAC is what it gets. The agent
// pod's initContainers run first, the same way: the agent binary with their
// arguments (ensure-secret), which generates the install's Secrets. Redis
// is handled like the agent: a redis-server with the password of the
// generated Secret, behind the Redis pod.
//
// `kubectl krm …` then finds the agent pod by its labels and port-forwards
// to it, exactly as it would in a real cluster.
package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/krm-project/krm/pkg/client"
	"github.com/krm-project/krm/test/cluster"
)

// What the manifests install; the plugin's defaults find the agent by the
// same namespace and label.
const (
	Namespace      = "krm-system"
	AgentName      = "krm-agent"
	RedisName      = "krm-redis"
	ServiceAccount = "krm-agent"
	agentContainer = "agent"
	agentPort      = 8080
	redisPort      = 6379
	passwordEnv    = "KRM_REDIS_PASSWORD"
)

// StartFunc starts a long-running process. The caller owns its lifetime:
// a test stops it at cleanup, the demo leaves it to `make cluster-down`.
type StartFunc func(name, binary string, args, env []string) error

// Config says what to deploy where.
type Config struct {
	Cluster *cluster.State
	// Kustomization is the directory to apply with `kubectl apply -k`, such
	// as the repo's manifests/ or one of its overlays.
	Kustomization string
	// Install, if set, installs krm instead of `kubectl apply -k`: `helm
	// install` or `helm upgrade` of the chart. What it installs is run the
	// same way: the agent Deployment's initContainers (the chart has none)
	// and a process behind each of its current pods.
	Install func(ctx context.Context) ([]byte, error)
	// Agent is the krm-agent binary to run behind the agent pods.
	Agent string
	// Dir holds the ServiceAccount's kubeconfig.
	Dir string
	// Start starts the agent and Redis processes.
	Start StartFunc
	// Log receives kubectl's output and progress messages.
	Log io.Writer
	// TokenTTL is how long the ServiceAccount token is valid. Default 1h.
	TokenTTL time.Duration
}

// Agent is one agent pod and the local process behind it.
type Agent struct {
	Pod string
	// URL reaches the process directly, without the port-forward.
	URL string
}

// Installed is what Apply installed and started.
type Installed struct {
	Agents []Agent
	// Kubeconfig authenticates as the agent's ServiceAccount.
	Kubeconfig string
}

// Apply runs `kubectl apply -k` on the kustomization (or cfg.Install), then starts Redis
// and one agent per agent pod behind the pods, and waits until every agent
// answers /readyz and the Deployment is available.
func Apply(ctx context.Context, cfg Config) (*Installed, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = time.Hour
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	s := cfg.Cluster
	if cfg.Install != nil {
		out, err := cfg.Install(ctx)
		cfg.Log.Write(out)
		if err != nil {
			return nil, err
		}
	} else if out, err := kubectl(ctx, s, "apply", "-k", cfg.Kustomization); err != nil {
		return nil, fmt.Errorf("kubectl apply -k %s: %w\n%s", cfg.Kustomization, err, out)
	} else {
		cfg.Log.Write(out)
	}
	cs, err := s.Clientset()
	if err != nil {
		return nil, err
	}
	agentDeploy, err := cs.AppsV1().Deployments(Namespace).Get(ctx, AgentName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("the manifests should create deployment %s/%s: %w", Namespace, AgentName, err)
	}
	container, err := containerNamed(agentDeploy, agentContainer)
	if err != nil {
		return nil, err
	}
	kubeconfig, err := serviceAccountKubeconfig(ctx, cfg, cs)
	if err != nil {
		return nil, err
	}
	if err := RunInitContainers(ctx, cfg, agentDeploy, kubeconfig); err != nil {
		return nil, err
	}
	env, err := containerEnv(ctx, cs, container)
	if err != nil {
		return nil, err
	}
	password, ok := env[passwordEnv]
	if !ok {
		return nil, fmt.Errorf("container %s has no %s", container.Name, passwordEnv)
	}

	redisAddr, err := startRedis(ctx, cfg, cs, password)
	if err != nil {
		return nil, err
	}

	pods, err := currentPods(ctx, cs, agentDeploy)
	if err != nil {
		return nil, err
	}
	inst := &Installed{Kubeconfig: kubeconfig}
	for _, pod := range pods {
		port, err := cluster.FreePort()
		if err != nil {
			return nil, err
		}
		healthPort, err := cluster.FreePort()
		if err != nil {
			return nil, err
		}
		// The manifests' addresses are the pod's own; here every replica
		// is a process on this machine and needs ports of its own, on
		// loopback as the API's is in the pod.
		args := agentArgs(container.Args, map[string]string{
			"--listen":        net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			"--health-listen": net.JoinHostPort("127.0.0.1", strconv.Itoa(healthPort)),
			"--redis-url":     "redis://" + redisAddr + "/0",
			"--influx-url":    s.InfluxURL,
		})
		args = append(args, "--kubeconfig="+kubeconfig)
		var procEnv []string
		for k, v := range env {
			procEnv = append(procEnv, k+"="+v)
		}
		slices.Sort(procEnv)
		name := AgentName + "-" + pod
		fmt.Fprintf(cfg.Log, "starting %s behind pod %s/%s: %s\n", name, Namespace, pod, strings.Join(args, " "))
		if err := cfg.Start(name, cfg.Agent, args, procEnv); err != nil {
			return nil, fmt.Errorf("starting the agent for pod %s: %w", pod, err)
		}
		if err := s.ForwardPodPort(ctx, Namespace, pod, agentPort, port); err != nil {
			return nil, err
		}
		inst.Agents = append(inst.Agents, Agent{Pod: pod, URL: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))})
	}
	for _, a := range inst.Agents {
		if err := waitReady(ctx, a.URL, 90*time.Second); err != nil {
			return nil, fmt.Errorf("agent behind pod %s/%s: %w", Namespace, a.Pod, err)
		}
	}
	if err := waitAvailable(ctx, cs, AgentName); err != nil {
		return nil, err
	}
	return inst, nil
}

// kubectl runs the cluster's kubectl as its admin.
func kubectl(ctx context.Context, s *cluster.State, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, s.Kubectl, append([]string{"--kubeconfig", s.Kubeconfig}, args...)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.Bytes(), err
}

func containerNamed(d *appsv1.Deployment, name string) (*corev1.Container, error) {
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == name {
			return c, nil
		}
	}
	return nil, fmt.Errorf("deployment %s/%s has no container %q", d.Namespace, d.Name, name)
}

// initContainerTimeout bounds one initContainer's run; ensure-secret
// bounds itself to 30s.
const initContainerTimeout = 45 * time.Second

// RunInitContainers runs each initContainer of the agent Deployment d as
// kubelet would before the agent starts: the agent binary (the image's
// entrypoint) with the container's arguments, as the ServiceAccount of
// kubeconfig, with POD_NAMESPACE set. Run again, as after a re-apply, it
// must leave what the first run made as it is.
func RunInitContainers(ctx context.Context, cfg Config, d *appsv1.Deployment, kubeconfig string) error {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	agent, err := containerNamed(d, agentContainer)
	if err != nil {
		return err
	}
	for _, c := range d.Spec.Template.Spec.InitContainers {
		if c.Image != agent.Image || len(c.Command) > 0 {
			return fmt.Errorf("initContainer %s runs %s %q; this harness runs only the agent's own image", c.Name, c.Image, c.Command)
		}
		for _, e := range c.Env {
			if e.Name != "POD_NAMESPACE" {
				return fmt.Errorf("initContainer %s sets %s; this harness sets only POD_NAMESPACE", c.Name, e.Name)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, initContainerTimeout)
		cmd := exec.CommandContext(cctx, cfg.Agent, append(slices.Clone(c.Args), "--kubeconfig="+kubeconfig)...)
		cmd.Env = append(os.Environ(), "POD_NAMESPACE="+Namespace)
		out, err := cmd.CombinedOutput()
		cancel()
		fmt.Fprintf(cfg.Log, "initContainer %s: krm-agent %s\n%s", c.Name, strings.Join(c.Args, " "), out)
		if err != nil {
			return fmt.Errorf("initContainer %s (krm-agent %s): %w\n%s", c.Name, strings.Join(c.Args, " "), err, out)
		}
	}
	return nil
}

// containerEnv resolves the environment the manifests give container c:
// plain values, the pod's namespace, and keys of Secrets.
func containerEnv(ctx context.Context, cs kubernetes.Interface, c *corev1.Container) (map[string]string, error) {
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env[e.Name] = Namespace
		case e.ValueFrom.ResourceFieldRef != nil:
			// As the kubelet resolves it: the container's request or limit
			// in units of the divisor.
			v, err := resourceFieldValue(c, e.ValueFrom.ResourceFieldRef)
			if err != nil {
				return nil, fmt.Errorf("container %s: %s: %w", c.Name, e.Name, err)
			}
			env[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			sec, err := cs.CoreV1().Secrets(Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("reading %s from secret %s/%s: %w", e.Name, Namespace, ref.Name, err)
			}
			v, ok := sec.Data[ref.Key]
			if !ok {
				return nil, fmt.Errorf("secret %s/%s has no key %q for %s", Namespace, ref.Name, ref.Key, e.Name)
			}
			env[e.Name] = string(v)
		default:
			return nil, fmt.Errorf("container %s: %s comes from %+v, which this harness does not resolve", c.Name, e.Name, e.ValueFrom)
		}
	}
	return env, nil
}

// resourceFieldValue resolves a resourceFieldRef to container c's own
// resources (the harness runs each container as a process, so containerName
// must be c's), rounded up in units of the divisor as the kubelet does.
func resourceFieldValue(c *corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	if ref.ContainerName != "" && ref.ContainerName != c.Name {
		return "", fmt.Errorf("resourceFieldRef of container %q, which this harness does not resolve", ref.ContainerName)
	}
	var q resource.Quantity
	switch ref.Resource {
	case "limits.memory":
		q = c.Resources.Limits[corev1.ResourceMemory]
	case "requests.memory":
		q = c.Resources.Requests[corev1.ResourceMemory]
	case "limits.cpu":
		q = c.Resources.Limits[corev1.ResourceCPU]
	case "requests.cpu":
		q = c.Resources.Requests[corev1.ResourceCPU]
	default:
		return "", fmt.Errorf("resourceFieldRef %s, which this harness does not resolve", ref.Resource)
	}
	if q.IsZero() {
		return "", fmt.Errorf("resourceFieldRef %s: the container sets none (the kubelet would give the node's allocatable)", ref.Resource)
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	n := (q.MilliValue() + divisor.MilliValue() - 1) / divisor.MilliValue()
	return strconv.FormatInt(n, 10), nil
}

// startRedis starts a redis-server with the manifests' password behind the
// Redis pod and returns its local address.
func startRedis(ctx context.Context, cfg Config, cs kubernetes.Interface, password string) (string, error) {
	d, err := cs.AppsV1().Deployments(Namespace).Get(ctx, RedisName, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("the manifests should create deployment %s/%s: %w", Namespace, RedisName, err)
	}
	pods, err := currentPods(ctx, cs, d)
	if err != nil {
		return "", err
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server: %w (`make cluster-up` installs it)", err)
	}
	port, err := cluster.FreePort()
	if err != nil {
		return "", err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// As in the manifests, the password comes from a file, not argv.
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return "", err
	}
	conf := filepath.Join(cfg.Dir, "redis.conf")
	if err := os.WriteFile(conf, []byte("requirepass "+password+"\n"), 0o600); err != nil {
		return "", err
	}
	args := []string{conf, "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", cfg.Dir}
	if err := cfg.Start(RedisName, bin, args, nil); err != nil {
		return "", fmt.Errorf("starting redis-server: %w", err)
	}
	for _, pod := range pods {
		if err := cfg.Cluster.ForwardPodPort(ctx, Namespace, pod, redisPort, port); err != nil {
			return "", err
		}
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 15*time.Second, true, func(context.Context) (bool, error) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil, nil
	})
	if err != nil {
		return "", fmt.Errorf("redis-server on %s did not start listening: %w", addr, err)
	}
	return addr, nil
}

// serviceAccountKubeconfig writes a kubeconfig for the agent's
// ServiceAccount, with a token from the TokenRequest API, as the kubelet
// would mount into the pod.
func serviceAccountKubeconfig(ctx context.Context, cfg Config, cs kubernetes.Interface) (string, error) {
	ttl := int64(cfg.TokenTTL / time.Second)
	tr, err := cs.CoreV1().ServiceAccounts(Namespace).CreateToken(ctx, ServiceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for serviceaccount %s/%s: %w", Namespace, ServiceAccount, err)
	}
	admin, err := cfg.Cluster.RESTConfig()
	if err != nil {
		return "", err
	}
	ca, err := caData(admin)
	if err != nil {
		return "", err
	}
	user := "system:serviceaccount:" + Namespace + ":" + ServiceAccount
	kc := clientcmdapi.NewConfig()
	kc.Clusters["krm-local"] = &clientcmdapi.Cluster{Server: admin.Host, CertificateAuthorityData: ca}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["krm-agent"] = &clientcmdapi.Context{Cluster: "krm-local", AuthInfo: user, Namespace: Namespace}
	kc.CurrentContext = "krm-agent"
	path := filepath.Join(cfg.Dir, "krm-agent.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return "", err
	}
	return path, nil
}

func caData(c *rest.Config) ([]byte, error) {
	if len(c.CAData) > 0 {
		return c.CAData, nil
	}
	if c.CAFile == "" {
		return nil, errors.New("the cluster's kubeconfig has no certificate authority")
	}
	return os.ReadFile(c.CAFile)
}

// currentPods waits until the Deployment has as many pods as replicas, none
// of them terminating, each scheduled to a node, and returns their names.
func currentPods(ctx context.Context, cs kubernetes.Interface, d *appsv1.Deployment) ([]string, error) {
	want := 1
	if d.Spec.Replicas != nil {
		want = int(*d.Spec.Replicas)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, err
	}
	var names []string
	var last string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		names, last, err = scheduledPods(ctx, cs, sel)
		if err != nil {
			return false, err
		}
		if len(names) != want {
			last = fmt.Sprintf("%d of %d pods scheduled; %s", len(names), want, last)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for the pods of deployment %s/%s (%s): %w", d.Namespace, d.Name, last, err)
	}
	return names, nil
}

func scheduledPods(ctx context.Context, cs kubernetes.Interface, sel labels.Selector) (names []string, status string, err error) {
	list, err := cs.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, "", err
	}
	var pending []string
	for _, p := range list.Items {
		switch {
		case p.DeletionTimestamp != nil:
		case p.Spec.NodeName == "":
			pending = append(pending, p.Name+" unscheduled")
		default:
			names = append(names, p.Name)
		}
	}
	slices.Sort(names)
	return names, strings.Join(pending, ", "), nil
}

// agentArgs replaces the value of each flag in set that args carry; a flag
// args lack stays absent, so an overlay without InfluxDB gets none.
func agentArgs(args []string, set map[string]string) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		name, _, _ := strings.Cut(a, "=")
		if v, ok := set[name]; ok {
			a = name + "=" + v
		}
		out = append(out, a)
	}
	return out
}

func waitReady(ctx context.Context, url string, timeout time.Duration) error {
	c, err := client.New(url, nil)
	if err != nil {
		return err
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		last = c.Readyz(ctx)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("%s not ready after %s (last answer: %v): %w", url, timeout, last, err)
	}
	return nil
}

// waitAvailable waits for the Deployment's rollout: every replica updated
// and available.
func waitAvailable(ctx context.Context, cs kubernetes.Interface, name string) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		st := d.Status
		last = fmt.Sprintf("%d/%d available, %d updated", st.AvailableReplicas, want, st.UpdatedReplicas)
		return st.ObservedGeneration >= d.Generation && st.UpdatedReplicas == want && st.AvailableReplicas == want, nil
	})
	if err != nil {
		return fmt.Errorf("deployment %s/%s not available (%s): %w", Namespace, name, last, err)
	}
	return nil
}
