package main

import (
	"strings"
	"testing"
)

// A real BenchmarkRevisionBytes output, as go test prints it.
const historyOutput = `goos: linux
goarch: amd64
pkg: github.com/krm-project/krm/pkg/history
cpu: Intel(R) Xeon(R) Processor
BenchmarkRevisionBytes/kind=pod-2         	    5000	    672520 ns/op	        17.67 %json	       817.2 B/revision	       993.8 heap-B/revision	      4625 json-B/revision
BenchmarkRevisionBytes/kind=deployment-2  	    5000	    168336 ns/op	        21.40 %json	       504.1 B/revision	       600.0 heap-B/revision	      2356 json-B/revision
PASS
`

func TestHistoryReport(t *testing.T) {
	results, err := parseHistory(historyOutput)
	if err != nil {
		t.Fatal(err)
	}
	got := historyMarkdown(results)
	for _, want := range []string{
		"| pod | 817 | 994 | 4625 | 17.7 % | 673 |",
		"| deployment | 504 | 600 | 2356 | 21.4 % | 168 |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the report lacks %q:\n%s", want, got)
		}
	}
	if _, err := parseHistory("BenchmarkRevisionBytes/kind=pod-2  1  100 ns/op\nPASS\n"); err == nil {
		t.Error("a line without B/revision was taken")
	}
	if _, err := parseHistory("PASS\n"); err == nil {
		t.Error("output without results was taken")
	}
}
