package load

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Result is one run's figures.
type Result struct {
	Config            Config
	Namespace         string
	Started, Finished time.Time
	// ChurnRate is the changes a second made from when the clients came
	// until the stalled watchers were dropped.
	ChurnRate float64
	Reads     []ReadStats
	Watches   WatchStats
	Stalled   StalledStats
	// Dropped is krm_watches_dropped_total's growth during the run, by
	// labels.
	Dropped map[string]float64
	// Served5xx is how many 5xx answers the agent counted during the run.
	Served5xx float64
	// WatchesOpenAfter is krm_watches once the clients left.
	WatchesOpenAfter float64
	// Before and After are the agent's baseline and its state once the
	// clients left and it settled; Peak the most while they ran.
	Before, After Sample
	Peak          Peak
	// RSS: before the clients came, its median and peak while they ran,
	// and after they left.
	RSSBefore, RSSSteady, RSSPeak, RSSAfter int64
}

// Tolerances of the return to baseline, after Settle.
const (
	// GoroutineTolerance: the agent starts a goroutine or two for a
	// moment for a verifying LIST, a frame write or a metrics scrape; the
	// window's least filters most of those. The clients held hundreds.
	GoroutineTolerance = 10
	// HeapToleranceFraction and HeapToleranceBytes: the live heap also
	// holds the rows of the 4,096 newest changes (the watch history) and
	// the snapshots of paginated LISTs for 5 minutes after their last page,
	// both of which the churn renews, and up to a second of garbage.
	HeapToleranceFraction = 0.25
	HeapToleranceBytes    = 16 << 20
)

// ReadErrors is the reads that failed, of every kind.
func (r *Result) ReadErrors() int {
	n := 0
	for _, s := range r.Reads {
		n += s.Errors
	}
	return n
}

// Read5xx is the reads answered with a 5xx, of every kind.
func (r *Result) Read5xx() int {
	n := 0
	for _, s := range r.Reads {
		for code, c := range s.Codes {
			if code >= 500 {
				n += c
			}
		}
	}
	return n
}

// GoroutinesBack says whether the agent's goroutines returned to the
// baseline within GoroutineTolerance.
func (r *Result) GoroutinesBack() bool {
	return r.After.Goroutines <= r.Before.Goroutines+GoroutineTolerance
}

// HeapLimit is the heap the agent may hold after the clients left.
func (r *Result) HeapLimit() float64 {
	return r.Before.HeapAlloc*(1+HeapToleranceFraction) + HeapToleranceBytes
}

// HeapBack says whether the agent's heap returned to within HeapLimit.
func (r *Result) HeapBack() bool { return r.After.HeapAlloc <= r.HeapLimit() }

// Markdown is the report.
func (r *Result) Markdown(command, machine string) string {
	c := r.Config
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("## krm load suite\n\n")
	p("Command: `%s`  \n", command)
	if machine != "" {
		p("Machine: %s  \n", machine)
	}
	p("Run: %s to %s, namespace `%s`.\n\n", r.Started.Format(time.RFC3339), r.Finished.Format(time.RFC3339), r.Namespace)
	p("One krm-agent process (`--resources pods --namespace <run's> --verify-interval %s`, memory store) on the local cluster, "+
		"%d pods, changed at %.0f a second (asked %d) from when %d readers and %d watchers (%d of which never read) came, for %s, until the agent had dropped those that never read. "+
		"Each reader makes its read, reads the whole answer, checks it is complete (every pod of the namespace or the shard, "+
		"once, from one resourceVersion across pages), then pauses up to %s at random.\n\n",
		c.VerifyInterval, c.Pods, r.ChurnRate, c.Churn, c.Readers, c.Watchers, c.Stalled, c.Duration, c.Think)

	p("### Reads\n\n| read | readers | reads | reads/s | p50 | p99 | errors |\n|---|---:|---:|---:|---:|---:|---|\n")
	for _, s := range r.Reads {
		errs := "0"
		if s.Errors > 0 {
			errs = fmt.Sprintf("%d (%s; first: %.160s)", s.Errors, codes(s.Codes), s.FirstError)
		}
		p("| %s | %d | %d | %.1f | %s | %s | %s |\n", s.Kind, s.Readers, s.Reads, s.PerSec, ms(s.P50), ms(s.P99), errs)
	}
	p("\nLatency is from sending the request to the last byte of the answer (every page, for a paginated LIST), on loopback.\n\n")

	p("### Watches\n\n| | |\n|---|---|\n")
	p("| reading watchers (3 in 4 as an informer: JSON from the LIST's resourceVersion with bookmarks; 1 in 4 as `kubectl get -w`: Table) | %d, %d events read, %d errors%s |\n",
		r.Watches.Watchers, r.Watches.Events, r.Watches.Errors, firstErr(r.Watches.FirstError))
	p("| watchers that never read (half from the initial events, half from the LIST's resourceVersion; 4 KiB receive buffer) | %d |\n", r.Stalled.Watchers)
	p("| dropped by the agent for a write timeout (`krm_watches_dropped_total{reason=\"write-timeout\"}`) | %d, by %s after the readers left |\n", r.Stalled.DroppedByAgent, r.Stalled.Waited.Round(time.Second))
	p("| their connections closed by the agent (read to EOF afterwards) | %d |\n", r.Stalled.ClosedByAgent)
	p("| `krm_watches_dropped_total` growth, by labels | %s |\n", labels(r.Dropped))
	p("| `krm_watches`: peak, and once the clients left | %.0f, %.0f |\n", r.Peak.Watches, r.WatchesOpenAfter)
	p("| 5xx answers the agent counted (`krm_http_requests_total`) | %.0f |\n\n", r.Served5xx)

	p("### The agent\n\n| | before the clients | while they ran | %s after they left |\n|---|---:|---:|---:|\n", c.Settle)
	p("| RSS | %s | %s median, %s peak | %s |\n", mib(r.RSSBefore), mib(r.RSSSteady), mib(r.RSSPeak), mib(r.RSSAfter))
	p("| goroutines (`go_goroutines`; before and after: least over %s) | %.0f | %.0f peak | %.0f |\n", c.Window, r.Before.Goroutines, r.Peak.Goroutines, r.After.Goroutines)
	p("| heap in use (`go_memstats_heap_alloc_bytes`; before and after: least over %s) | %s | %s peak | %s |\n\n", c.Window, mib(int64(r.Before.HeapAlloc)), mib(int64(r.Peak.HeapAlloc)), mib(int64(r.After.HeapAlloc)))

	p("### Bounds\n\n| bound | held |\n|---|---|\n")
	p("| every watcher that never read dropped by the write deadline | %s (%d of %d) |\n", yes(r.StalledDropped()), r.Stalled.DroppedByAgent, r.Stalled.Watchers)
	p("| no 5xx | %s (%d answers to the readers, %.0f counted by the agent) |\n", yes(r.Read5xx() == 0 && r.Served5xx == 0), r.Read5xx(), r.Served5xx)
	p("| every read complete and without error | %s (%d errors) |\n", yes(r.ReadErrors() == 0 && r.Watches.Errors == 0), r.ReadErrors()+r.Watches.Errors)
	p("| goroutines back to baseline + %d | %s (%.0f, baseline %.0f) |\n", GoroutineTolerance, yes(r.GoroutinesBack()), r.After.Goroutines, r.Before.Goroutines)
	p("| heap back to baseline × %.2f + %s | %s (%s, limit %s) |\n", 1+HeapToleranceFraction, mib(HeapToleranceBytes), yes(r.HeapBack()), mib(int64(r.After.HeapAlloc)), mib(int64(r.HeapLimit())))
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func firstErr(s string) string {
	if s == "" {
		return ""
	}
	return fmt.Sprintf(" (first: %.160s)", s)
}

func codes(c map[int]int) string {
	if len(c) == 0 {
		return "no HTTP status"
	}
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, fmt.Sprintf("%d× %d", c[code], code))
	}
	return strings.Join(parts, ", ")
}

func labels(m map[string]float64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("`%s` %.0f", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// StalledDropped says whether the agent dropped, and closed, every watcher
// that never read.
func (r *Result) StalledDropped() bool {
	return r.Stalled.DroppedByAgent >= r.Stalled.Watchers && r.Stalled.ClosedByAgent == r.Stalled.Watchers
}

// Held says whether every bound held.
func (r *Result) Held() bool {
	return r.StalledDropped() && r.Read5xx() == 0 && r.Served5xx == 0 && r.ReadErrors() == 0 &&
		r.Watches.Errors == 0 && r.GoroutinesBack() && r.HeapBack()
}
