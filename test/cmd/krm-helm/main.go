// Command krm-helm builds Helm into the binary cache, if it is not there
// yet, and prints its path. `make verify` and `make dist` call it to find
// helm.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/krm-project/krm/test/cluster"
)

const usage = `krm-helm builds helm ` + cluster.HelmVersion + ` into the binary cache (once) and prints its path.

Usage:
  krm-helm path    print the path of helm
  krm-helm build   only build it

Environment:
  KRM_CACHE  binary cache (default $HOME/.cache/krm)
`

func main() {
	if len(os.Args) != 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	case "path", "build":
	default:
		fmt.Fprintf(os.Stderr, "krm-helm: unknown command %q: use path or build\n", os.Args[1])
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	// Progress goes to stderr, so that stdout is just the path.
	helm, err := cluster.EnsureHelm(ctx, cluster.DefaultConfig().Cache, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "krm-helm: %v\n", err)
		os.Exit(1)
	}
	if os.Args[1] == "path" {
		fmt.Println(helm)
	}
}
