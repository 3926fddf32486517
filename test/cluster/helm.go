package cluster

import (
	"context"
	"io"
	"path/filepath"
)

// HelmVersion is the Helm that make verify lints and renders the chart with,
// make dist packages it with, and the e2e suite installs it with.
// test/tools/helm pins the same version.
const HelmVersion = "v4.3.2"

// helmComponent is the helm command, built from test/tools/helm. Like krew
// it is not one of components: the cluster does not need it.
var helmComponent = component{
	name:    "helm",
	version: HelmVersion,
	files:   []string{"helm"},
	build:   buildHelm,
}

// EnsureHelm builds helm into the cache unless it is there, and returns its
// path. Like EnsureBinaries it builds into a temporary directory and renames
// it into place, under the cache's build lock.
func EnsureHelm(ctx context.Context, cache string, log io.Writer) (string, error) {
	unlock, err := lockCache(ctx, cache, log)
	if err != nil {
		return "", err
	}
	defer unlock()
	if err := (&builder{log: log}).ensure(ctx, helmComponent, cache); err != nil {
		return "", err
	}
	return filepath.Join(helmComponent.dir(cache), "helm"), nil
}

// buildHelm stamps the version, as Helm's own release build does: `helm
// version` and the chart's .Capabilities.HelmVersion report it.
func buildHelm(ctx context.Context, b *builder, out string) error {
	ld := "-s -w -X helm.sh/helm/v4/internal/version.version=" + HelmVersion
	return b.goCmd(ctx, filepath.Join(b.toolsDir, "helm"), nil, "build", "-ldflags", ld, "-o", filepath.Join(out, "helm"), "helm.sh/helm/v4/cmd/helm")
}
