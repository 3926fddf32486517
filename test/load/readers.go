package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/krm-project/krm/test/benchenv"
)

// readKind is one kind of read a client makes.
type readKind struct {
	name string
	// share is this kind's part of the readers, in percent.
	share int
	// table asks for a Table as kubectl get does; else JSON as client-go.
	table bool
	// what is read: every pod (cluster-wide path), one shard by label in
	// the namespace, the namespace in pages of pageLimit, or one pod.
	what readWhat
}

type readWhat int

const (
	listAll readWhat = iota
	listSelector
	listPaged
	getOne
)

// pageLimit is the page size of a paginated LIST: kubectl's --chunk-size
// and client-go's pager both default to 500.
const pageLimit = 500

// readKinds are the reads and their shares: a few LISTs of everything
// (kubectl get pods -A, a dashboard), more of one app by label, informers'
// and kubectl's paginated LISTs, and many single GETs.
var readKinds = []readKind{
	{"LIST all pods, JSON", 5, false, listAll},
	{"LIST all pods, Table", 5, true, listAll},
	{"LIST namespace -l shard=N, JSON", 15, false, listSelector},
	{"LIST namespace -l shard=N, Table", 15, true, listSelector},
	{"LIST namespace limit=500 (paginated), JSON", 10, false, listPaged},
	{"LIST namespace limit=500 (paginated), Table", 10, true, listPaged},
	{"GET one pod, JSON", 20, false, getOne},
	{"GET one pod, Table", 20, true, getOne},
}

// tableAccept is what kubectl get sends.
const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"

// outcome is one read: its latency (every page of a paginated LIST, each
// body read whole) and what was wrong with it.
type outcome struct {
	took time.Duration
	// code is the first status other than 200, if any.
	code int
	err  error
}

// read makes one read of kind k; n picks the shard or the pod.
func (r *run) read(ctx context.Context, hc *http.Client, k readKind, n int) outcome {
	ns := url.PathEscape(r.env.NS)
	var path string
	q := url.Values{}
	want := r.cfg.Pods
	shard := n % benchenv.Shards
	switch k.what {
	case listAll:
		path = "/api/v1/pods"
	case listSelector:
		path = "/api/v1/namespaces/" + ns + "/pods"
		q.Set("labelSelector", "shard="+strconv.Itoa(shard))
		want = r.env.PodsInShard(shard)
	case listPaged:
		path = "/api/v1/namespaces/" + ns + "/pods"
		q.Set("limit", strconv.Itoa(pageLimit))
	case getOne:
		path = "/api/v1/namespaces/" + ns + "/pods/" + benchenv.PodName(n%r.cfg.Pods)
	}
	var o outcome
	seen := map[string]bool{}
	listRV := ""
	for page := 0; ; page++ {
		u := r.agent.URL + path
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return outcome{err: err}
		}
		req.Header.Set("User-Agent", "krm-load")
		req.Header.Set("Accept", "application/json")
		if k.table {
			req.Header.Set("Accept", tableAccept)
		}
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			o.err = err
			return o
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		o.took += time.Since(start)
		if err != nil {
			o.err = fmt.Errorf("reading the answer: %w", err)
			return o
		}
		if resp.StatusCode != http.StatusOK {
			o.code, o.err = resp.StatusCode, fmt.Errorf("%s: %.200s", resp.Status, body)
			return o
		}
		var a answer
		if err := json.Unmarshal(body, &a); err != nil {
			o.err = fmt.Errorf("decoding the answer: %w", err)
			return o
		}
		if k.what == getOne {
			if got := a.names(); len(got) != 1 || got[0].Name != benchenv.PodName(n%r.cfg.Pods) {
				o.err = fmt.Errorf("GET %s answered %v", path, got)
			}
			return o
		}
		if page > 0 && a.Metadata.ResourceVersion != listRV {
			o.err = fmt.Errorf("page %d is at resourceVersion %s, the first at %s", page, a.Metadata.ResourceVersion, listRV)
			return o
		}
		listRV = a.Metadata.ResourceVersion
		for _, m := range a.names() {
			if m.Namespace != r.env.NS {
				continue
			}
			if seen[m.Name] {
				o.err = fmt.Errorf("pod %s twice in one LIST", m.Name)
				return o
			}
			if k.what == listSelector && m.Labels["shard"] != strconv.Itoa(shard) {
				o.err = fmt.Errorf("pod %s (shard %q) in a LIST of shard=%d", m.Name, m.Labels["shard"], shard)
				return o
			}
			seen[m.Name] = true
		}
		if a.Metadata.Continue == "" {
			break
		}
		q.Set("continue", a.Metadata.Continue)
	}
	if len(seen) != want {
		o.err = fmt.Errorf("incomplete: %d of the namespace's %d pods", len(seen), want)
	}
	return o
}

// answer is the part of a List, a Table or an object a reader checks.
type answer struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
		Continue        string `json:"continue"`
		// An object's own.
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Kind  string       `json:"kind"`
	Items []objectMeta `json:"items"`
	Rows  []struct {
		Object objectMeta `json:"object"`
	} `json:"rows"`
}

type objectMeta struct {
	Metadata struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
}

type nameRef struct {
	Name, Namespace string
	Labels          map[string]string
}

// names are the objects of the answer: a List's items, a Table's rows, or
// the object itself.
func (a *answer) names() []nameRef {
	var out []nameRef
	switch {
	case a.Kind == "Table":
		for _, row := range a.Rows {
			out = append(out, nameRef{row.Object.Metadata.Name, row.Object.Metadata.Namespace, row.Object.Metadata.Labels})
		}
	case a.Kind == "Pod":
		out = append(out, nameRef{a.Metadata.Name, a.Metadata.Namespace, a.Metadata.Labels})
	default:
		for _, it := range a.Items {
			out = append(out, nameRef{it.Metadata.Name, it.Metadata.Namespace, it.Metadata.Labels})
		}
	}
	return out
}

// readers is what the readers of each kind saw.
type readers struct {
	mu    sync.Mutex
	kinds []*kindStats
}

type kindStats struct {
	kind    readKind
	readers int
	samples []time.Duration
	errors  int
	codes   map[int]int
	first   error
}

// startReaders starts r.cfg.Readers readers, split by readKinds' shares,
// each reading until ctx ends with its own connection, as separate
// clients do.
func (r *run) startReaders(ctx context.Context, wg *sync.WaitGroup) *readers {
	rs := &readers{}
	counts := split(r.cfg.Readers, readKinds)
	for i, k := range readKinds {
		ks := &kindStats{kind: k, readers: counts[i], codes: map[int]int{}}
		rs.kinds = append(rs.kinds, ks)
		for range counts[i] {
			wg.Go(func() {
				hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
				defer hc.CloseIdleConnections()
				for ctx.Err() == nil {
					o := r.read(ctx, hc, k, rand.IntN(1<<30))
					if ctx.Err() != nil && o.err != nil {
						return // cut short by the end of the run
					}
					rs.mu.Lock()
					if o.err == nil {
						ks.samples = append(ks.samples, o.took)
					} else {
						ks.errors++
						if o.code != 0 {
							ks.codes[o.code]++
						}
						if ks.first == nil {
							ks.first = o.err
						}
					}
					rs.mu.Unlock()
					if r.cfg.Think > 0 {
						select {
						case <-ctx.Done():
						case <-time.After(rand.N(r.cfg.Think)):
						}
					}
				}
			})
		}
	}
	return rs
}

// split divides n readers by the kinds' shares, the remainder to the
// first kinds, and at least one to each kind while there are readers.
func split(n int, kinds []readKind) []int {
	out := make([]int, len(kinds))
	given := 0
	for i, k := range kinds {
		out[i] = n * k.share / 100
		given += out[i]
	}
	for i := 0; given < n; i = (i + 1) % len(kinds) {
		out[i]++
		given++
	}
	return out
}

// ReadStats are one kind of read's figures.
type ReadStats struct {
	Kind     string
	Readers  int
	Reads    int
	PerSec   float64
	P50, P99 time.Duration
	Errors   int
	// Codes counts the answers other than 200 by status.
	Codes map[int]int
	// FirstError says what the first failed read got.
	FirstError string
}

func (rs *readers) summary(took time.Duration) []ReadStats {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var out []ReadStats
	for _, k := range rs.kinds {
		s := ReadStats{
			Kind: k.kind.name, Readers: k.readers, Reads: len(k.samples),
			PerSec: float64(len(k.samples)) / took.Seconds(),
			P50:    benchenv.Percentile(k.samples, 0.5), P99: benchenv.Percentile(k.samples, 0.99),
			Errors: k.errors, Codes: k.codes,
		}
		if k.first != nil {
			s.FirstError = k.first.Error()
		}
		out = append(out, s)
	}
	return out
}

// namespaceRV is the resourceVersion of a LIST of the namespace's pods,
// where an informer starts its watch.
func (r *run) namespaceRV(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.agent.URL+"/api/v1/namespaces/"+url.PathEscape(r.env.NS)+"/pods?limit=1", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var a answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return "", err
	}
	if a.Metadata.ResourceVersion == "" {
		return "", errors.New("the agent's LIST has no resourceVersion")
	}
	return a.Metadata.ResourceVersion, nil
}
