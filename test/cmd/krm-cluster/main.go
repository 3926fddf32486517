// Command krm-cluster starts and stops the local cluster that krm's
// integration and e2e tests run against. `make cluster-up` and
// `make cluster-down` call it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/krm-project/krm/test/cluster"
)

const usage = `krm-cluster runs a local Kubernetes cluster for krm's tests.

Usage:
  krm-cluster up       build what is missing, start the cluster (idempotent)
  krm-cluster down     stop the processes the harness started and remove the cluster state
  krm-cluster status   exit 0 if the cluster is running, 1 if not
  krm-cluster build    only build the cached binaries

Environment:
  KRM_CACHE        binary cache (default $HOME/.cache/krm)
  KRM_CLUSTER_DIR  cluster state (default $KRM_CACHE/cluster)

Flags:
`

func main() {
	fs := flag.NewFlagSet("krm-cluster", flag.ContinueOnError)
	nodes := fs.Int("nodes", 3, "number of kwok nodes to create")
	quiet := fs.Bool("q", false, "print nothing but errors")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if len(os.Args) < 2 {
		fs.Usage()
		os.Exit(2)
	}
	verb := os.Args[1]
	if err := fs.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	cfg := cluster.DefaultConfig()
	cfg.Nodes = *nodes
	cfg.Log = os.Stderr
	if *quiet {
		cfg.Log = io.Discard
	}
	if err := run(ctx, verb, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "krm-cluster %s: %v\n", verb, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, verb string, cfg cluster.Config) error {
	switch verb {
	case "up":
		s, err := cluster.Up(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Printf("source %s\n", s.EnvFile)
		return nil
	case "down":
		return cluster.Down(cfg)
	case "status":
		s, err := cluster.Load(cfg.Dir)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("no cluster in %s", cfg.Dir)
			}
			return err
		}
		if err := s.Running(ctx); err != nil {
			return err
		}
		fmt.Fprintf(cfg.Log, "cluster running: %s (%s)\n", s.Server, filepath.Join(s.Dir, "env"))
		return nil
	case "build":
		_, err := cluster.EnsureBinaries(ctx, cfg.Cache, cfg.Log)
		return err
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	}
	return fmt.Errorf("unknown command %q: use up, down, status or build", verb)
}
