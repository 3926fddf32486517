package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// watcher is a running `kubectl … -w` whose output lines are collected.
type watcher struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

// startWatch runs the cluster's kubectl with args in p's environment until
// the test ends.
func startWatch(t *testing.T, p *plugin, args ...string) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{cmd: exec.CommandContext(ctx, p.kubectl, args...), done: make(chan struct{})}
	w.cmd.Env = p.env
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	w.cmd.Stderr = w.cmd.Stdout
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			w.mu.Lock()
			w.lines = append(w.lines, sc.Text())
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-w.done
		_ = w.cmd.Wait()
	})
	return w
}

func (w *watcher) output() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.lines...)
}

// names are the first fields of the lines after the header.
func (w *watcher) names() []string {
	var names []string
	for i, l := range w.output() {
		if f := strings.Fields(l); i > 0 && len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// TestPluginWatch checks `kubectl krm get -w` against `kubectl get -w`: a
// watched type shows every change, a watched name only its own object.
func TestPluginWatch(t *testing.T) {
	c := clustertest.Get(t)
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ns := clustertest.Namespace(t, c)
	p := buildPlugin(t, c)
	agent := startAgent(t, buildAgent(t), "--kubeconfig", c.Kubeconfig, "--namespace", ns, "--resources", "pods")
	agent.waitReady(t, 60*time.Second)
	testWatch(t, c, cs, ns, p, agent.URL)
}

func testWatch(t *testing.T, c *cluster.State, cs kubernetes.Interface, ns string, p *plugin, agentURL string) {
	ctx := t.Context()
	create := func(name string) {
		t.Helper()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "krm-e2e/watch:1"}}},
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	label := func(name, value string) {
		t.Helper()
		patch := []byte(`{"metadata":{"labels":{"step":"` + value + `"}}}`)
		if _, err := cs.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create("first")
	create("second")
	waitFor(t, 60*time.Second, "both pods Running", func() error { return podsRunning(ctx, cs, ns, 2) })
	// The agent has seen them too.
	waitFor(t, 30*time.Second, "the agent to list both pods", func() error {
		return sameLines(p.run(t, "get", "pods", "-n", ns, "-o", "name"), p.krm(t, "get", "pods", "-n", ns, "-o", "name", "--agent-url", agentURL))
	})

	kubectlAll := startWatch(t, p, "get", "pods", "-n", ns, "-w")
	krmAll := startWatch(t, p, "krm", "get", "pods", "-n", ns, "-w", "--agent-url", agentURL)
	kubectlOne := startWatch(t, p, "get", "pod/first", "-n", ns, "-w")
	krmOne := startWatch(t, p, "krm", "get", "pod/first", "-n", ns, "-w", "--agent-url", agentURL)
	for _, w := range []*watcher{kubectlAll, krmAll, kubectlOne, krmOne} {
		waitFor(t, 30*time.Second, "the watches to print their lists", func() error {
			if len(w.output()) < 2 {
				return errorf("printed %q", w.output())
			}
			return nil
		})
	}

	label("second", "one")
	label("first", "one")
	create("third")
	label("second", "two")

	// Every change reaches both; kubectl and krm print the same objects in
	// the same order (AGE may tick, so only names are compared).
	waitFor(t, 30*time.Second, "krm's watches to print what kubectl's print", func() error {
		// Both have caught up only once kubectl shows every change: the
		// 2 listed pods and at least a row per change.
		if n := len(kubectlAll.names()); n < 2+4 {
			return errorf("kubectl get pods -w printed %d rows so far", n)
		}
		if n := len(kubectlOne.names()); n < 1+1 {
			return errorf("kubectl get pod/first -w printed %d rows so far", n)
		}
		if err := sameNames(kubectlAll.names(), krmAll.names()); err != nil {
			return errorf("get pods -w: %v\nkubectl:\n%s\nkrm:\n%s", err, strings.Join(kubectlAll.output(), "\n"), strings.Join(krmAll.output(), "\n"))
		}
		if err := sameNames(kubectlOne.names(), krmOne.names()); err != nil {
			return errorf("get pod/first -w: %v\nkubectl:\n%s\nkrm:\n%s", err, strings.Join(kubectlOne.output(), "\n"), strings.Join(krmOne.output(), "\n"))
		}
		return nil
	})
	for _, n := range krmOne.names() {
		if n != "first" {
			t.Errorf("kubectl krm get pod/first -w printed %s:\n%s", n, strings.Join(krmOne.output(), "\n"))
		}
	}
	if got := krmAll.names(); len(got) < 2+4 {
		t.Errorf("kubectl krm get pods -w printed %d rows, want the 2 listed and at least one per change:\n%s", len(got), strings.Join(krmAll.output(), "\n"))
	}
	if krmAll.output()[0] != kubectlAll.output()[0] {
		t.Errorf("header: kubectl %q, krm %q", kubectlAll.output()[0], krmAll.output()[0])
	}
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// sameLines compares two commands' stdout.
func sameLines(want, got result) error {
	if want.code != 0 || got.code != 0 || want.stdout != got.stdout {
		return errorf("kubectl:\n%s\nkrm:\n%s", want, got)
	}
	return nil
}

func sameNames(want, got []string) error {
	if diff := cmp.Diff(want, got); diff != "" {
		return errorf("rows by name (-kubectl +krm):\n%s", diff)
	}
	return nil
}
