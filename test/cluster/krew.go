package cluster

import (
	"context"
	"io"
	"path/filepath"
)

// KrewVersion is the krew that the krew release checks install krm's
// plugin with. test/tools/krew pins the same version.
const KrewVersion = "v0.4.3"

// krewComponent is krew and its manifest validator, built from
// test/tools/krew. It is not one of components: the cluster does not need it.
var krewComponent = component{
	name:    "krew",
	version: KrewVersion,
	files:   []string{"krew", "validate-krew-manifest"},
	build:   buildKrew,
}

// EnsureKrew builds krew and validate-krew-manifest into the cache unless
// they are there, and returns their paths. Like EnsureBinaries it builds
// into a temporary directory and renames it into place.
//
// krew runs as a kubectl plugin only when it is on PATH as kubectl-krew;
// callers link it under that name.
func EnsureKrew(ctx context.Context, cache string, log io.Writer) (krewPath, validate string, err error) {
	if err := (&builder{log: log}).ensure(ctx, krewComponent, cache); err != nil {
		return "", "", err
	}
	dir := krewComponent.dir(cache)
	return filepath.Join(dir, "krew"), filepath.Join(dir, "validate-krew-manifest"), nil
}

// buildKrew builds both commands unstamped. A build without a version tag
// counts as a development build, which skips krew's upgrade check: that
// check asks GitHub for the latest release, and tests run offline.
func buildKrew(ctx context.Context, b *builder, out string) error {
	return b.goCmd(ctx, filepath.Join(b.toolsDir, "krew"), nil, "build", "-ldflags", "-s -w", "-o", out+string(filepath.Separator),
		"sigs.k8s.io/krew/cmd/krew", "sigs.k8s.io/krew/cmd/validate-krew-manifest")
}
