package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// historyRevisions is how many revisions BenchmarkRevisionBytes records
// per kind (-test.benchtime Nx): a fixed count, so the byte figures are
// the same each run.
const historyRevisions = 5000

// historyResult is one kind's line of BenchmarkRevisionBytes.
type historyResult struct {
	kind    string
	metrics map[string]float64 // by unit: ns/op, B/revision, heap-B/revision, json-B/revision, %json
}

var historyLine = regexp.MustCompile(`^BenchmarkRevisionBytes/kind=(\w+)\S*\s+\d+\s+(.*)$`)

// runHistoryBenchmark compiles pkg/history's tests into dir and runs
// BenchmarkRevisionBytes once: history's bytes per revision of realistic
// pods and deployments, beside their JSON.
func runHistoryBenchmark(ctx context.Context, dir string) ([]*historyResult, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(gomod)), "go.mod") {
		return nil, fmt.Errorf("finding the krm module (run krm-bench inside it, as make bench does): %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	bin := filepath.Join(dir, "history.test")
	build := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, "./pkg/history")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go test -c ./pkg/history: %w\n%s", err, out)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-test.run", "^$", "-test.bench", "^BenchmarkRevisionBytes$",
		"-test.benchtime", strconv.Itoa(historyRevisions)+"x")
	// The benchmark reads its testdata relative to the package.
	cmd.Dir = filepath.Join(root, "pkg", "history")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("BenchmarkRevisionBytes: %w\n%s", err, out.String())
	}
	return parseHistory(out.String())
}

// parseHistory reads BenchmarkRevisionBytes' lines from its output.
func parseHistory(out string) ([]*historyResult, error) {
	var results []*historyResult
	for line := range strings.SplitSeq(out, "\n") {
		m := historyLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		r := &historyResult{kind: m[1], metrics: map[string]float64{}}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("BenchmarkRevisionBytes: %q in %q is not a number", f[i], line)
			}
			r.metrics[f[i+1]] = v
		}
		if _, ok := r.metrics["B/revision"]; !ok {
			return nil, fmt.Errorf("BenchmarkRevisionBytes reported no B/revision (too few revisions?): %q", line)
		}
		results = append(results, r)
	}
	if len(results) == 0 {
		return nil, fmt.Errorf("no BenchmarkRevisionBytes results in:\n%s", out)
	}
	return results, nil
}

// historyMarkdown is the report's section on history's bytes per revision.
func historyMarkdown(results []*historyResult) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("### History: bytes per revision\n\n")
	p("`BenchmarkRevisionBytes` in pkg/history (`go test -c ./pkg/history`, then `history.test -test.run '^$' -test.bench '^BenchmarkRevisionBytes$' -test.benchtime %dx`): %d revisions spread over 100 objects, of pods (testdata/pod.json scheduled, started, ready, then restarts, relabels, annotations) and deployments (scaled up and down, the controller's status following), each with two field managers. What history holds beyond each object's newest revision, which the views hold anyway: as `--history-max-bytes` counts it, and as the Go heap grew.\n\n", historyRevisions, historyRevisions)
	p("| kind | bytes/revision (counted) | heap bytes/revision | object JSON bytes | counted / JSON | µs/revision (Record) |\n|---|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		m := r.metrics
		p("| %s | %.0f | %.0f | %.0f | %.1f %% | %.0f |\n", r.kind, m["B/revision"], m["heap-B/revision"], m["json-B/revision"], m["%json"], m["ns/op"]/1000)
	}
	p("\n")
	return b.String()
}
