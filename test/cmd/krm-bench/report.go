package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/krm-project/krm/test/benchenv"
)

// report collects one run's figures.
type report struct {
	command           string
	started, finished time.Time
	machine           string
	kubeVersion       string
	namespace         string
	pods              int
	rounds, warmup    int
	createTook        time.Duration
	settleTook        time.Duration
	latency           []*target // agent, kube-apiserver (gzip, identity), floor
	rssEmpty          int64
	rssLoaded         int64
	rssAfter          int64
	rssSteady         int64
	rssPeak           int64
	informerRSS       int64
	anonLoaded        int64
	informerAnon      int64
	gets              *getLatency
	agentHeap         int64
	informerHeap      int64
	apply             []*applyResult
	history           []*historyResult
	verifiers         []verifierCost
	redis             *redisBytes
	redisCompare      *redisBytes
	redisCompareBin   string
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func msFine(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func ratio(a, b time.Duration) string { return fmt.Sprintf("%.1f×", float64(a)/float64(b)) }

func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	p("## krm-bench report\n\n")
	p("- command: `%s`\n", r.command)
	p("- date: %s (took %s)\n", r.started.Format(time.RFC3339), r.finished.Sub(r.started).Round(time.Second))
	p("- machine: %s\n", r.machine)
	p("- cluster: the local test cluster (etcd, kube-apiserver %s, kwok nodes), all on this machine\n", r.kubeVersion)
	p("- %d pods in namespace %s, bound round-robin to %d kwok nodes of the run's own: created in %s, all Running in the agent and in its last LIST after %s\n\n",
		r.pods, r.namespace, benchenv.Nodes, r.createTook.Round(100*time.Millisecond), r.settleTook.Round(100*time.Millisecond))

	if len(r.latency) == 7 {
		agent, apiserver, identity, floor := r.latency[0], r.latency[1], r.latency[2], r.latency[3]
		agentTable, apiserverTable, apiserverTableObjects := r.latency[4], r.latency[5], r.latency[6]
		p50 := func(t *target) time.Duration { return benchenv.Percentile(t.samples, 0.5) }
		p99 := func(t *target) time.Duration { return benchenv.Percentile(t.samples, 0.99) }
		p("### LIST of %d pods\n\n", r.pods)
		p("%d rounds after %d warm-up rounds; each round fetches every source in turn (rotating which goes first), reading the whole body over a kept-alive connection. p99 of %d samples is their maximum.\n\n", r.rounds, r.warmup, r.rounds)
		p("| source | request | p50 | p99 | bytes per response |\n|---|---|---:|---:|---:|\n")
		gz := ""
		if apiserver.gzip {
			gz = ", gzip on the wire (client-go's default)"
		}
		for _, row := range []struct {
			t   *target
			req string
		}{
			{agent, "`GET /api/v1/namespaces/…/pods`, JSON"},
			{apiserver, "the same, JSON" + gz},
			{identity, "the same, without gzip"},
			{floor, "the agent's response bytes, from memory"},
			{agentTable, "the same as `kubectl get` asks: Table"},
			{apiserverTable, "the same, Table" + gz},
			{apiserverTableObjects, "the same, Table with `includeObject=Object`, as the agent LISTs kinds it has no printer for" + gz},
		} {
			p("| %s | %s | %s | %s | %s |\n", row.t.name, row.req, ms(p50(row.t)), ms(p99(row.t)), mib(row.t.bytes))
		}
		p("\n| ratio | p50 | p99 |\n|---|---:|---:|\n")
		p("| kube-apiserver / krm-agent | %s | %s |\n", ratio(p50(apiserver), p50(agent)), ratio(p99(apiserver), p99(agent)))
		p("| kube-apiserver without gzip / krm-agent | %s | %s |\n", ratio(p50(identity), p50(agent)), ratio(p99(identity), p99(agent)))
		p("| krm-agent / floor | %s | %s |\n", ratio(p50(agent), p50(floor)), ratio(p99(agent), p99(floor)))
		p("| kube-apiserver Table / krm-agent Table | %s | %s |\n", ratio(p50(apiserverTable), p50(agentTable)), ratio(p99(apiserverTable), p99(agentTable)))
		p("| kube-apiserver Table with objects / kube-apiserver JSON (what the agent's cells cost kube-apiserver per LIST) | %s | %s |\n\n",
			ratio(p50(apiserverTableObjects), p50(apiserver)), ratio(p99(apiserverTableObjects), p99(apiserver)))
	}

	if r.rssLoaded == 0 {
		// -redis-only
		if r.redis != nil {
			r.redis.markdown(p, r.redisCompare, r.redisCompareBin)
		}
		return b.String()
	}
	p("### Memory with %d pods\n\n", r.pods)
	p("| what | total | per pod |\n|---|---:|---:|\n")
	p("| krm-agent RSS with %d pods (VmRSS) | %s | %.1f KiB |\n", r.pods, mib(r.rssLoaded), float64(r.rssLoaded)/1024/float64(r.pods))
	p("| krm-agent RSS, growth from 0 to %d pods | %s → %s | %.1f KiB |\n", r.pods, mib(r.rssEmpty), mib(r.rssLoaded), float64(r.rssLoaded-r.rssEmpty)/1024/float64(r.pods))
	p("| krm-agent RSS after the LIST rounds | %s | %.1f KiB |\n", mib(r.rssAfter), float64(r.rssAfter)/1024/float64(r.pods))
	p("| krm-agent RSS just before a verifying LIST | %s | %.1f KiB |\n", mib(r.rssSteady), float64(r.rssSteady)/1024/float64(r.pods))
	p("| krm-agent peak RSS during that LIST (VmHWM, reset before it) | %s | %.1f KiB |\n", mib(r.rssPeak), float64(r.rssPeak)/1024/float64(r.pods))
	p("| client-go informer process, managedFields stripped, RSS %s after it synced | %s | %.1f KiB |\n", settleBeforeRSS, mib(r.informerRSS), float64(r.informerRSS)/1024/float64(r.pods))
	p("| krm-agent RssAnon (RSS less the binary's and other files' pages) %s after it served every pod | %s | %.1f KiB |\n", settleBeforeRSS, mib(r.anonLoaded), float64(r.anonLoaded)/1024/float64(r.pods))
	p("| informer process RssAnon %s after it synced | %s | %.1f KiB |\n", settleBeforeRSS, mib(r.informerAnon), float64(r.informerAnon)/1024/float64(r.pods))
	p("| pkg/agent (krm-agent's cache) in this process: live heap after GC | %s | %.1f KiB |\n", mib(r.agentHeap), float64(r.agentHeap)/1024/float64(r.pods))
	p("| client-go SharedIndexInformer, managedFields stripped: live heap after GC | %s | %.1f KiB |\n\n", mib(r.informerHeap), float64(r.informerHeap)/1024/float64(r.pods))
	p("RSS is what the node sees: the Go runtime, and heap the collector has freed but not yet returned, included. The last two lines measure the same thing the same way (runtime.MemStats.HeapAlloc after GC, before and after the cache holds every pod): what the cached objects themselves take.\n\n")
	if len(r.latency) > 0 && r.latency[0].bytes > 0 {
		jsonPerPod := float64(r.latency[0].bytes) / float64(r.pods)
		p("| ratio | value |\n|---|---:|\n")
		p("| krm-agent RSS %s after it served every pod / informer process RSS | %.2f× |\n", settleBeforeRSS, float64(r.rssLoaded)/float64(r.informerRSS))
		p("| the same, RssAnon (the memory each process itself allocated) | %.2f× |\n", float64(r.anonLoaded)/float64(r.informerAnon))
		p("| peak during a verifying LIST / RSS before it | %.2f× |\n", float64(r.rssPeak)/float64(r.rssSteady))
		p("| cache live heap per pod / the pod's compact JSON (%.0f bytes, the agent's LIST bytes per pod) | %.2f× |\n\n", jsonPerPod, float64(r.agentHeap)/float64(r.pods)/jsonPerPod)
	}
	if len(r.verifiers) > 0 {
		p("### Verifying with a paginated LIST or a WatchList\n\n")
		p("An agent verifying every %s with `--verify-with=list` (LIST pages of 500 with continue), then one with `--verify-with=watchlist` (a watch with sendInitialEvents=true, ended at its initial-events-end bookmark), on the same %d pods; medians of %d verifications each. kube-apiserver's CPU is its user+system time over the verification's span (sampled every 20 ms; clock ticks of 10 ms), so it includes other clients' requests of that time; its peak is VmHWM, reset before each verification, above its RSS then.\n\n", verifierInterval, r.pods, verifierVerifications)
		p("| verifier | verification took | kube-apiserver CPU | kube-apiserver peak RSS above steady | krm-agent peak RSS above steady |\n|---|---:|---:|---:|---:|\n")
		for _, v := range r.verifiers {
			p("| %s | %s | %s | %s | %s |\n", v.mode, msFine(v.took), msFine(v.apiserverCPU), mib(v.apiserverPeak), mib(v.agentPeak))
		}
		p("\n")
	}
	if g := r.gets; g != nil {
		p50i, p99i := benchenv.Percentile(g.idle, 0.5), benchenv.Percentile(g.idle, 0.99)
		p50c, p99c := benchenv.Percentile(g.churn, 0.5), benchenv.Percentile(g.churn, 0.99)
		p("### Single-pod GET from the agent\n\n")
		p("`GET /api/v1/namespaces/…/pods/<name>`, a different pod each time, for %s with 2 ms between requests: idle, then while %.0f pods a second got a new annotation (merge patches to kube-apiserver, which the agent's watch applies).\n\n", getWindow, g.eventsPerSecond)
		p("| when | samples | p50 | p99 |\n|---|---:|---:|---:|\n")
		p("| idle | %d | %s | %s |\n", len(g.idle), msFine(p50i), msFine(p99i))
		p("| %.0f events/s | %d | %s | %s |\n", g.eventsPerSecond, len(g.churn), msFine(p50c), msFine(p99c))
		p("| under churn / idle | | %s | %s |\n\n", ratio(p50c, p50i), ratio(p99c, p99i))
	}

	if r.redis != nil {
		r.redis.markdown(p, r.redisCompare, r.redisCompareBin)
	}
	if len(r.apply) > 0 {
		p("### Per-event cost (aggregator)\n\n")
		p("`BenchmarkApply` in pkg/agent/aggregate (`go test -c ./pkg/agent/aggregate`, then %d runs of `aggregate.test -test.run '^$' -test.bench '^BenchmarkApply$' -test.benchmem`): one MODIFIED event applied to a view of that many objects. Flat means roughly equal ns/op at every count.\n\n", len(r.apply[0].nsPerOp))
		p("| objects | ns/op (median of %d runs) | runs | B/op | allocs/op | median vs %d objects |\n|---:|---:|---|---:|---:|---:|\n", len(r.apply[0].nsPerOp), r.apply[0].objects)
		base := median(r.apply[0].nsPerOp)
		for _, a := range r.apply {
			runs := make([]string, len(a.nsPerOp))
			for i, v := range a.nsPerOp {
				runs[i] = fmt.Sprintf("%.0f", v)
			}
			p("| %d | %.0f | %s | %s | %s | %.2f× |\n", a.objects, median(a.nsPerOp), strings.Join(runs, ", "), a.bytesOp, a.allocsOp, median(a.nsPerOp)/base)
		}
		p("\n")
	}
	if len(r.history) > 0 {
		p("%s", historyMarkdown(r.history))
	}
	return b.String()
}
