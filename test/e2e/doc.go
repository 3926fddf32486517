// Package e2e runs krm's real binaries against the local real cluster
// (test/cluster) and checks what they serve against what kube-apiserver and
// kubectl say. Its tests skip under -short.
package e2e
