// Package load is krm's load suite: many pods on the local cluster, churned
// at a steady rate, watched by a real krm-agent process that many readers
// (LISTs of every kind kubectl and informers make, and GETs) and watchers
// use at once, some of the watchers never reading. Run measures the read
// latencies, the agent's memory and goroutines, and checks the bounds: the
// agent drops the watchers that do not read, serves no 5xx, answers every
// LIST completely, and returns to its baseline once the clients leave.
// test/cmd/krm-load (`make load`) runs the full form and prints a markdown
// report; TestLoad runs a short form under `make test`.
package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/krm-project/krm/test/benchenv"
	"github.com/krm-project/krm/test/cluster"
)

// Config is one run's size.
type Config struct {
	// Pods are created in the run's namespace by Workers goroutines.
	Pods, Workers int
	// Readers read concurrently for Duration, each pausing up to Think
	// (uniformly at random) between reads.
	Readers int
	Think   time.Duration
	// Watchers watch the namespace's pods for Duration; Stalled of them
	// never read their response.
	Watchers, Stalled int
	// Churn is the pods changed a second while the clients run.
	Churn    int
	Duration time.Duration
	// Window is how long the agent's goroutines and heap are sampled for a
	// baseline, before the clients come and again after they leave; Settle
	// is how long after they leave the second window starts.
	Window, Settle time.Duration
	// DropWait bounds the wait, after Duration, for the agent to drop every
	// stalled watcher.
	DropWait time.Duration
	// VerifyInterval is the agent's --verify-interval; default 30s.
	VerifyInterval time.Duration
	// AgentBin is the krm-agent binary; AgentEnv is added to its
	// environment.
	AgentBin string
	AgentEnv []string
	// Progress receives a line about each step; nil discards them.
	Progress func(string)
}

// Run creates the pods, starts the agent, measures, and cleans up.
func Run(ctx context.Context, s *cluster.State, cfg Config) (res *Result, err error) {
	if cfg.Progress == nil {
		cfg.Progress = func(string) {}
	}
	if cfg.VerifyInterval <= 0 {
		cfg.VerifyInterval = 30 * time.Second
	}
	if cfg.Stalled > cfg.Watchers || cfg.Pods < 1 || cfg.Readers < 1 || cfg.Churn < 1 {
		return nil, fmt.Errorf("a load run needs pods, readers and churn, and no more stalled watchers than watchers: %+v", cfg)
	}
	env, err := benchenv.New(s, "krm-load", cfg.Pods, cfg.Workers, cfg.Progress)
	if err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, env: env, res: &Result{Config: cfg, Started: time.Now().UTC()}}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		var stopErr error
		if r.agent != nil {
			stopErr = r.agent.Stop()
		}
		err = errors.Join(err, env.Cleanup(cctx), stopErr)
	}()
	if err := env.Setup(ctx); err != nil {
		return nil, err
	}
	r.res.Namespace = env.NS
	cfg.Progress("starting krm-agent --resources pods --namespace " + env.NS)
	if r.agent, err = env.StartAgent(ctx, cfg.AgentBin, cfg.AgentEnv, "--resources", "pods", "--namespace", env.NS,
		"--verify-interval", cfg.VerifyInterval.String()); err != nil {
		return nil, err
	}
	r.metricsURL = r.agent.URL + "/metrics"
	cfg.Progress(fmt.Sprintf("creating %d pods", cfg.Pods))
	if err := env.CreatePods(ctx); err != nil {
		return nil, err
	}
	// kwok marks the pods Running at its own pace, slower on a busy
	// machine; the baseline waits for that, so it has no status updates.
	if err := env.WaitAgentHasAll(ctx, r.agent, max(env.SettleTimeout(), 20*time.Minute)); err != nil {
		return nil, err
	}
	if err := r.measure(ctx); err != nil {
		return nil, err
	}
	r.res.Finished = time.Now().UTC()
	return r.res, nil
}

type run struct {
	cfg        Config
	env        *benchenv.Env
	agent      *benchenv.Agent
	metricsURL string
	res        *Result
}

func (r *run) measure(ctx context.Context) error {
	// Each kind of read once first, so the caches a read fills (rendered
	// Table rows, a paginated LIST's snapshot) are in the baseline: they
	// are the agent's steady state, not what the clients leave behind.
	hc := &http.Client{}
	defer hc.CloseIdleConnections()
	for _, k := range readKinds {
		if o := r.read(ctx, hc, k, 0); o.err != nil {
			return fmt.Errorf("warm-up %s: %w", k.name, o.err)
		}
	}
	hc.CloseIdleConnections()

	r.cfg.Progress(fmt.Sprintf("sampling the agent's baseline for %s", r.cfg.Window))
	var err error
	if r.res.Before, err = r.sampleWindow(ctx, r.cfg.Window); err != nil {
		return err
	}
	if r.res.RSSBefore, err = r.agent.RSS(); err != nil {
		return err
	}
	dropped0, err := r.scrape(ctx)
	if err != nil {
		return err
	}
	if err := r.agent.ResetPeakRSS(); err != nil {
		return err
	}

	r.cfg.Progress(fmt.Sprintf("load: %d readers, %d watchers (%d never read), %d changes a second, for %s",
		r.cfg.Readers, r.cfg.Watchers, r.cfg.Stalled, r.cfg.Churn, r.cfg.Duration))
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	// The churn goes on until the stalled watchers are dropped: their
	// changes are what fills the kernel's buffers until the agent's
	// writes to them block.
	cctx, stopChurn := context.WithCancel(ctx)
	defer stopChurn()
	rv, err := r.namespaceRV(ctx)
	if err != nil {
		return err
	}
	stalled, err := r.startStalled(ctx, rv)
	if err != nil {
		return err
	}
	defer stalled.close()
	var wg sync.WaitGroup
	churned := make(chan int, 1)
	go func() { churned <- r.churn(cctx) }()
	watchers := r.startWatchers(lctx, &wg, rv)
	readers := r.startReaders(lctx, &wg)
	loadStart := time.Now()
	sampler := r.sample(lctx, &wg)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(r.cfg.Duration):
	}
	stop()
	wg.Wait()
	took := time.Since(loadStart)
	r.res.Reads = readers.summary(took)
	r.res.Watches = watchers.summary()
	r.res.Peak = sampler.peak
	if r.res.RSSPeak, err = r.agent.PeakRSS(); err != nil {
		return err
	}
	r.res.RSSSteady = sampler.medianRSS()

	// The stalled watchers stay connected, unread, while the pods churn,
	// until the agent has let each of them go.
	r.cfg.Progress("the readers and reading watchers left; waiting for the agent to drop the watchers that never read")
	r.res.Stalled, err = stalled.waitDropped(ctx, r, dropped0, r.cfg.DropWait)
	stopChurn()
	r.res.ChurnRate = float64(<-churned) / time.Since(loadStart).Seconds()
	if err != nil {
		return err
	}
	after, err := r.scrape(ctx)
	if err != nil {
		return err
	}
	r.res.Dropped = after.diff(dropped0, "krm_watches_dropped_total")
	r.res.Served5xx = after.sumWhere("krm_http_requests_total", `code="5`) - dropped0.sumWhere("krm_http_requests_total", `code="5`)
	r.res.WatchesOpenAfter = after.value("krm_watches")

	r.cfg.Progress(fmt.Sprintf("the clients left; settling for %s, then sampling for %s", r.cfg.Settle, r.cfg.Window))
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(r.cfg.Settle):
	}
	if r.res.After, err = r.sampleWindow(ctx, r.cfg.Window); err != nil {
		return err
	}
	r.res.RSSAfter, err = r.agent.RSS()
	return err
}

// churn changes r.cfg.Churn pods a second, an annotation each, until ctx
// ends, and returns how many it changed. Labels stay, so every selector
// keeps its count. Workers share the ticks, one for every 5 a second, so
// PATCHes that take up to 50 ms under load keep the rate.
func (r *run) churn(ctx context.Context) int {
	ticks := make(chan int)
	var done atomic.Int64
	var wg sync.WaitGroup
	for range max(4, r.cfg.Churn/5) {
		wg.Go(func() {
			for n := range ticks {
				patch := fmt.Sprintf(`{"metadata":{"annotations":{"krm.example/churn":"%d"}}}`, n)
				_, err := r.env.CS.CoreV1().Pods(r.env.NS).Patch(ctx, benchenv.PodName(rand.IntN(r.cfg.Pods)), types.MergePatchType, []byte(patch), metav1.PatchOptions{})
				if err == nil {
					done.Add(1)
				}
			}
		})
	}
	t := time.NewTicker(time.Second / time.Duration(r.cfg.Churn))
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			close(ticks)
			wg.Wait()
			return int(done.Load())
		case <-t.C:
		}
		select {
		case ticks <- n:
		default: // every worker busy: this tick is lost and shows in the rate
		}
	}
}
