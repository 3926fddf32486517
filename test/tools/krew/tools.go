//go:build tools

// Package krew imports krew's commands so that go mod tidy records every
// module they need; the harness builds them with go build.
package krew

import (
	_ "sigs.k8s.io/krew/cmd/krew"
	_ "sigs.k8s.io/krew/cmd/validate-krew-manifest"
)
