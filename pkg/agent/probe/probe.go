// Package probe is krm-agent's canary: it creates and deletes a small
// ConfigMap every interval and times, on the monotonic clock, each call's
// response to the matching event on its own watch, so stream delay is known
// to the millisecond where object timestamps give whole seconds.
package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/krm-project/krm/pkg/agent/source"
	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/delay"
	"github.com/krm-project/krm/pkg/store"
)

// Resource is the resource name the canary probe's samples carry, so they
// show as their own rows in delay tables, metrics and InfluxDB.
const Resource = api.ProbeResource

// DefaultTimeout is how long the probe waits for each of its events when
// Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Labels mark the probe's ConfigMaps; its watch, its LIST and its clean-up
// of leftovers select on them, so it never touches anything else.
var Labels = map[string]string{
	"app.kubernetes.io/managed-by": "krm-agent",
	"app.kubernetes.io/component":  "delay-probe",
}

var configMapsResource = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// probeNamePrefix starts every probe ConfigMap's name.
const probeNamePrefix = "krm-probe-"

// Probe is the canary: every interval it creates a small ConfigMap in its
// namespace and deletes it, and times, on the monotonic clock, each call's
// response to the matching event on its own watch of those ConfigMaps. Object
// timestamps have 1-second resolution; the probe's delays do not, so they say
// what the timestamps cannot. The delay is negative when the event arrives
// before the call's response, and is recorded as it is.
//
// It needs only a namespaced Role: create, delete, list and watch on
// configmaps in its namespace. One agent per namespace should probe: at
// start a probe deletes every probe ConfigMap there, as left by an earlier
// run, and would take another agent's probe in flight (which then logs it
// and measures nothing).
type Probe struct {
	client    dynamic.ResourceInterface // configmaps in namespace
	namespace string
	interval  time.Duration
	timeout   time.Duration
	selector  string
	cluster   string
	delay     *delay.Recorder
	log       *slog.Logger
	metrics   *probeMetrics

	mu        sync.Mutex
	pending   map[string]*inflight // by ConfigMap name
	ready     chan struct{}        // closed once the first watch is open
	readyOnce sync.Once
}

// inflight is one probe ConfigMap waiting for its events.
type inflight struct {
	added, deleted chan receipt // buffered 1
}

// receipt is when the probe's watch received an event, and its object's
// resourceVersion.
type receipt struct {
	at time.Time
	rv uint64
}

type probeMetrics struct {
	timeouts *prometheus.CounterVec
	errors   *prometheus.CounterVec
}

func newProbeMetrics(reg prometheus.Registerer) (*probeMetrics, error) {
	m := &probeMetrics{
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "krm_probe_timeouts_total",
			Help: "Canary probe events (ADDED or DELETED) that did not reach the probe's watch within the probe timeout.",
		}, []string{"event"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "krm_probe_errors_total",
			Help: "Failed canary probe API calls, by operation (create, delete, list, watch).",
		}, []string{"operation"}),
	}
	// Make the series visible at zero.
	for _, e := range []string{delay.Added, delay.Deleted} {
		m.timeouts.WithLabelValues(e)
	}
	for _, op := range []string{"create", "delete", "list", "watch"} {
		m.errors.WithLabelValues(op)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.timeouts, m.errors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering probe metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Start cleans up probe ConfigMaps a previous run left behind, opens the
// watch and probes every interval until ctx is done. A probe in flight when
// ctx ends has its ConfigMap deleted before Start returns.
func (p *Probe) Start(ctx context.Context) error {
	rv, ok := p.sweepUntilDone(ctx)
	if !ok {
		return nil
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.watch(ctx, rv) })
	defer wg.Wait()

	select {
	case <-ctx.Done():
		return nil
	case <-p.ready:
	}
	p.log.Info("canary probe started", "namespace", p.namespace, "interval", p.interval, "timeout", p.timeout)
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if p.probeOnce(ctx) {
			// Something may have been left behind: sweep before the next
			// probe, which is the only one in flight.
			if _, err := p.sweep(ctx); err != nil && ctx.Err() == nil {
				p.log.Warn("listing probe ConfigMaps to clean up", "namespace", p.namespace, "err", err)
			}
		}
	}
}

// sweepUntilDone deletes leftovers, retrying with backoff until it works or
// ctx ends, and returns the LIST's resourceVersion for the watch.
func (p *Probe) sweepUntilDone(ctx context.Context) (string, bool) {
	backoff := source.NewBackoff(source.ListRetryMin, source.RetryMax)
	for {
		rv, err := p.sweep(ctx)
		if err == nil {
			return rv, true
		}
		if ctx.Err() != nil {
			return "", false
		}
		d := backoff.Next()
		p.log.Error("canary probe cannot list its ConfigMaps; retrying", "namespace", p.namespace, "err", err, "retryIn", d)
		if !source.Wait(ctx, d) {
			return "", false
		}
	}
}

// sweep deletes every probe ConfigMap that no probe of this agent waits for
// (at start: every one, left by an earlier run) and returns the LIST's
// resourceVersion.
func (p *Probe) sweep(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	list, err := p.list(ctx)
	if err != nil {
		return "", err
	}
	for _, cm := range list.Items {
		if p.tracked(cm.GetName()) {
			continue
		}
		uid := cm.GetUID()
		err := p.client.Delete(ctx, cm.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		switch {
		case err == nil:
			p.log.Info("deleted a leftover probe ConfigMap", "namespace", p.namespace, "configmap", cm.GetName(), "created", cm.GetCreationTimestamp().Time)
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		default:
			p.metrics.errors.WithLabelValues("delete").Inc()
			p.log.Warn("deleting a leftover probe ConfigMap", "namespace", p.namespace, "configmap", cm.GetName(), "err", err)
		}
	}
	return list.GetResourceVersion(), nil
}

// probeOnce runs one probe: create, wait for ADDED, delete, wait for
// DELETED. It reports whether a ConfigMap may have been left behind.
func (p *Probe) probeOnce(ctx context.Context) (leftover bool) {
	name := probeNamePrefix + rand.String(10)
	f := p.track(name)
	defer p.untrack(name)

	cm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "ConfigMap",
		"data":       map[string]any{"purpose": "krm-agent stream-delay canary; deleted within seconds"},
	}}
	cm.SetName(name)
	cm.SetLabels(Labels)
	// Calls are not cut short when ctx ends, only bounded by the timeout:
	// a create abandoned mid-flight could land after the clean-up.
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
	created, err := p.client.Create(callCtx, cm, metav1.CreateOptions{})
	createdAt := time.Now()
	cancel()
	if err != nil {
		p.metrics.errors.WithLabelValues("create").Inc()
		p.log.Warn("canary probe could not create its ConfigMap", "namespace", p.namespace, "configmap", name, "err", err)
		// A create that timed out may still land: sweep before the next
		// probe too.
		p.cleanUp(ctx, name, nil)
		return true
	}
	uid := created.GetUID()
	if ctx.Err() != nil {
		return p.cleanUp(ctx, name, &uid)
	}

	if !p.await(ctx, f.added, delay.Added, name, createdAt) {
		// The watch did not deliver it: remove the object without
		// waiting for a DELETED that would most likely be late too.
		return p.cleanUp(ctx, name, &uid)
	}

	callCtx, cancel = context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
	err = p.client.Delete(callCtx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	deletedAt := time.Now()
	cancel()
	switch {
	case err == nil:
	case apierrors.IsNotFound(err):
		// Someone else deleted it (another agent's start-up sweep): the
		// DELETED event is not the answer to a call of ours.
		p.log.Info("canary probe ConfigMap was deleted by someone else; not measuring this DELETED", "namespace", p.namespace, "configmap", name)
		return false
	default:
		p.metrics.errors.WithLabelValues("delete").Inc()
		p.log.Warn("canary probe could not delete its ConfigMap", "namespace", p.namespace, "configmap", name, "err", err)
		return p.cleanUp(ctx, name, &uid)
	}
	p.await(ctx, f.deleted, delay.Deleted, name, deletedAt)
	return false
}

// await waits up to the timeout for the event of type event on ConfigMap
// name, whose call got its response at respondedAt, and records the delay
// or counts the timeout. It reports whether the event came.
func (p *Probe) await(ctx context.Context, ch <-chan receipt, event, name string, respondedAt time.Time) bool {
	timer := time.NewTimer(p.timeout)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case r := <-ch:
		p.delay.Record(delay.Sample{
			Cluster: p.cluster, Resource: Resource, Namespace: p.namespace, Event: event,
			// Both readings carry the monotonic clock.
			Delay: r.at.Sub(respondedAt), ResourceVersion: r.rv, At: r.at,
		})
		return true
	case <-timer.C:
		p.metrics.timeouts.WithLabelValues(event).Inc()
		p.log.Warn("canary probe event did not arrive in time", "event", event, "namespace", p.namespace,
			"configmap", name, "timeout", p.timeout)
		return false
	}
}

// cleanUp deletes a probe ConfigMap outside the probe's normal course: after
// a timeout, a failed call, or when ctx ended. It works even when ctx is
// done, so stopping the agent leaves nothing behind. uid nil means the create
// may or may not have happened. It reports whether the ConfigMap may still
// exist.
func (p *Probe) cleanUp(ctx context.Context, name string, uid *types.UID) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
	defer cancel()
	opts := metav1.DeleteOptions{}
	if uid != nil {
		opts.Preconditions = &metav1.Preconditions{UID: uid}
	}
	err := p.client.Delete(ctx, name, opts)
	if err == nil || apierrors.IsNotFound(err) {
		return false
	}
	p.metrics.errors.WithLabelValues("delete").Inc()
	p.log.Warn("canary probe could not delete its ConfigMap; it will be swept later", "namespace", p.namespace, "configmap", name, "err", err)
	return true
}

// watch keeps the probe's watch open from rv until ctx is done, resuming
// after it ends and starting again from a fresh LIST after 410 Gone. Events
// missed meanwhile make probes time out, which is what they are for.
func (p *Probe) watch(ctx context.Context, rv string) {
	backoff := source.NewBackoff(source.WatchRetryMin, source.RetryMax)
	for ctx.Err() == nil {
		next, err := p.watchOnce(ctx, rv)
		if ctx.Err() != nil {
			return
		}
		rv = next
		if err == nil {
			backoff.Reset()
			continue
		}
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			p.log.Info("probe watch expired (410 Gone); listing again", "namespace", p.namespace)
			if fresh, err := p.currentVersion(ctx); err == nil {
				rv = fresh
				continue
			}
		}
		p.metrics.errors.WithLabelValues("watch").Inc()
		d := backoff.Next()
		p.log.Warn("probe watch failed; resuming", "namespace", p.namespace, "err", err, "backoff", d)
		if !source.Wait(ctx, d) {
			return
		}
	}
}

// watchOnce runs one watch from rv and returns the resourceVersion to resume
// from.
func (p *Probe) watchOnce(ctx context.Context, rv string) (string, error) {
	timeout := int64((5*time.Minute + time.Duration(rand.Intn(30))*time.Second).Seconds())
	w, err := p.client.Watch(ctx, metav1.ListOptions{
		LabelSelector: p.selector, ResourceVersion: rv, AllowWatchBookmarks: true, TimeoutSeconds: &timeout,
	})
	if err != nil {
		return rv, fmt.Errorf("watching probe configmaps in %s: %w", p.namespace, err)
	}
	defer w.Stop()
	p.markReady()
	for {
		var ev watch.Event
		var ok bool
		select {
		case <-ctx.Done():
			return rv, nil
		case ev, ok = <-w.ResultChan():
		}
		at := time.Now()
		if !ok {
			return rv, nil
		}
		if ev.Type == watch.Error {
			return rv, apierrors.FromObject(ev.Object)
		}
		obj, isObj := ev.Object.(*unstructured.Unstructured)
		if !isObj {
			continue
		}
		rv = obj.GetResourceVersion()
		if ev.Type != watch.Added && ev.Type != watch.Deleted {
			continue
		}
		p.mu.Lock()
		f := p.pending[obj.GetName()]
		p.mu.Unlock()
		if f == nil {
			continue
		}
		v, _ := store.ParseResourceVersion(rv)
		ch := f.added
		if ev.Type == watch.Deleted {
			ch = f.deleted
		}
		select {
		case ch <- receipt{at: at, rv: v}:
		default:
		}
	}
}

// currentVersion returns the current resourceVersion of the probe's
// ConfigMaps, for a watch to start from after 410 Gone.
func (p *Probe) currentVersion(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	list, err := p.list(ctx)
	if err != nil {
		return "", err
	}
	return list.GetResourceVersion(), nil
}

// list LISTs the probe's ConfigMaps, counting a failure.
func (p *Probe) list(ctx context.Context) (*unstructured.UnstructuredList, error) {
	list, err := p.client.List(ctx, metav1.ListOptions{LabelSelector: p.selector})
	if err != nil {
		p.metrics.errors.WithLabelValues("list").Inc()
		return nil, fmt.Errorf("listing probe configmaps in %s: %w", p.namespace, err)
	}
	return list, nil
}

func (p *Probe) markReady() { p.readyOnce.Do(func() { close(p.ready) }) }

func (p *Probe) track(name string) *inflight {
	f := &inflight{added: make(chan receipt, 1), deleted: make(chan receipt, 1)}
	p.mu.Lock()
	p.pending[name] = f
	p.mu.Unlock()
	return f
}

func (p *Probe) untrack(name string) {
	p.mu.Lock()
	delete(p.pending, name)
	p.mu.Unlock()
}

func (p *Probe) tracked(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pending[name] != nil
}

// Config is what the probe needs.
type Config struct {
	// Namespace is where it creates its ConfigMaps; Interval is the time
	// between probes; Timeout how long it waits for each event (zero:
	// DefaultTimeout).
	Namespace string
	Interval  time.Duration
	Timeout   time.Duration
	// Cluster names the cluster in its samples, recorded into Delay.
	Cluster  string
	Delay    *delay.Recorder
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// New builds the probe of c and registers its metrics.
func New(c Config, dyn dynamic.Interface) (*Probe, error) {
	switch {
	case c.Delay == nil:
		return nil, ErrNeedsDelay
	case c.Namespace == "":
		return nil, errors.New("the canary probe needs a namespace (Config.ProbeNamespace)")
	case c.Interval <= 0:
		return nil, fmt.Errorf("the canary probe's interval must be positive, got %s", c.Interval)
	}
	m, err := newProbeMetrics(c.Registry)
	if err != nil {
		return nil, err
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Probe{
		client:    dyn.Resource(configMapsResource).Namespace(c.Namespace),
		namespace: c.Namespace,
		interval:  c.Interval,
		timeout:   timeout,
		selector:  labels.SelectorFromSet(Labels).String(),
		cluster:   c.Cluster,
		delay:     c.Delay,
		log:       log.With("component", "probe"),
		metrics:   m,
		pending:   map[string]*inflight{},
		ready:     make(chan struct{}),
	}, nil
}

// ErrNeedsDelay: the probe's samples need a recorder.
var ErrNeedsDelay = errors.New("the canary probe needs a delay recorder (Config.Delay) to record its samples")
