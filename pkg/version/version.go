// Package version holds the build's version, stamped by the Makefile with
// -ldflags "-X github.com/krm-project/krm/pkg/version.Version=...".
package version

// Version is "dev" unless the build stamps it.
var Version = "dev"
