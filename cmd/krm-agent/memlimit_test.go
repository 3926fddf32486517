package main

import (
	"log/slog"
	"math"
	"runtime/debug"
	"strings"
	"testing"
)

func TestSetMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	log := slog.New(slog.DiscardHandler)
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	got, err := setMemoryLimit(env(map[string]string{memoryLimitEnv: "1073741824"}), log)
	if err != nil || got != 966367641 {
		t.Fatalf("1Gi: %d %v, want 90%% of it", got, err)
	}
	if cur := debug.SetMemoryLimit(-1); cur != got {
		t.Errorf("the runtime's limit is %d, want %d", cur, got)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	if got, err := setMemoryLimit(env(map[string]string{memoryLimitEnv: "1073741824", "GOMEMLIMIT": "500MiB"}), log); err != nil || got != 0 {
		t.Errorf("with GOMEMLIMIT: %d %v, want it left alone", got, err)
	}
	if got, err := setMemoryLimit(env(nil), log); err != nil || got != 0 {
		t.Errorf("without a limit: %d %v", got, err)
	}
	for _, bad := range []string{"1Gi", "-5", "0", "lots"} {
		if _, err := setMemoryLimit(env(map[string]string{memoryLimitEnv: bad}), log); err == nil || !strings.Contains(err.Error(), "resourceFieldRef") {
			t.Errorf("%q: %v, want an error saying what to set", bad, err)
		}
	}
}

func TestSetGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	if got := setGCPercent(func(string) string { return "" }); got != defaultGCPercent || debug.SetGCPercent(defaultGCPercent) != defaultGCPercent {
		t.Errorf("without GOGC: %d, want %d in force", got, defaultGCPercent)
	}
	debug.SetGCPercent(80) // as the runtime would from GOGC=80
	if got := setGCPercent(func(k string) string { return map[string]string{"GOGC": "80"}[k] }); got != 80 || debug.SetGCPercent(80) != 80 {
		t.Errorf("with GOGC=80: %d, want it left alone", got)
	}
}
