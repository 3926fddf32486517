//go:build tools

// Package helm imports Helm's command so that go mod tidy records every
// module it needs; the harness builds it with go build.
package helm

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
