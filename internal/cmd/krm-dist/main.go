// Command krm-dist builds kubectl-krm's release into dist/: an archive per
// platform, checksums.txt and krm.yaml, the krew manifest rendered from
// .krew.yaml. `make dist` runs it from the repository's root; `make
// verify-krew` runs it with --manifest-only.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/krm-project/krm/internal/dist"
)

const usage = `krm-dist builds kubectl-krm's release archives and krew manifest.

Usage:
  krm-dist --version v0.1.0 [--out dist] [--platforms linux/amd64,darwin/arm64]

Run it from the root of the krm repository. Archive entries are stamped with
$SOURCE_DATE_EPOCH when it is set, else with HEAD's commit time.

Flags:
`

func main() {
	fs := flag.NewFlagSet("krm-dist", flag.ContinueOnError)
	version := fs.String("version", "", "release version: a semantic version with a leading v, as krew requires (e.g. v0.1.0)")
	out := fs.String("out", "dist", "output directory")
	platforms := fs.String("platforms", "", "comma-separated GOOS/GOARCH pairs to build, or host (default: all six)")
	jobs := fs.Int("jobs", 2, "builds to run at a time")
	manifestOnly := fs.Bool("manifest-only", false, "build nothing; write only krm.yaml, with placeholder sums, to check .krew.yaml")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "krm-dist: unexpected arguments %q\n", fs.Args())
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	cfg := dist.Config{Version: *version, Out: *out, Jobs: *jobs, Log: os.Stderr}
	if err := run(ctx, cfg, *platforms, *manifestOnly); err != nil {
		fmt.Fprintf(os.Stderr, "krm-dist: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg dist.Config, platforms string, manifestOnly bool) error {
	if platforms != "" {
		ps, err := dist.ParsePlatforms(platforms)
		if err != nil {
			return fmt.Errorf("--platforms: %w", err)
		}
		cfg.Platforms = ps
	}
	if epoch := os.Getenv("SOURCE_DATE_EPOCH"); epoch != "" {
		sec, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q: want seconds since 1970", epoch)
		}
		cfg.ModTime = time.Unix(sec, 0)
	}
	if manifestOnly {
		path, err := dist.ManifestOnly(cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(cfg.Log, "wrote %s (placeholder sums)\n", path)
		return nil
	}
	_, err := dist.Build(ctx, cfg)
	return err
}
