// Command krm-demo is `make demo`: it brings up the local cluster, starts a
// small workload, installs krm from manifests/ with the agent running behind
// its kwok pod, changes the workload while the agent watches, and shows the
// plugin's output. The cluster and the agent keep running afterwards.
package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/deploy"
)

//go:embed workload.yaml
var workload []byte

func main() {
	bin := flag.String("bin", "bin", "Directory holding krm-agent, kubectl-krm and kubectl_complete-krm (make build).")
	manifestsDir := flag.String("manifests", "manifests", "The kustomization to install krm from.")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "krm-demo: unexpected arguments %q; see -h\n", flag.Args())
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, *bin, *manifestsDir); err != nil {
		fmt.Fprintln(os.Stderr, "krm-demo:", err)
		os.Exit(1)
	}
}

type demo struct {
	cluster *cluster.State
	cs      kubernetes.Interface
	bin     string
	env     []string
}

func run(ctx context.Context, bin, manifestsDir string) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	for _, f := range []string{"krm-agent", "kubectl-krm", "kubectl_complete-krm"} {
		if _, err := os.Stat(filepath.Join(bin, f)); err != nil {
			return fmt.Errorf("%w; run `make build` first (make demo does)", err)
		}
	}

	step("Starting the local cluster (the first run builds kube-apiserver, etcd and kwok: about 15 minutes)")
	cfg := cluster.DefaultConfig()
	cfg.Log = os.Stderr
	s, err := cluster.Up(ctx, cfg)
	if err != nil {
		return err
	}
	cs, err := s.Clientset()
	if err != nil {
		return err
	}
	d := &demo{cluster: s, cs: cs, bin: bin, env: append(os.Environ(),
		"KUBECONFIG="+s.Kubeconfig,
		"PATH="+bin+string(os.PathListSeparator)+filepath.Dir(s.Kubectl)+string(os.PathListSeparator)+os.Getenv("PATH"),
	)}

	step("Starting the demo workload: namespaces shop and batch")
	if err := d.kubectl(ctx, bytes.NewReader(workload), "apply", "-f", "-"); err != nil {
		return err
	}
	if err := d.waitPods(ctx, "shop", 8); err != nil {
		return err
	}

	step("Installing krm: kubectl apply -k " + manifestsDir)
	// A previous demo's agents are stopped; their pods may be replaced.
	if err := s.StopAttached(); err != nil {
		return err
	}
	inst, err := deploy.Apply(ctx, deploy.Config{
		Cluster:       s,
		Kustomization: manifestsDir,
		Agent:         filepath.Join(bin, "krm-agent"),
		Dir:           filepath.Join(s.Dir, "krm-demo"),
		TokenTTL:      24 * time.Hour,
		Log:           os.Stdout,
		Start: func(name, binary string, args, env []string) error {
			_, err := s.StartAttached(name, binary, args, env)
			return err
		},
	})
	if err != nil {
		return err
	}
	// deploy.Apply ran the agent pod's initContainer, which generated the
	// Redis password: nothing the demo uses is fixed in the repo.
	fmt.Println("the agent pod's initContainer (krm-agent ensure-secret) generated Secret krm-system/krm-redis, or kept the one an earlier demo made")
	for _, a := range inst.Agents {
		fmt.Printf("agent pod krm-system/%s is served by a local krm-agent (log: %s)\n", a.Pod,
			filepath.Join(s.Dir, "logs", deploy.AgentName+"-"+a.Pod+".log"))
	}

	step("Changing the workload while krm watches: scale frontend 3 -> 6 -> 2, reports 1 -> 3")
	for _, sc := range []struct {
		ns, name string
		replicas int
		pods     int
	}{{"shop", "frontend", 6, 11}, {"batch", "reports", 3, 3}, {"shop", "frontend", 2, 7}} {
		if err := d.kubectl(ctx, nil, "scale", "-n", sc.ns, "deployment/"+sc.name, fmt.Sprintf("--replicas=%d", sc.replicas)); err != nil {
			return err
		}
		if err := d.waitPods(ctx, sc.ns, sc.pods); err != nil {
			return err
		}
	}

	for _, args := range [][]string{
		{"krm", "get", "pods", "-A"},
		{"krm", "get", "deployments,services,ingresses,pvc", "-n", "shop"},
		{"krm", "status"},
		{"krm", "diff", "verified"},
		{"krm", "delay"},
	} {
		step("kubectl " + strings.Join(args, " "))
		if err := d.kubectl(ctx, nil, args...); err != nil {
			// diff exits 1 when it finds drift: that is an answer.
			var exit *exec.ExitError
			if !errors.As(err, &exit) || args[1] != "diff" {
				return err
			}
		}
	}

	if err := d.throughProxy(ctx); err != nil {
		return err
	}

	fmt.Printf(`
The cluster and the agent keep running. To use them:

  source %s
  export PATH=%s:"$PATH"
  kubectl krm get pods -A
  kubectl krm get deployments -n shop -w     # then: kubectl scale -n shop deployment/cart --replicas=5
  kubectl krm delay --chart
  kubectl krm status -o wide
  kubectl krm proxy &  kubectl --server http://127.0.0.1:8001 get pods -A

The agent's ServiceAccount token lasts 24h; run make demo again to renew it.
Tear everything down with: make cluster-down
`, s.EnvFile, bin)
	return nil
}

// throughProxy shows plain kubectl reading the cache through `kubectl krm
// proxy`, and a write refused.
func (d *demo) throughProxy(ctx context.Context) error {
	step("kubectl krm proxy: plain kubectl reads the cache")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	proxy := exec.CommandContext(ctx, d.cluster.Kubectl, "krm", "proxy", "--port", "0")
	proxy.Env = d.env
	proxy.Stderr = os.Stderr
	out, err := proxy.StdoutPipe()
	if err != nil {
		return err
	}
	if err := proxy.Start(); err != nil {
		return fmt.Errorf("starting kubectl krm proxy: %w", err)
	}
	defer func() { cancel(); _ = proxy.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("kubectl krm proxy printed no address: %w", err)
	}
	fmt.Print(line)
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "Starting to serve on ")
	if !ok {
		return fmt.Errorf("kubectl krm proxy printed %q, not where it serves", line)
	}
	server := "--server=http://" + addr
	for _, args := range [][]string{
		{server, "get", "deployments", "-n", "shop"},
		{server, "get", "resourcestatuses"},
		{server, "delete", "deployment", "-n", "shop", "frontend"},
	} {
		fmt.Printf("$ kubectl %s\n", strings.Join(args, " "))
		err := d.kubectl(ctx, nil, args...)
		if args[1] == "delete" {
			// krm is read-only: the delete must fail, and nothing changes.
			if err == nil {
				return errors.New("a delete through krm succeeded; it must be refused")
			}
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func step(title string) {
	fmt.Printf("\n==> %s\n", title)
}

// kubectl runs the cluster's kubectl as admin with the demo's PATH, so
// `kubectl krm` finds the plugin built by make build, and shows its output.
func (d *demo) kubectl(ctx context.Context, stdin io.Reader, args ...string) error {
	cmd := exec.CommandContext(ctx, d.cluster.Kubectl, args...)
	cmd.Env = d.env
	cmd.Stdin = stdin
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// waitPods waits until ns has exactly n pods, all Running and none
// terminating.
func (d *demo) waitPods(ctx context.Context, ns string, n int) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := d.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		running := 0
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		last = fmt.Sprintf("%d pods, %d running", len(list.Items), running)
		return len(list.Items) == n && running == n, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %d running pods in %s (%s): %w", n, ns, last, err)
	}
	return nil
}
