package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/krm-project/krm/pkg/agent"
)

// target is one source of the same list, fetched over HTTP.
type target struct {
	name    string
	client  *http.Client
	url     string
	header  http.Header
	samples []time.Duration
	bytes   int64
	// gzip says the response came compressed on the wire.
	gzip bool
}

// fetch GETs the list, reads the whole body and returns how long that took.
func (t *target) fetch(ctx context.Context) (time.Duration, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header = t.header.Clone()
	start := time.Now()
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: GET %s: %w", t.name, t.url, err)
	}
	body, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	resp.Body.Close()
	if err != nil {
		return 0, nil, fmt.Errorf("%s: reading GET %s: %w", t.name, t.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, nil, fmt.Errorf("%s: GET %s: %s: %.200s", t.name, t.url, resp.Status, body)
	}
	t.bytes, t.gzip = int64(len(body)), resp.Uncompressed
	return took, body, nil
}

// measureLists fetches the namespace's pods from the agent, kube-apiserver
// and the floor server in turn, rotating which goes first each round.
func (b *bench) measureLists(ctx context.Context) ([]*target, error) {
	// Each target gets its own client, created here and kept for every
	// round, so connections are fresh for this run and then kept alive.
	// The agent answers at kube-apiserver's own path, so both are asked
	// the same request.
	agent := &target{
		name:   "krm-agent",
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}},
		url:    b.agent.URL + "/api/v1/namespaces/" + url.PathEscape(b.NS) + "/pods",
		header: http.Header{"Accept": {"application/json"}, "User-Agent": {"krm-bench"}},
	}
	// kubectl get asks for a Table; the agent renders each row once per
	// resourceVersion and only the ages at read time.
	agentTable := &target{
		name:   "krm-agent, Table",
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}},
		url:    agent.url,
		header: http.Header{"Accept": {tableAccept}, "User-Agent": {"krm-bench"}},
	}
	// As client-go sends it: JSON, gzip accepted (the Go transport's
	// default, which kube-apiserver honours for large responses), a Go user
	// agent (kube-apiserver indents JSON for curl). And once more without
	// gzip, which costs kube-apiserver CPU that a loopback link does not
	// repay.
	apiserver, err := b.apiserverTarget("kube-apiserver", false)
	if err != nil {
		return nil, err
	}
	identity, err := b.apiserverTarget("kube-apiserver, no gzip", true)
	if err != nil {
		return nil, err
	}
	apiserverTable, err := b.apiserverTarget("kube-apiserver, Table", false)
	if err != nil {
		return nil, err
	}
	apiserverTable.header.Set("Accept", tableAccept)
	// What the agent asks kube-apiserver for, for a kind krm has no
	// printer for: the Table with each object in its row.
	apiserverTableObjects, err := b.apiserverTarget("kube-apiserver, Table with objects", false)
	if err != nil {
		return nil, err
	}
	apiserverTableObjects.header.Set("Accept", agentTableAccept)
	apiserverTableObjects.url += "?includeObject=Object"
	// The floor serves the agent's own bytes from memory: what any HTTP
	// server on this machine needs to hand over this response.
	_, body, err := agent.fetch(ctx)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	floorSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})}
	go func() { _ = floorSrv.Serve(ln) }()
	defer floorSrv.Close()
	floor := &target{
		name:   "floor (same bytes from memory)",
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}},
		url:    "http://" + ln.Addr().String() + "/",
		header: agent.header,
	}

	targets := []*target{agent, apiserver, identity, floor, agentTable, apiserverTable, apiserverTableObjects}
	for round := range b.o.warmup + b.o.rounds {
		for i := range targets {
			t := targets[(round+i)%len(targets)]
			took, _, err := t.fetch(ctx)
			if err != nil {
				return nil, err
			}
			if round >= b.o.warmup {
				t.samples = append(t.samples, took)
			}
		}
		if (round+1)%10 == 0 {
			progress(fmt.Sprintf("round %d/%d", round+1, b.o.warmup+b.o.rounds))
		}
	}
	return targets, nil
}

// tableAccept is what kubectl get sends.
const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"

// agentTableAccept is what krm-agent sends for a kind whose Table cells it
// takes from kube-apiserver.
const agentTableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"

func (b *bench) apiserverTarget(name string, disableCompression bool) (*target, error) {
	cfg := rest.CopyConfig(b.Cfg)
	cfg.DisableCompression = disableCompression
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, err
	}
	return &target{
		name:   name,
		client: &http.Client{Transport: rt},
		url:    b.S.Server + "/api/v1/namespaces/" + b.NS + "/pods",
		header: http.Header{"Accept": {"application/json"}, "User-Agent": {"krm-bench (client-go style)"}},
	}, nil
}

// agentHeap runs pkg/agent, as krm-agent runs it, on the namespace's pods
// and returns the live heap it adds once it serves them all, measured after
// garbage collection like informerHeap.
func (b *bench) agentHeap(ctx context.Context) (int64, error) {
	before := liveHeap()
	a, err := agent.Config{
		RESTConfig: b.Cfg, Resources: []string{"pods"}, Namespace: b.NS,
		VerifyInterval: time.Hour, ClusterName: "krm-bench",
	}.Complete()
	if err != nil {
		return 0, err
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Start(actx) }()
	defer func() { cancel(); <-done }()
	for {
		if st := a.Resources().Resources; len(st) == 1 && st[0].Objects.Aggregated == b.o.pods {
			break
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	after := liveHeap()
	runtime.KeepAlive(a)
	return after - before, nil
}

// informerHeap runs a client-go SharedIndexInformer on the namespace's pods,
// with managedFields stripped as the agent strips them, and returns the live
// heap it adds once synced, measured after garbage collection.
func (b *bench) informerHeap(ctx context.Context) (int64, error) {
	cs, err := kubernetes.NewForConfig(b.Cfg)
	if err != nil {
		return 0, err
	}
	before := liveHeap()
	lw := cache.NewListWatchFromClient(cs.CoreV1().RESTClient(), "pods", b.NS, fields.Everything())
	inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if err := inf.SetTransform(func(obj any) (any, error) {
		if m, err := meta.Accessor(obj); err == nil {
			m.SetManagedFields(nil)
		}
		return obj, nil
	}); err != nil {
		return 0, err
	}
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	go inf.RunWithContext(ictx)
	if !cache.WaitForCacheSync(ictx.Done(), inf.HasSynced) {
		return 0, fmt.Errorf("the informer did not sync: %w", ctx.Err())
	}
	if n := len(inf.GetStore().ListKeys()); n != b.o.pods {
		return 0, fmt.Errorf("the informer holds %d pods, want %d", n, b.o.pods)
	}
	after := liveHeap()
	runtime.KeepAlive(inf)
	return after - before, nil
}

func liveHeap() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// applyResult is one line of BenchmarkApply's output.
type applyResult struct {
	objects           int
	nsPerOp           []float64
	bytesOp, allocsOp string
}

var benchLine = regexp.MustCompile(`^BenchmarkApply/objects=(\d+)\S*\s+\d+\s+([\d.]+) ns/op(?:\s+(\d+) B/op\s+(\d+) allocs/op)?`)

// applyRuns is how many times BenchmarkApply runs; each run measures every
// object count once, one after the other, so the counts share the machine's
// load, and the report takes the median of the runs.
const applyRuns = 5

// runApplyBenchmark compiles pkg/agent's tests into dir and runs
// BenchmarkApply applyRuns times, collecting ns/op per object count.
func runApplyBenchmark(ctx context.Context, dir string) ([]*applyResult, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(gomod)), "go.mod") {
		return nil, fmt.Errorf("finding the krm module (run krm-bench inside it, as make bench does): %v", err)
	}
	bin := filepath.Join(dir, "agent.test")
	build := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, "./pkg/agent/aggregate")
	build.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go test -c ./pkg/agent/aggregate: %w\n%s", err, out)
	}
	byCount := map[int]*applyResult{}
	var results []*applyResult
	for range applyRuns {
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, "-test.run", "^$", "-test.bench", "^BenchmarkApply$", "-test.benchmem")
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("BenchmarkApply: %w\n%s", err, out.String())
		}
		found := 0
		for line := range strings.SplitSeq(out.String(), "\n") {
			m := benchLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			found++
			n, _ := strconv.Atoi(m[1])
			ns, _ := strconv.ParseFloat(m[2], 64)
			r := byCount[n]
			if r == nil {
				r = &applyResult{objects: n, bytesOp: m[3], allocsOp: m[4]}
				byCount[n] = r
				results = append(results, r)
			}
			r.nsPerOp = append(r.nsPerOp, ns)
		}
		if found == 0 {
			return nil, fmt.Errorf("no BenchmarkApply results in:\n%s", out.String())
		}
	}
	return results, nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
