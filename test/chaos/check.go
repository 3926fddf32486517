package chaos

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"

	"github.com/krm-project/krm/pkg/client"
)

// watched are the resources every scenario's agents watch, with their
// GroupVersionResource at kube-apiserver.
var watched = []struct {
	name string
	gvr  schema.GroupVersionResource
}{
	{"pods", schema.GroupVersionResource{Version: "v1", Resource: "pods"}},
	{"deployments", schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}},
}

// view is one resource's objects by UID, each with its resourceVersion.
type view map[string]string

// diff compares an agent's view with kube-apiserver's: missing are objects
// kube-apiserver has and the agent does not, extra the reverse, stale the
// objects both have at different resourceVersions.
type diff struct{ missing, extra, stale int }

func (d diff) zero() bool { return d.missing == 0 && d.extra == 0 && d.stale == 0 }

func (d diff) String() string {
	return fmt.Sprintf("%d missing, %d extra, %d at another resourceVersion", d.missing, d.extra, d.stale)
}

func compare(agent, apiserver view) diff {
	var d diff
	for uid, rv := range apiserver {
		got, ok := agent[uid]
		switch {
		case !ok:
			d.missing++
		case got != rv:
			d.stale++
		}
	}
	for uid := range agent {
		if _, ok := apiserver[uid]; !ok {
			d.extra++
		}
	}
	return d
}

// checker compares agents' aggregated views with kube-apiserver.
type checker struct {
	md metadata.Interface
	ns string
}

// agentView reads the agent's aggregated view of resource and the
// resourceVersion it is at.
func agentView(ctx context.Context, c *client.Client, ns, resource string) (view, string, error) {
	info, err := c.Resource(ctx, resource)
	if err != nil {
		return nil, "", err
	}
	l, err := client.ListAs[metav1.PartialObjectMetadata](ctx, c, info, client.ListOptions{Namespace: ns})
	if err != nil {
		return nil, "", err
	}
	v := view{}
	for _, o := range l.Items {
		v[string(o.UID)] = o.ResourceVersion
	}
	return v, l.ResourceVersion, nil
}

// apiserverView LISTs the resource from kube-apiserver: at exactly
// resourceVersion rv, or fresh when rv is "".
func (k *checker) apiserverView(ctx context.Context, gvr schema.GroupVersionResource, rv string) (view, string, error) {
	opts := metav1.ListOptions{}
	if rv != "" {
		opts.ResourceVersion, opts.ResourceVersionMatch = rv, metav1.ResourceVersionMatchExact
	}
	l, err := k.md.Resource(gvr).Namespace(k.ns).List(ctx, opts)
	if err != nil {
		return nil, "", err
	}
	v := view{}
	for _, o := range l.Items {
		v[string(o.UID)] = o.ResourceVersion
	}
	return v, l.ResourceVersion, nil
}

// consistent reports whether each resource the agent serves is current and
// right: it has caught up with every object a fresh LIST made just before
// showed (its resourceVersion is at least the newest object's), and it
// equals what kube-apiserver held at the resourceVersion the agent says it
// is at, so it has every event up to there and nothing wrong. Churn may go
// on meanwhile. The error says what differs.
func (k *checker) consistent(ctx context.Context, a *Agent) error {
	c := a.Client()
	if c == nil {
		return fmt.Errorf("%s is down", a.Name)
	}
	for _, w := range watched {
		before, _, err := k.apiserverView(ctx, w.gvr, "")
		if err != nil {
			return fmt.Errorf("kube-apiserver %s: %w", w.name, err)
		}
		newest := uint64(0)
		for _, rv := range before {
			if v, err := strconv.ParseUint(rv, 10, 64); err == nil {
				newest = max(newest, v)
			}
		}
		got, rv, err := agentView(ctx, c, k.ns, w.name)
		if err != nil {
			return fmt.Errorf("%s %s: %w", a.Name, w.name, err)
		}
		if v, err := strconv.ParseUint(rv, 10, 64); err != nil || v == 0 {
			return fmt.Errorf("%s %s: no resourceVersion yet (%q)", a.Name, w.name, rv)
		} else if v < newest {
			return fmt.Errorf("%s %s: behind: at resourceVersion %d, kube-apiserver has an object at %d", a.Name, w.name, v, newest)
		}
		want, _, err := k.apiserverView(ctx, w.gvr, rv)
		if err != nil {
			return fmt.Errorf("%s serves %s at resourceVersion %s; kube-apiserver at it: %w", a.Name, w.name, rv, err)
		}
		if d := compare(got, want); !d.zero() {
			return fmt.Errorf("%s %s at resourceVersion %s: %s", a.Name, w.name, rv, d)
		}
	}
	return nil
}

// fresh compares each resource the agent serves with a fresh LIST, for
// when the churn has stopped.
func (k *checker) fresh(ctx context.Context, a *Agent) (diff, error) {
	c := a.Client()
	if c == nil {
		return diff{}, fmt.Errorf("%s is down", a.Name)
	}
	var total diff
	for _, w := range watched {
		want, _, err := k.apiserverView(ctx, w.gvr, "")
		if err != nil {
			return diff{}, err
		}
		got, _, err := agentView(ctx, c, k.ns, w.name)
		if err != nil {
			return diff{}, fmt.Errorf("%s %s: %w", a.Name, w.name, err)
		}
		d := compare(got, want)
		total.missing += d.missing
		total.extra += d.extra
		total.stale += d.stale
	}
	return total, nil
}

// reader polls the agents' pods, as a client behind a Service would (each
// read goes to the next agent that runs), and counts the answers that were
// not 200, refused connections and no agent running included.
type reader struct {
	requests, errors atomic.Int64
	mu               sync.Mutex
	samples          map[string]int // error sentences, by count
	cancel           context.CancelFunc
	done             chan struct{}
}

const readEvery = 200 * time.Millisecond

func (r *reader) start(ctx context.Context, agents func() []*Agent, ns string) {
	ctx, r.cancel = context.WithCancel(ctx)
	r.done = make(chan struct{})
	r.samples = map[string]int{}
	go func() {
		defer close(r.done)
		tick := time.NewTicker(readEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			// As through a Service: the next agent that runs.
			var running []*Agent
			for _, a := range agents() {
				if a.Running() {
					running = append(running, a)
				}
			}
			var a *Agent
			if len(running) > 0 {
				a = running[int(r.requests.Load())%len(running)]
			}
			r.read(ctx, a, ns)
		}
	}()
}

func (r *reader) read(ctx context.Context, a *Agent, ns string) {
	r.requests.Add(1)
	var c *client.Client
	if a != nil {
		c = a.Client()
	}
	var err error
	if c == nil {
		err = errors.New("no agent runs")
	} else {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, _, err = agentView(rctx, c, ns, "pods")
		cancel()
	}
	if err == nil || ctx.Err() != nil {
		return
	}
	r.errors.Add(1)
	msg := err.Error()
	if i := strings.Index(msg, "127.0.0.1:"); i >= 0 {
		msg = msg[:i] // the port changes with each restart
	}
	r.mu.Lock()
	r.samples[msg]++
	r.mu.Unlock()
}

func (r *reader) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
}

// topErrors is the commonest error sentences, for the report's notes.
func (r *reader) topErrors(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	type kv struct {
		msg string
		n   int
	}
	var all []kv
	for m, c := range r.samples {
		all = append(all, kv{m, c})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n })
	var out []string
	for i := 0; i < len(all) && i < n; i++ {
		out = append(out, fmt.Sprintf("%d× %.120s", all[i].n, all[i].msg))
	}
	return out
}
