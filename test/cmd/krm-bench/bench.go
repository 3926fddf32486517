package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/krm-project/krm/pkg/client"
	"github.com/krm-project/krm/test/cluster"
)

// bench is one run: its namespace and nodes, its pods and the agent
// watching them.
type bench struct {
	s     *cluster.State
	o     options
	cfg   *rest.Config
	cs    *kubernetes.Clientset
	ns    string
	nodes []string
	agent *agentProcess
}

// benchNodes is how many kwok nodes the run adds for its pods.
const benchNodes = 3

func newBench(s *cluster.State, o options) (*bench, error) {
	cfg, err := s.RESTConfig()
	if err != nil {
		return nil, err
	}
	// Creating thousands of pods at client-go's default 5 QPS would take
	// half an hour.
	cfg.QPS, cfg.Burst = 500, 1000
	cfg.UserAgent = "krm-bench"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &bench{s: s, o: o, cfg: cfg, cs: cs}, nil
}

// createNamespace creates the run's namespace; its name prefixes the names
// of the run's nodes.
func (b *bench) createNamespace(ctx context.Context) error {
	name := "krm-bench-" + rand.String(5)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"krm-bench": "true"}}}
	if _, err := b.cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	b.ns = name
	// Pods are refused until the namespace's default ServiceAccount exists.
	for {
		_, err := b.cs.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsNotFound(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// createNodes adds kwok nodes for the run's pods. Bound to the cluster's own
// nodes, thousands of pods would fill their 110-pod capacity and leave the
// scheduler nowhere to put the pods of the tests that share the cluster;
// these nodes are tainted so that the scheduler never uses them.
func (b *bench) createNodes(ctx context.Context) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("1000"),
		corev1.ResourceMemory: resource.MustParse("4Ti"),
		corev1.ResourcePods:   *resource.NewQuantity(int64(b.o.pods/benchNodes+1), resource.DecimalSI),
	}
	for i := range benchNodes {
		name := fmt.Sprintf("%s-node-%d", b.ns, i)
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Annotations: map[string]string{cluster.NodeAnnotation: "fake"},
				Labels:      map[string]string{"type": "kwok", "krm-bench": "true", "kubernetes.io/hostname": name},
			},
			Spec:   corev1.NodeSpec{Taints: []corev1.Taint{{Key: "krm-bench", Value: "true", Effect: corev1.TaintEffectNoSchedule}}},
			Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
		}
		if _, err := b.cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating node %s: %w", name, err)
		}
		b.nodes = append(b.nodes, name)
	}
	for _, name := range b.nodes {
		for {
			n, err := b.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if cluster.NodeReady(n) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for kwok to make node %s Ready: %w", name, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// shards split the pods by label, so they can be deleted in parallel.
const shards = 16

// benchPod is a modest, realistic pod: one container with ports, env,
// requests and limits, bound to one of the run's nodes, so the scheduler
// plays no part. kwok marks it Running.
func benchPod(i int, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("bench-%05d", i),
			Labels: map[string]string{
				"app":   "krm-bench",
				"shard": strconv.Itoa(i % shards),
				"tier":  "backend",
			},
			Annotations: map[string]string{"krm.example/owner": "krm-bench"},
		},
		Spec: corev1.PodSpec{
			NodeName: node,
			Containers: []corev1.Container{{
				Name:  "app",
				Image: "krm-bench/app:1.0.0",
				Args:  []string{"--listen=:8080", "--log-level=info"},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "metrics", ContainerPort: 9090}},
				Env: []corev1.EnvVar{
					{Name: "LOG_FORMAT", Value: "json"},
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
				},
			}},
		},
	}
}

// createPods creates o.pods pods with o.workers goroutines.
func (b *bench) createPods(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, created atomic.Int64
	var wg sync.WaitGroup
	for range b.o.workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= b.o.pods {
					return
				}
				pod := benchPod(i, b.nodes[i%len(b.nodes)])
				if _, err := b.cs.CoreV1().Pods(b.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
					cancel(fmt.Errorf("creating pod %s: %w", pod.Name, err))
					return
				}
				created.Add(1)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return context.Cause(ctx)
		case <-tick.C:
			progress(fmt.Sprintf("created %d/%d pods", created.Load(), b.o.pods))
		}
	}
}

// waitAgentHasAll waits until the agent serves every pod as Running, and a
// LIST made after that (the verified view) agrees.
func (b *bench) waitAgentHasAll(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	count := func(view string) (int, error) {
		pods, err := b.agent.client.Resource(ctx, "pods")
		if err != nil {
			return 0, err
		}
		// A filtered LIST has no remainingItemCount (kube-apiserver's
		// rule), so the matching pods are counted whole; only their
		// metadata is decoded.
		l, err := client.ListAs[metav1.PartialObjectMetadata](ctx, b.agent.client, pods, client.ListOptions{Namespace: b.ns, View: view, FieldSelector: "status.phase=Running"})
		if err != nil {
			return 0, err
		}
		return len(l.Items), nil
	}
	last := time.Now()
	for {
		running, err := count("aggregated")
		if err != nil {
			return err
		}
		verified, err := count("verified")
		if err != nil {
			return err
		}
		if running == b.o.pods && verified == b.o.pods {
			return nil
		}
		if time.Since(last) > 5*time.Second {
			progress(fmt.Sprintf("the agent serves %d Running pods (%d in its last LIST), waiting for %d", running, verified, b.o.pods))
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the agent to serve %d Running pods: %d so far (%d verified): %w", b.o.pods, running, verified, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// cleanup stops the agent and deletes the namespace, its pods and the
// run's nodes, waiting (within ctx) until they are gone so the next run
// starts from a quiet cluster.
func (b *bench) cleanup(ctx context.Context) error {
	var errs []error
	if b.agent != nil && b.agent.running() {
		errs = append(errs, b.stopAgent())
	}
	if b.ns != "" {
		errs = append(errs, b.deleteNamespace(ctx))
	}
	for _, name := range b.nodes {
		if err := b.cs.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting node %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func (b *bench) deleteNamespace(ctx context.Context) error {
	progress("deleting namespace " + b.ns + ", its pods and the run's nodes")
	// Deleting the pods first, forced (nothing runs in them) and one
	// label shard per request in parallel, is much faster than leaving
	// them to the namespace controller or to one DeleteCollection, which
	// kube-apiserver works through one pod at a time. A request that times
	// out goes on in kube-apiserver, and deleting the namespace finishes
	// whatever is left: the namespace being gone is what says cleanup is
	// done.
	zero := int64(0)
	var wg sync.WaitGroup
	for shard := range shards {
		wg.Go(func() {
			err := b.cs.CoreV1().Pods(b.ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero},
				metav1.ListOptions{LabelSelector: "shard=" + strconv.Itoa(shard)})
			if err != nil && !apierrors.IsNotFound(err) {
				progress(fmt.Sprintf("deleting the pods of shard %d: %v; the namespace's deletion will finish them", shard, err))
			}
		})
	}
	wg.Wait()
	if err := b.cs.CoreV1().Namespaces().Delete(ctx, b.ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting namespace %s: %w", b.ns, err)
	}
	for {
		_, err := b.cs.CoreV1().Namespaces().Get(ctx, b.ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace %s still exists; delete it with: kubectl delete namespace %s", b.ns, b.ns)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// agentProcess is the krm-agent this run started.
type agentProcess struct {
	cmd    *exec.Cmd
	url    string
	client *client.Client
	exited chan struct{}
	err    error // cmd.Wait's result, set before exited closes
	mu     sync.Mutex
	log    []string // the last lines of its stderr
}

// agentVerifyInterval is the agent's --verify-interval in the run.
const agentVerifyInterval = 30 * time.Second

// startAgent starts bin on the run's pods; extra flags come last and win.
func (b *bench) startAgent(ctx context.Context, bin string, extra ...string) error {
	args := append([]string{"--kubeconfig", b.s.Kubeconfig, "--resources", "pods", "--namespace", b.ns,
		"--verify-interval", agentVerifyInterval.String(), "--listen", "127.0.0.1:0", "--log-format", "json"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), b.o.agentEnv...)
	// If krm-bench dies without cleaning up, so does the agent.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &agentProcess{cmd: cmd, exited: make(chan struct{})}
	b.agent = p
	address := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log = append(p.log, line)
			if len(p.log) > 20 {
				p.log = p.log[1:]
			}
			p.mu.Unlock()
			var rec struct {
				Address string `json:"address"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Address != "" {
				select {
				case address <- rec.Address:
				default:
				}
			}
		}
		p.err = cmd.Wait()
		close(p.exited)
	}()
	select {
	case addr := <-address:
		p.url = "http://" + addr
	case <-p.exited:
		return fmt.Errorf("krm-agent exited before listening (%v):\n%s", p.err, p.tail())
	case <-time.After(30 * time.Second):
		return fmt.Errorf("krm-agent did not say where it listens within 30s:\n%s", p.tail())
	case <-ctx.Done():
		return ctx.Err()
	}
	if p.client, err = client.New(p.url, nil); err != nil {
		return err
	}
	for {
		if err := p.client.Readyz(ctx); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.exited:
			return fmt.Errorf("krm-agent exited (%v):\n%s", p.err, p.tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (b *bench) stopAgent() error {
	p := b.agent
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("krm-agent ignored SIGTERM for 15s and was killed:\n%s", p.tail())
	}
	if p.err != nil {
		return fmt.Errorf("krm-agent exited with %v:\n%s", p.err, p.tail())
	}
	return nil
}

func (p *agentProcess) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *agentProcess) tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.log, "\n")
}

// rss is the agent's resident set size, from /proc.
func (p *agentProcess) rss() (int64, error) {
	return procStatus(p.cmd.Process.Pid, "VmRSS")
}

func buildAgent(ctx context.Context, dir string) (string, error) {
	bin := dir + "/krm-agent"
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/krm-project/krm/cmd/krm-agent").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/krm-agent (run krm-bench inside the krm module): %w\n%s", err, out)
	}
	return bin, nil
}
