// Package benchenv sets up what krm's benchmark (test/cmd/krm-bench) and
// load suite (test/load) run against on the local cluster: a namespace of
// many realistic pods bound to kwok nodes of their own, and a krm-agent
// process watching them, with the means to measure that process.
package benchenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// Env is one run's namespace, nodes and pods on the local cluster.
type Env struct {
	S   *cluster.State
	Cfg *rest.Config
	CS  *kubernetes.Clientset
	// NS is the run's namespace; its name prefixes the nodes'.
	NS    string
	Nodes []string
	// Pods is how many pods the run creates, with Workers goroutines.
	Pods, Workers int
	// Progress receives a line about each slow step; nil discards them.
	Progress func(string)
	prefix   string
}

// Nodes is how many kwok nodes a run adds for its pods.
const Nodes = 3

// Shards split the pods by their shard label, so they can be deleted in
// parallel and selected in known numbers.
const Shards = 16

// New returns an Env on s whose namespace will be named prefix-<random>;
// its client may make 500 requests a second (creating thousands of pods
// at client-go's default 5 QPS would take half an hour).
func New(s *cluster.State, prefix string, pods, workers int, progress func(string)) (*Env, error) {
	cfg, err := s.RESTConfig()
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 500, 1000
	cfg.UserAgent = prefix
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if progress == nil {
		progress = func(string) {}
	}
	return &Env{S: s, Cfg: cfg, CS: cs, Pods: pods, Workers: workers, Progress: progress, prefix: prefix}, nil
}

// AttachCluster uses the running local cluster, or starts one (which keeps
// running afterwards, as after `make cluster-up`), logging to log.
func AttachCluster(ctx context.Context, log io.Writer) (*cluster.State, error) {
	cfg := cluster.DefaultConfig()
	if s, err := cluster.Load(cfg.Dir); err == nil && s.Running(ctx) == nil {
		return s, nil
	}
	fmt.Fprintln(log, "no running local cluster in "+cfg.Dir+"; starting one (make cluster-down stops it)")
	cfg.Log = log
	return cluster.Up(ctx, cfg)
}

// Setup creates the namespace and the nodes.
func (e *Env) Setup(ctx context.Context) error {
	if err := e.createNamespace(ctx); err != nil {
		return err
	}
	return e.createNodes(ctx)
}

func (e *Env) createNamespace(ctx context.Context) error {
	name := e.prefix + "-" + rand.String(5)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{e.prefix: "true"}}}
	if _, err := e.CS.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	e.NS = name
	// Pods are refused until the namespace's default ServiceAccount exists.
	for {
		_, err := e.CS.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsNotFound(err) {
			return err
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// createNodes adds kwok nodes for the run's pods. Bound to the cluster's own
// nodes, thousands of pods would fill their 110-pod capacity and leave the
// scheduler nowhere to put the pods of the tests that share the cluster;
// these nodes are tainted so that the scheduler never uses them.
func (e *Env) createNodes(ctx context.Context) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("1000"),
		corev1.ResourceMemory: resource.MustParse("4Ti"),
		corev1.ResourcePods:   *resource.NewQuantity(int64(e.Pods/Nodes+1), resource.DecimalSI),
	}
	for i := range Nodes {
		name := fmt.Sprintf("%s-node-%d", e.NS, i)
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Annotations: map[string]string{cluster.NodeAnnotation: "fake"},
				Labels:      map[string]string{"type": "kwok", e.prefix: "true", "kubernetes.io/hostname": name},
			},
			Spec:   corev1.NodeSpec{Taints: []corev1.Taint{{Key: e.prefix, Value: "true", Effect: corev1.TaintEffectNoSchedule}}},
			Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
		}
		if _, err := e.CS.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating node %s: %w", name, err)
		}
		e.Nodes = append(e.Nodes, name)
	}
	for _, name := range e.Nodes {
		for {
			n, err := e.CS.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if cluster.NodeReady(n) {
				break
			}
			if err := sleep(ctx, 100*time.Millisecond); err != nil {
				return fmt.Errorf("waiting for kwok to make node %s Ready: %w", name, err)
			}
		}
	}
	return nil
}

// PodName is the name of the run's i-th pod.
func PodName(i int) string { return fmt.Sprintf("bench-%05d", i) }

// Pod is a modest, realistic pod: one container with ports, env, requests
// and limits, bound to node, so the scheduler plays no part. kwok marks it
// Running. Its labels are app=krm-bench, tier=backend and shard=i%Shards.
func Pod(i int, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: PodName(i),
			Labels: map[string]string{
				"app":   "krm-bench",
				"shard": strconv.Itoa(i % Shards),
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

// PodsInShard is how many of the run's pods carry shard=shard.
func (e *Env) PodsInShard(shard int) int {
	n := e.Pods / Shards
	if shard < e.Pods%Shards {
		n++
	}
	return n
}

// CreatePods creates e.Pods pods with e.Workers goroutines, bound
// round-robin to the run's nodes.
func (e *Env) CreatePods(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, created atomic.Int64
	var wg sync.WaitGroup
	for range e.Workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= e.Pods {
					return
				}
				pod := Pod(i, e.Nodes[i%len(e.Nodes)])
				if _, err := e.CS.CoreV1().Pods(e.NS).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
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
			e.Progress(fmt.Sprintf("created %d/%d pods", created.Load(), e.Pods))
		}
	}
}

// WaitAgentHasAll waits until the agent serves every pod as Running, and a
// LIST made after that (the verified view) agrees.
func (e *Env) WaitAgentHasAll(ctx context.Context, a *Agent, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	count := func(view string) (int, error) {
		pods, err := a.Client.Resource(ctx, "pods")
		if err != nil {
			return 0, err
		}
		// A filtered LIST has no remainingItemCount (kube-apiserver's
		// rule), so the matching pods are counted whole; only their
		// metadata is decoded.
		l, err := client.ListAs[metav1.PartialObjectMetadata](ctx, a.Client, pods, client.ListOptions{Namespace: e.NS, View: view, FieldSelector: "status.phase=Running"})
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
		if running == e.Pods && verified == e.Pods {
			return nil
		}
		if time.Since(last) > 5*time.Second {
			e.Progress(fmt.Sprintf("the agent serves %d Running pods (%d in its last LIST), waiting for %d", running, verified, e.Pods))
			last = time.Now()
		}
		// Each check reads every pod's metadata twice: at 100,000 pods
		// that is work enough to slow what it waits for.
		if err := sleep(ctx, max(500*time.Millisecond, time.Duration(e.Pods/10000)*time.Second)); err != nil {
			return fmt.Errorf("waiting for the agent to serve %d Running pods: %d so far (%d verified): %w", e.Pods, running, verified, err)
		}
	}
}

// SettleTimeout is how long the agent gets to serve every pod after they
// were created.
func (e *Env) SettleTimeout() time.Duration {
	return max(6*time.Minute, time.Duration(e.Pods/10000)*3*time.Minute)
}

// Cleanup deletes the namespace, its pods and the run's nodes, waiting
// (within ctx) until they are gone so the next run starts from a quiet
// cluster.
func (e *Env) Cleanup(ctx context.Context) error {
	var errs []error
	if e.NS != "" {
		errs = append(errs, e.deleteNamespace(ctx))
	}
	// The nodes go even when the namespace took all of ctx's time.
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for _, name := range e.Nodes {
		if err := e.CS.CoreV1().Nodes().Delete(nctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting node %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func (e *Env) deleteNamespace(ctx context.Context) error {
	e.Progress("deleting namespace " + e.NS + ", its pods and the run's nodes")
	// Deleting the pods first, forced (nothing runs in them) and one
	// label shard per request in parallel, is much faster than leaving
	// them to the namespace controller or to one DeleteCollection, which
	// kube-apiserver works through one pod at a time. A request that times
	// out goes on in kube-apiserver, and deleting the namespace finishes
	// whatever is left: the namespace being gone is what says cleanup is
	// done.
	zero := int64(0)
	var wg sync.WaitGroup
	for shard := range Shards {
		wg.Go(func() {
			err := e.CS.CoreV1().Pods(e.NS).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero},
				metav1.ListOptions{LabelSelector: "shard=" + strconv.Itoa(shard)})
			if err != nil && !apierrors.IsNotFound(err) {
				e.Progress(fmt.Sprintf("deleting the pods of shard %d: %v; the namespace's deletion will finish them", shard, err))
			}
		})
	}
	wg.Wait()
	if err := e.CS.CoreV1().Namespaces().Delete(ctx, e.NS, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting namespace %s: %w", e.NS, err)
	}
	for {
		_, err := e.CS.CoreV1().Namespaces().Get(ctx, e.NS, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if sleep(ctx, 500*time.Millisecond) != nil {
			return fmt.Errorf("namespace %s still exists; delete it with: kubectl delete namespace %s", e.NS, e.NS)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// ProcStatus reads one size field of /proc/<pid>/status ("VmRSS",
// "VmHWM", "RssAnon"), in bytes.
func ProcStatus(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("reading %s %q: %w", field, line, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}
