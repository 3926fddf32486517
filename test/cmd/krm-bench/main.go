// Command krm-bench measures krm-agent against kube-apiserver on the local
// cluster: LIST latency of many pods from the agent, from kube-apiserver and
// from a trivial in-memory server (the floor), the agent's memory per pod
// beside a client-go informer's, and the aggregator's per-event cost at
// several object counts. `make bench` runs it. It prints a markdown report
// and writes nothing unless -o is given.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/krm-project/krm/test/benchenv"
)

type options struct {
	pods     int
	workers  int
	rounds   int
	warmup   int
	agentBin string
	out      string
	skipGo   bool
	// skipRedis leaves out Redis's bytes per object; redisOnly measures
	// nothing else.
	skipRedis, redisOnly bool
	// redisCompare is another krm-agent binary whose Redis bytes are
	// measured on the same pods, e.g. a build of the previous commit.
	redisCompare string
	agentEnv     []string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == informerChildArg {
		if err := runInformerChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "krm-bench informer:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	fs := flag.NewFlagSet("krm-bench", flag.ContinueOnError)
	fs.IntVar(&o.pods, "pods", 10000, "pods to create in the benchmark's namespace")
	fs.IntVar(&o.workers, "workers", 16, "goroutines creating pods")
	fs.IntVar(&o.rounds, "rounds", 30, "measured rounds of the interleaved LISTs")
	fs.IntVar(&o.warmup, "warmup", 3, "unmeasured rounds before them")
	fs.StringVar(&o.agentBin, "agent", "", "krm-agent binary to run (default: go build ./cmd/krm-agent into a temporary directory)")
	fs.StringVar(&o.out, "o", "", "also write the report to this file")
	fs.BoolVar(&o.skipGo, "skip-go-bench", false, "skip the per-event go test benchmark")
	fs.BoolVar(&o.skipRedis, "skip-redis", false, "skip Redis's bytes per object (a redis-server of the run's own and a second agent with --store=redis)")
	fs.StringVar(&o.redisCompare, "redis-compare", "", "another krm-agent binary (e.g. built from the previous commit) whose Redis bytes per object are measured on the same pods, for a before/after")
	fs.BoolVar(&o.redisOnly, "redis-only", false, "measure Redis's bytes per object alone: create the pods, run the agent with --store=redis, report")
	fs.Func("agent-env", "KEY=VALUE to add to the agent's environment only (repeatable), e.g. GOGC=50", func(s string) error {
		if !strings.Contains(s, "=") {
			return fmt.Errorf("%q is not KEY=VALUE", s)
		}
		o.agentEnv = append(o.agentEnv, s)
		return nil
	})
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if o.pods < 1 || o.workers < 1 || o.rounds < 1 || o.warmup < 0 {
		fmt.Fprintln(os.Stderr, "krm-bench: -pods, -workers and -rounds must be positive, -warmup not negative")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// The first signal cancels and cleans up; a second one kills.
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "krm-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) (err error) {
	r := &report{redisCompareBin: o.redisCompare, command: benchenv.CommandLine("bench"), started: time.Now().UTC(), machine: benchenv.Machine(), pods: o.pods, rounds: o.rounds, warmup: o.warmup}

	dir, err := os.MkdirTemp("", "krm-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// First, before this run loads the cluster: the per-event cost.
	if !o.skipGo && !o.redisOnly {
		progress(fmt.Sprintf("running the aggregator's per-event benchmark (BenchmarkApply in pkg/agent/aggregate, %d runs)", applyRuns))
		if r.apply, err = runApplyBenchmark(ctx, dir); err != nil {
			return err
		}
		progress(fmt.Sprintf("measuring history's bytes per revision (BenchmarkRevisionBytes in pkg/history, %d revisions)", historyRevisions))
		if r.history, err = runHistoryBenchmark(ctx, dir); err != nil {
			return err
		}
	}

	s, err := benchenv.AttachCluster(ctx, os.Stderr)
	if err != nil {
		return err
	}
	r.kubeVersion = benchenv.ServerVersion(s)

	bin := o.agentBin
	if bin == "" {
		progress("building krm-agent")
		if bin, err = benchenv.BuildAgent(ctx, dir); err != nil {
			return err
		}
	}

	b, err := newBench(s, o)
	if err != nil {
		return err
	}
	// Cleanup runs even when ctx is cancelled (Ctrl-C), with its own time.
	defer func() {
		// kube-apiserver deletes 100,000 pods in minutes, not seconds.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(3*time.Minute, time.Duration(o.pods/10000)*time.Minute))
		defer cancel()
		if cerr := b.cleanup(cctx); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	if err := b.Setup(ctx); err != nil {
		return err
	}
	r.namespace = b.NS

	if o.redisOnly {
		progress(fmt.Sprintf("creating %d pods bound round-robin to the run's nodes %v", o.pods, b.Nodes))
		start := time.Now()
		if err := b.CreatePods(ctx); err != nil {
			return err
		}
		r.createTook = time.Since(start)
		// The Redis agent's first LIST must find every pod Running: an
		// agent without a store waits for that first.
		progress("waiting until every pod is Running, through an agent without a store")
		if err := b.startAgent(ctx, bin); err != nil {
			return err
		}
		if err := b.waitAgentHasAll(ctx, max(15*time.Minute, time.Duration(o.pods/10000)*5*time.Minute)); err != nil {
			return err
		}
		if err := b.stopAgent(); err != nil {
			return err
		}
		progress("measuring Redis's bytes per object with krm-agent --store=redis")
		if r.redis, err = b.measureRedis(ctx, bin, dir); err != nil {
			return err
		}
		if o.redisCompare != "" {
			progress("measuring Redis's bytes per object with " + o.redisCompare)
			if r.redisCompare, err = b.measureRedis(ctx, o.redisCompare, dir); err != nil {
				return err
			}
		}
		r.settleTook = time.Since(start)
		r.finished = time.Now().UTC()
		return r.print(o)
	}

	progress("starting krm-agent --resources pods --namespace " + b.NS)
	if err := b.startAgent(ctx, bin); err != nil {
		return err
	}
	if r.rssEmpty, err = b.agent.RSS(); err != nil {
		return err
	}

	progress(fmt.Sprintf("creating %d pods bound round-robin to the run's nodes %v", o.pods, b.Nodes))
	start := time.Now()
	if err := b.CreatePods(ctx); err != nil {
		return err
	}
	r.createTook = time.Since(start)
	if err := b.WaitAgentHasAll(ctx, b.agent, b.SettleTimeout()); err != nil {
		return err
	}
	r.settleTook = time.Since(start)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(settleBeforeRSS):
	}
	if r.rssLoaded, err = b.agent.RSS(); err != nil {
		return err
	}
	if r.anonLoaded, err = benchenv.ProcStatus(b.agent.Pid(), "RssAnon"); err != nil {
		return err
	}
	progress("measuring the agent's peak RSS during its next verifying LIST")
	if r.rssSteady, r.rssPeak, err = b.verificationPeak(ctx); err != nil {
		return err
	}

	progress(fmt.Sprintf("measuring LIST latency: %d warm-up and %d measured rounds", o.warmup, o.rounds))
	if r.latency, err = b.measureLists(ctx); err != nil {
		return err
	}
	if r.rssAfter, err = b.agent.RSS(); err != nil {
		return err
	}
	progress(fmt.Sprintf("measuring single-pod GETs from the agent, idle and under %d changes a second", getRate))
	if r.gets, err = b.measureGets(ctx); err != nil {
		return err
	}

	// An unclean exit is reported after the figures, which stay valid.
	stopErr := b.stopAgent()
	if !o.redisOnly {
		if r.verifiers, err = b.compareVerifiers(ctx, bin); err != nil {
			return errors.Join(err, stopErr)
		}
	}
	if !o.skipRedis {
		progress("measuring Redis's bytes per object with a second krm-agent, --store=redis")
		if r.redis, err = b.measureRedis(ctx, bin, dir); err != nil {
			return errors.Join(err, stopErr)
		}
		if o.redisCompare != "" {
			progress("measuring Redis's bytes per object with " + o.redisCompare)
			if r.redisCompare, err = b.measureRedis(ctx, o.redisCompare, dir); err != nil {
				return errors.Join(err, stopErr)
			}
		}
	}
	progress("measuring the RSS of a client-go informer process holding the same pods")
	if r.informerRSS, r.informerAnon, err = b.informerRSS(ctx); err != nil {
		return err
	}
	progress("measuring the live heap of pkg/agent and of a client-go informer, in this process, on the same pods")
	if r.agentHeap, err = b.agentHeap(ctx); err != nil {
		return err
	}
	if r.informerHeap, err = b.informerHeap(ctx); err != nil {
		return err
	}
	r.finished = time.Now().UTC()
	return errors.Join(r.print(o), stopErr)
}

// print writes the report to stdout, and to -o's file if given.
func (r *report) print(o options) error {
	text := r.markdown()
	fmt.Print(text)
	if o.out != "" {
		return os.WriteFile(o.out, []byte(text), 0o644)
	}
	return nil
}

func progress(msg string) {
	fmt.Fprintf(os.Stderr, "%s krm-bench: %s\n", time.Now().Format("15:04:05"), msg)
}
