// Command krm-chaos runs krm's fault suite (test/chaos) in full on a local
// cluster of its own, since its faults kill kube-apiserver: every fault of
// issue 12 while a workload churns, against the real krm-agent binary. It
// prints a markdown report; make chaos runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/krm-project/krm/test/benchenv"
	"github.com/krm-project/krm/test/chaos"
	"github.com/krm-project/krm/test/cluster"
)

func main() {
	o := chaos.Full()
	var (
		clusterDir, run, out string
		keep, short          bool
	)
	fs := flag.NewFlagSet("krm-chaos", flag.ContinueOnError)
	fs.StringVar(&clusterDir, "cluster-dir", "/tmp/krm-chaos-cluster", "directory of the suite's own cluster, started here and stopped at the end (never the shared one: faults kill its kube-apiserver)")
	fs.StringVar(&o.AgentBin, "agent", "", "krm-agent binary (default: go build ./cmd/krm-agent into a temporary directory)")
	fs.StringVar(&run, "run", "", "run only the scenarios whose names match this regular expression")
	fs.BoolVar(&short, "short", false, "use make test's short durations")
	fs.BoolVar(&keep, "keep-cluster", false, "leave the cluster running afterwards, and keep the agents' logs")
	fs.StringVar(&out, "o", "", "also write the report to this file")
	fs.DurationVar(&o.Fault, "fault", o.Fault, "how long each timed fault lasts")
	fs.DurationVar(&o.RBACRevoked, "rbac-revoked", o.RBACRevoked, "how long list stays revoked")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if short {
		s := chaos.Short()
		s.AgentBin = o.AgentBin
		o = s
	}
	var filter *regexp.Regexp
	if run != "" {
		var err error
		if filter, err = regexp.Compile(run); err != nil {
			fmt.Fprintf(os.Stderr, "krm-chaos: -run %q: %v\n", run, err)
			os.Exit(2)
		}
	}
	if o.Fault < time.Second || o.RBACRevoked < time.Second {
		fmt.Fprintln(os.Stderr, "krm-chaos: -fault and -rbac-revoked must be at least 1s")
		os.Exit(2)
	}
	o.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runSuite(ctx, o, clusterDir, filter, keep, out); err != nil {
		fmt.Fprintln(os.Stderr, "krm-chaos:", err)
		os.Exit(1)
	}
}

func runSuite(ctx context.Context, o chaos.Options, clusterDir string, filter *regexp.Regexp, keep bool, out string) (err error) {
	dir, err := os.MkdirTemp("", "krm-chaos-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintf(os.Stderr, "krm-chaos: the agents' logs are kept in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if o.AgentBin == "" {
		if o.AgentBin, err = chaos.BuildAgent(ctx, dir); err != nil {
			return err
		}
	}
	cfg := cluster.DefaultConfig()
	cfg.Dir, cfg.Log = clusterDir, os.Stderr
	if shared := cluster.DefaultConfig().Dir; clusterDir == shared {
		return fmt.Errorf("-cluster-dir %s is the shared cluster's directory; the suite kills its kube-apiserver: give it one of its own", clusterDir)
	}
	started := time.Now()
	s, err := cluster.Up(ctx, cfg)
	if err != nil {
		return err
	}
	if !keep {
		defer func() {
			if derr := cluster.Down(cfg); derr != nil {
				err = errors.Join(err, derr)
			}
		}()
	}
	env, err := chaos.NewEnv(s, o, dir)
	if err != nil {
		return err
	}
	var results []chaos.Result
	failed := 0
	for _, sc := range chaos.Scenarios() {
		if filter != nil && !filter.MatchString(sc.Name) {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		res := env.RunScenario(ctx, sc)
		results = append(results, res)
		if res.Err != nil || !res.Converged || res.Lost != 0 || res.Stale != 0 {
			failed++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### Fault suite\n\n`%s`, %s, %d CPUs, %s; kube-apiserver %s; %d scenarios in %s.\n\n",
		benchenv.CommandLine("chaos"), time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.GOOS+"/"+runtime.GOARCH,
		benchenv.ServerVersion(s), len(results), time.Since(started).Round(time.Second))
	b.WriteString(chaos.Markdown(results, o))
	fmt.Print(b.String())
	if out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d scenarios did not converge with nothing lost", failed, len(results))
	}
	return nil
}
