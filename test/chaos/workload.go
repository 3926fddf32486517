package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// workload churns pods and deployments in one namespace at a steady rate:
// each tick creates, relabels or deletes a pod, or scales or annotates a
// deployment, straight at kube-apiserver (never through the proxy).
type workload struct {
	cs      kubernetes.Interface
	ns      string
	nodes   []string
	maxPods int
	rate    float64

	mu   sync.Mutex
	pods map[string]bool // pods it created and has not deleted
	next int

	ops, failed atomic.Int64
	cancel      context.CancelFunc
	done        chan struct{}
}

// deployments is how many Deployments the workload keeps and scales.
const deployments = 2

// populate creates half the pods and the deployments before the agents
// start.
func (w *workload) populate(ctx context.Context) error {
	w.pods = map[string]bool{}
	for range w.maxPods / 2 {
		if err := w.createPod(ctx); err != nil {
			return err
		}
	}
	for i := range deployments {
		if err := w.createDeployment(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

// start churns until stop.
func (w *workload) start(ctx context.Context) {
	ctx, w.cancel = context.WithCancel(ctx)
	w.done = make(chan struct{})
	go func() {
		defer close(w.done)
		tick := time.NewTicker(time.Duration(float64(time.Second) / w.rate))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			octx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := w.step(octx)
			cancel()
			w.ops.Add(1)
			if err != nil && ctx.Err() == nil {
				w.failed.Add(1)
			}
		}
	}()
}

// stop ends the churn and waits for its last change.
func (w *workload) stop() {
	if w.cancel != nil {
		w.cancel()
		<-w.done
		w.cancel = nil
	}
}

func (w *workload) step(ctx context.Context) error {
	w.mu.Lock()
	n := len(w.pods)
	w.mu.Unlock()
	switch r := rand.IntN(100); {
	case r < 10:
		return w.scaleDeployment(ctx, rand.IntN(deployments))
	case r < 40 && n < w.maxPods, n == 0:
		return w.createPod(ctx)
	case r < 75:
		return w.relabelPod(ctx)
	default:
		return w.deletePod(ctx)
	}
}

func (w *workload) pick() (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for name := range w.pods {
		return name, true
	}
	return "", false
}

func (w *workload) createPod(ctx context.Context) error {
	w.mu.Lock()
	i := w.next
	w.next++
	w.mu.Unlock()
	name := fmt.Sprintf("churn-%05d", i)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "krm-chaos", "gen": "0"}},
		Spec: corev1.PodSpec{
			// Bound to a node: the scheduler plays no part, kwok runs it.
			NodeName:   w.nodes[i%len(w.nodes)],
			Containers: []corev1.Container{{Name: "app", Image: "krm-chaos/app:1"}},
		},
	}
	if _, err := w.cs.CoreV1().Pods(w.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return err
	}
	w.mu.Lock()
	w.pods[name] = true
	w.mu.Unlock()
	return nil
}

func (w *workload) relabelPod(ctx context.Context) error {
	name, ok := w.pick()
	if !ok {
		return nil
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{"gen":%q}}}`, strconv.Itoa(rand.IntN(1000)))
	_, err := w.cs.CoreV1().Pods(w.ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

func (w *workload) deletePod(ctx context.Context) error {
	name, ok := w.pick()
	if !ok {
		return nil
	}
	zero := int64(0)
	err := w.cs.CoreV1().Pods(w.ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err == nil {
		w.mu.Lock()
		delete(w.pods, name)
		w.mu.Unlock()
	}
	return err
}

func (w *workload) createDeployment(ctx context.Context, i int) error {
	one := int32(1)
	labels := map[string]string{"app": "krm-chaos-deploy", "deploy": strconv.Itoa(i)}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("churn-deploy-%d", i)},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "krm-chaos/app:1"}}},
			},
		},
	}
	_, err := w.cs.AppsV1().Deployments(w.ns).Create(ctx, d, metav1.CreateOptions{})
	return err
}

func (w *workload) scaleDeployment(ctx context.Context, i int) error {
	patch := fmt.Sprintf(`{"spec":{"replicas":%d},"metadata":{"annotations":{"krm-chaos/gen":%q}}}`, 1+rand.IntN(3), strconv.Itoa(rand.IntN(1000)))
	_, err := w.cs.AppsV1().Deployments(w.ns).Patch(ctx, fmt.Sprintf("churn-deploy-%d", i), types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}
