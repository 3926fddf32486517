package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/krm-project/krm/test/benchenv"
)

// informerChildArg makes krm-bench run as the informer process whose RSS
// is compared with the agent's: the same kind of process (a Go binary
// holding the pods), measured the same way (VmRSS).
const informerChildArg = "informer-child"

// runInformerChild runs a client-go SharedIndexInformer on one namespace's
// pods, managedFields stripped as the agent strips them, prints "synced N"
// once it holds them, and runs until stdin closes or a signal comes.
func runInformerChild(args []string) error {
	fs := flag.NewFlagSet(informerChildArg, flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig")
	ns := fs.String("namespace", "", "namespace")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 50, 100 // as krm-agent
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lw := cache.NewListWatchFromClient(cs.CoreV1().RESTClient(), "pods", *ns, fields.Everything())
	inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if err := inf.SetTransform(func(obj any) (any, error) {
		if m, err := meta.Accessor(obj); err == nil {
			m.SetManagedFields(nil)
		}
		return obj, nil
	}); err != nil {
		return err
	}
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return errors.New("the informer did not sync")
	}
	fmt.Printf("synced %d\n", len(inf.GetStore().ListKeys()))
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		stop()
	}()
	<-ctx.Done()
	return nil
}

// informerRSS starts the informer process on the run's namespace and
// returns its VmRSS and RssAnon once it holds every pod and has settled for
// as long as the agent had before its RSS was read.
func (b *bench) informerRSS(ctx context.Context) (rss, anon int64, err error) {
	self, err := os.Executable()
	if err != nil {
		return 0, 0, err
	}
	cmd := exec.CommandContext(ctx, self, informerChildArg, "-kubeconfig", b.S.Kubeconfig, "-namespace", b.NS)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, 0, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return 0, 0, fmt.Errorf("the informer process: %w", err)
	}
	var n int
	if _, err := fmt.Sscanf(line, "synced %d", &n); err != nil || n != b.o.pods {
		return 0, 0, fmt.Errorf("the informer process said %q, want synced %d", strings.TrimSpace(line), b.o.pods)
	}
	select {
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	case <-time.After(settleBeforeRSS):
	}
	if rss, err = benchenv.ProcStatus(cmd.Process.Pid, "VmRSS"); err != nil {
		return 0, 0, err
	}
	anon, err = benchenv.ProcStatus(cmd.Process.Pid, "RssAnon")
	return rss, anon, err
}

// settleBeforeRSS is how long a process holding the pods runs before its
// RSS is read, for the agent and the informer alike.
const settleBeforeRSS = 10 * time.Second

// verificationPeak resets the agent's peak RSS (VmHWM, through
// /proc/<pid>/clear_refs), waits for its next verifying LIST to land, and
// returns the RSS before it and the peak during it.
func (b *bench) verificationPeak(ctx context.Context) (steady, peak int64, err error) {
	pid := b.agent.Pid()
	count := func() (int64, error) {
		st, err := b.agent.Client.ResourceStatuses(ctx)
		if err != nil {
			return 0, err
		}
		for _, r := range st.Items {
			if r.Name == "pods" {
				return r.Status.Verifications, nil
			}
		}
		return 0, errors.New("the agent reports no status for pods")
	}
	before, err := count()
	if err != nil {
		return 0, 0, err
	}
	if steady, err = benchenv.ProcStatus(pid, "VmRSS"); err != nil {
		return 0, 0, err
	}
	if err := b.agent.ResetPeakRSS(); err != nil {
		return 0, 0, err
	}
	deadline := time.Now().Add(3 * agentVerifyInterval)
	for {
		n, err := count()
		if err != nil {
			return 0, 0, err
		}
		if n > before {
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("no verifying LIST within %s", 3*agentVerifyInterval)
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	peak, err = benchenv.ProcStatus(pid, "VmHWM")
	return steady, peak, err
}

// getLatency is a single-object GET's latency from the agent, idle and
// while pods change.
type getLatency struct {
	idle, churn []time.Duration
	// eventsPerSecond is the rate of changes made during the churn
	// samples.
	eventsPerSecond float64
}

// getRate is the churn the GETs are measured under: 100 events per second.
const getRate = 100

// measureGets GETs single pods from the agent for getWindow idle, then for
// as long while getRate pods a second get a new annotation.
func (b *bench) measureGets(ctx context.Context) (*getLatency, error) {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
	get := func(i int) (time.Duration, error) {
		u := b.agent.URL + "/api/v1/namespaces/" + url.PathEscape(b.NS) + "/pods/" + benchenv.PodName(i%b.o.pods)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Accept", "application/json")
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %s", u, resp.Status)
		}
		return took, err
	}
	sample := func() ([]time.Duration, error) {
		var out []time.Duration
		end := time.Now().Add(getWindow)
		for i := 0; time.Now().Before(end); i++ {
			d, err := get(i * 7919)
			if err != nil {
				return nil, err
			}
			out = append(out, d)
			time.Sleep(2 * time.Millisecond)
		}
		return out, nil
	}
	res := &getLatency{}
	var err error
	if res.idle, err = sample(); err != nil {
		return nil, err
	}
	cctx, stop := context.WithCancel(ctx)
	churned := make(chan int)
	go func() {
		n := 0
		t := time.NewTicker(time.Second / getRate)
		defer t.Stop()
		for {
			select {
			case <-cctx.Done():
				churned <- n
				return
			case <-t.C:
			}
			patch := fmt.Sprintf(`{"metadata":{"annotations":{"krm.example/churn":"%d"}}}`, n)
			if _, err := b.CS.CoreV1().Pods(b.NS).Patch(cctx, benchenv.PodName(n%b.o.pods), types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err == nil {
				n++
			}
		}
	}()
	start := time.Now()
	res.churn, err = sample()
	stop()
	n := <-churned
	res.eventsPerSecond = float64(n) / time.Since(start).Seconds()
	return res, err
}

// getWindow is how long each set of GET samples runs.
const getWindow = 15 * time.Second
