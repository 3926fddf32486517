package main

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
)

// memoryLimitEnv carries the container's memory limit in bytes, from the
// downward API (resourceFieldRef limits.memory); the manifests set it.
const memoryLimitEnv = "KRM_MEMORY_LIMIT"

// memoryLimitShare is the part of the container's limit the Go heap may
// grow to before the collector works harder: the rest is for the runtime,
// goroutine stacks and the kernel's view of freed pages not yet returned.
const memoryLimitShare = 0.9

// defaultGCPercent is the agent's GOGC unless the environment sets one.
// The heap is mostly the cache, which lives long; what a LIST or an event
// allocates is short-lived. Collecting at 1.5× the live heap instead of Go's
// 2× costs a little CPU and keeps the agent's RSS near an informer's
// (docs/benchmarks.md: 148 against 210 MiB at 10,000 pods).
const defaultGCPercent = 50

// setGCPercent sets defaultGCPercent unless GOGC is set; it returns the
// percentage in force.
func setGCPercent(getenv func(string) string) int {
	if v := getenv("GOGC"); v != "" {
		old := debug.SetGCPercent(100)
		debug.SetGCPercent(old)
		return old
	}
	debug.SetGCPercent(defaultGCPercent)
	return defaultGCPercent
}

// setMemoryLimit sets the Go runtime's soft memory limit to
// memoryLimitShare of the container's limit, unless GOMEMLIMIT is set (it
// wins, as the runtime reads it at start) or there is no limit. It returns
// the limit set, 0 for none.
func setMemoryLimit(getenv func(string) string, log *slog.Logger) (int64, error) {
	if v := getenv("GOMEMLIMIT"); v != "" {
		log.Info("memory limit from GOMEMLIMIT", "GOMEMLIMIT", v)
		return 0, nil
	}
	v := strings.TrimSpace(getenv(memoryLimitEnv))
	if v == "" {
		return 0, nil
	}
	limit, err := strconv.ParseInt(v, 10, 64)
	if err != nil || limit <= 0 {
		return 0, fmt.Errorf("$%s=%q: want the container's memory limit in bytes (the downward API's resourceFieldRef limits.memory with divisor 1)", memoryLimitEnv, v)
	}
	// A container without a limit gets the node's allocatable memory from
	// the downward API: a soft limit there would only slow the collector
	// for nothing, but is harmless.
	soft := int64(float64(limit) * memoryLimitShare)
	debug.SetMemoryLimit(soft)
	log.Info("Go memory limit set from the container's", "containerLimitBytes", limit, "goMemLimitBytes", soft)
	return soft, nil
}
