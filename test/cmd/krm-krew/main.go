// Command krm-krew builds krew and its manifest validator into the binary
// cache, if they are not there yet, and prints their paths. `make
// verify-krew` calls it to find validate-krew-manifest.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/krm-project/krm/test/cluster"
)

const usage = `krm-krew builds krew ` + cluster.KrewVersion + ` into the binary cache (once) and prints paths.

Usage:
  krm-krew path krew                     print the path of krew (link it as kubectl-krew)
  krm-krew path validate-krew-manifest   print the path of validate-krew-manifest
  krm-krew build                         only build them

Environment:
  KRM_CACHE  binary cache (default $HOME/.cache/krm)
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "krm-krew: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	switch {
	case args[0] == "help" || args[0] == "-h" || args[0] == "--help":
		fmt.Print(usage)
		return nil
	case args[0] == "build" && len(args) == 1:
	case args[0] == "path" && len(args) == 2 && (args[1] == "krew" || args[1] == "validate-krew-manifest"):
	default:
		return fmt.Errorf("unknown command %q: use path krew, path validate-krew-manifest or build", strings.Join(args, " "))
	}
	// Progress goes to stderr, so that stdout is just the path.
	krew, validate, err := cluster.EnsureKrew(ctx, cluster.DefaultConfig().Cache, os.Stderr)
	if err != nil {
		return err
	}
	switch {
	case args[0] == "build":
	case args[1] == "krew":
		fmt.Println(krew)
	default:
		fmt.Println(validate)
	}
	return nil
}
