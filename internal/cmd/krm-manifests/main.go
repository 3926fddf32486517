// Command krm-manifests writes the rendered installs under
// manifests/install/ from their kustomizations, or with -check fails when
// they are out of date (`make verify`).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/krm-project/krm/internal/manifests"
)

func main() {
	dir := flag.String("dir", "manifests", "The manifests directory.")
	check := flag.Bool("check", false, "Write nothing; exit 1 if a rendered file is out of date.")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "krm-manifests: unexpected arguments %q; see -h\n", flag.Args())
		os.Exit(2)
	}
	run := manifests.Write
	if *check {
		run = manifests.Check
	}
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "krm-manifests:", err)
		os.Exit(1)
	}
}
