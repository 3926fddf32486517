// Command krm-load runs krm's load suite (package test/load) on the local
// cluster: 10,000 pods changed 100 times a second, read by 200 concurrent
// readers and watched by 100 watchers, 10 of which never read, through a
// real krm-agent process. `make load` runs it. It prints a markdown report
// and exits 1 when a bound did not hold.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/krm-project/krm/test/benchenv"
	"github.com/krm-project/krm/test/load"
)

func main() {
	cfg := load.Config{Progress: progress}
	var out string
	fs := flag.NewFlagSet("krm-load", flag.ContinueOnError)
	fs.IntVar(&cfg.Pods, "pods", 10000, "pods to create in the run's namespace")
	fs.IntVar(&cfg.Workers, "workers", 16, "goroutines creating pods")
	fs.IntVar(&cfg.Readers, "readers", 200, "concurrent readers")
	fs.DurationVar(&cfg.Think, "think", time.Second, "each reader pauses up to this long, at random, between reads")
	fs.IntVar(&cfg.Watchers, "watchers", 100, "concurrent watchers, the stalled ones included")
	fs.IntVar(&cfg.Stalled, "stalled", 10, "watchers that never read their response")
	fs.IntVar(&cfg.Churn, "churn", 100, "pods changed a second while the clients run")
	fs.DurationVar(&cfg.Duration, "duration", 2*time.Minute, "how long the clients run")
	fs.DurationVar(&cfg.Window, "window", time.Minute, "how long the agent's goroutines and heap are sampled, before the clients and after")
	fs.DurationVar(&cfg.Settle, "settle", 6*time.Minute, "how long after the clients leave the agent settles before it is sampled again; more than 5 minutes lets the snapshots of paginated LISTs expire")
	fs.DurationVar(&cfg.DropWait, "drop-wait", 3*time.Minute, "how long after the clients leave the agent may take to drop the watchers that never read")
	fs.StringVar(&cfg.AgentBin, "agent", "", "krm-agent binary to run (default: go build ./cmd/krm-agent into a temporary directory)")
	fs.StringVar(&out, "o", "", "also write the report to this file")
	fs.Func("agent-env", "KEY=VALUE to add to the agent's environment only (repeatable), e.g. GOGC=50", func(s string) error {
		if !strings.Contains(s, "=") {
			return fmt.Errorf("%q is not KEY=VALUE", s)
		}
		cfg.AgentEnv = append(cfg.AgentEnv, s)
		return nil
	})
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if cfg.Pods < 1 || cfg.Workers < 1 || cfg.Readers < 1 || cfg.Churn < 1 || cfg.Watchers < 0 || cfg.Stalled < 0 || cfg.Stalled > cfg.Watchers || cfg.Duration <= 0 || cfg.Window <= 0 {
		fmt.Fprintln(os.Stderr, "krm-load: -pods, -workers, -readers, -churn, -duration and -window must be positive, and -stalled at most -watchers")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// The first signal cancels and cleans up; a second one kills.
		<-ctx.Done()
		stop()
	}()
	ok, err := run(ctx, cfg, out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "krm-load:", err)
		os.Exit(1)
	}
	if !ok {
		fmt.Fprintln(os.Stderr, "krm-load: a bound did not hold; see the report's Bounds")
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg load.Config, out string) (bool, error) {
	s, err := benchenv.AttachCluster(ctx, os.Stderr)
	if err != nil {
		return false, err
	}
	if cfg.AgentBin == "" {
		dir, err := os.MkdirTemp("", "krm-load-")
		if err != nil {
			return false, err
		}
		defer os.RemoveAll(dir)
		progress("building krm-agent")
		if cfg.AgentBin, err = benchenv.BuildAgent(ctx, dir); err != nil {
			return false, err
		}
	}
	res, err := load.Run(ctx, s, cfg)
	if err != nil {
		return false, err
	}
	text := res.Markdown(benchenv.CommandLine("load"), benchenv.Machine())
	fmt.Print(text)
	if out != "" {
		if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
			return false, err
		}
	}
	return res.Held(), nil
}

func progress(msg string) {
	fmt.Fprintf(os.Stderr, "%s krm-load: %s\n", time.Now().Format("15:04:05"), msg)
}
