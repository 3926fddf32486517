// Package agent is krm's cache. For each watched resource it runs a streamer
// (one watch: fast, may miss events), a verifier (a paginated LIST every
// interval: complete, older) and an aggregator (the LIST plus the newer
// events, with the drift each LIST exposes). The HTTP API reads it through
// the api.Backend interface.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/krm-project/krm/pkg/agent/aggregate"
	"github.com/krm-project/krm/pkg/agent/persist"
	"github.com/krm-project/krm/pkg/agent/probe"
	"github.com/krm-project/krm/pkg/agent/source"
	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/delay"
	"github.com/krm-project/krm/pkg/render"
	"github.com/krm-project/krm/pkg/store"
)

// How the verifier reads a collection (Config.VerifyWith).
const (
	// VerifyList: a paginated LIST (limit=500 and continue).
	VerifyList = "list"
	// VerifyWatchList: a watch with sendInitialEvents=true that ends at
	// the initial-events-end bookmark, from kube-apiserver's watch cache.
	VerifyWatchList = "watchlist"
)

// Config is everything the agent needs; Complete turns it into an Agent.
type Config struct {
	RESTConfig *rest.Config
	// Resources are names as kubectl accepts them; default DefaultResources.
	Resources []string
	// VerifyInterval is the time between LISTs (plus up to 10% jitter).
	VerifyInterval time.Duration
	// VerifyWith is how the verifier reads each collection: VerifyList
	// (paginated LISTs, the default) or VerifyWatchList.
	VerifyWith string
	// Namespace and LabelSelector restrict what is cached; empty means all.
	Namespace     string
	LabelSelector string
	ClusterName   string
	Store         store.Store
	Registry      prometheus.Registerer
	Logger        *slog.Logger
	// Delay records the stream delay of fresh events; nil measures none.
	Delay *delay.Recorder
	// ProbeInterval, when positive, runs the canary probe: every interval
	// it creates and deletes a ConfigMap in ProbeNamespace and records, as
	// resource "probe", how long after each call's response its own watch
	// saw the event. It needs Delay, and create, delete, list and watch on
	// configmaps in ProbeNamespace (a namespaced Role is enough).
	ProbeInterval  time.Duration
	ProbeNamespace string
	// ProbeTimeout is how long the probe waits for each event before it
	// counts a timeout; default probe.DefaultTimeout.
	ProbeTimeout time.Duration
	// LeaderElection, when set, makes this agent one replica of several
	// sharing Store, which must be Redis: see LeaderElection.
	LeaderElection *LeaderElection
	// Now is the clock; default time.Now.
	Now func() time.Time

	// HistoryRetention is how long each object's revisions are kept (0:
	// no history); HistoryMaxBytes bounds them, split evenly between the
	// resources (see history.Log.Bytes). With the Redis store history is
	// written through to it and a restarted agent keeps it.
	HistoryRetention time.Duration
	HistoryMaxBytes  int64

	// ClusterUID is the UID of the cluster's kube-system namespace (see
	// ClusterUID): stored frames are keyed by it and a warm start refuses
	// frames written for another. "" identifies the cluster by its name.
	ClusterUID string

	// WatchStallTimeout is how long a watch may deliver nothing, not even
	// a bookmark, before it is restarted; 0 is DefaultWatchStallTimeout.
	WatchStallTimeout time.Duration
}

// Agent runs one runner per resource and serves them to the API.
type Agent struct {
	runners   []*runner
	byName    map[string]*runner
	store     store.Store
	storeKind string
	cluster   string
	log       *slog.Logger
	// persist writes frames and events to the store and tracks its health.
	persist *persist.Writer
	// reader loads the stored frames at start (a warm restart) and, while
	// this replica does not lead, follows the leader's.
	reader *persist.Reader
	// election is the leader election, nil when off.
	election *election
	// probe is the canary probe; nil when off.
	probe *probe.Probe
	// version is the cluster's, as its /version said at start.
	version *version.Info

	// clusterUID and keyCluster identify the cluster in the store: see
	// Config.ClusterUID and store.Header.KeyCluster.
	clusterUID, keyCluster string
}

var _ api.Backend = (*Agent)(nil)

// Complete validates the configuration and resolves the resources through
// discovery. An unknown resource name is an error listing close matches.
func (c Config) Complete() (*Agent, error) {
	if c.RESTConfig == nil {
		return nil, errors.New("no Kubernetes client configuration")
	}
	switch c.VerifyWith {
	case "":
		c.VerifyWith = VerifyList
	case VerifyList, VerifyWatchList:
	default:
		return nil, fmt.Errorf("verify with %q: want %q or %q", c.VerifyWith, VerifyList, VerifyWatchList)
	}
	if c.VerifyInterval <= 0 {
		return nil, fmt.Errorf("verify interval must be positive, got %s", c.VerifyInterval)
	}
	if len(c.Resources) == 0 {
		c.Resources = DefaultResources
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Store == nil {
		c.Store = store.NewMemory()
	}
	if c.WatchStallTimeout < 0 {
		return nil, fmt.Errorf("watch stall timeout must not be negative, got %s", c.WatchStallTimeout)
	}
	if c.ProbeInterval < 0 {
		return nil, fmt.Errorf("probe interval must not be negative, got %s", c.ProbeInterval)
	}
	if c.ProbeInterval > 0 {
		if c.Delay == nil {
			return nil, probe.ErrNeedsDelay
		}
		if c.ProbeNamespace == "" {
			return nil, errors.New("the canary probe needs a namespace (Config.ProbeNamespace)")
		}
	}
	if c.LabelSelector != "" {
		if _, err := labels.Parse(c.LabelSelector); err != nil {
			return nil, fmt.Errorf("invalid label selector %q: %w", c.LabelSelector, err)
		}
	}
	dc, err := discovery.NewDiscoveryClientForConfig(c.RESTConfig)
	if err != nil {
		return nil, err
	}
	keyCluster := (&store.Header{Cluster: c.ClusterName, ClusterUID: c.ClusterUID}).KeyCluster()
	dyn, err := dynamic.NewForConfig(c.RESTConfig)
	if err != nil {
		return nil, err
	}
	// The API server's version first: if it does not answer, the agent
	// starts from what the last run resolved and stored, so it serves the
	// frames Redis holds instead of exiting; each resource's LIST then
	// retries until the API server is back. If it answers, discovery's
	// errors are real ones (an unknown resource name).
	var res []resolved
	clusterVersion, err := dc.ServerVersion()
	if err != nil {
		var serr error
		if clusterVersion, res, serr = rememberedDiscovery(c.Store, keyCluster, c.Resources); serr != nil {
			return nil, fmt.Errorf("asking the API server for its version: %w (and no stored discovery to start from: %v)", err, serr)
		}
		c.Logger.Warn("the API server does not answer: starting from the resources the last run discovered, serving the frames the store holds until LISTs succeed", "err", err)
	} else {
		if res, err = resolveResources(dc, c.Resources); err != nil {
			return nil, err
		}
		printerColumns(dyn, res, c.Logger)
		rememberDiscovery(c.Store, keyCluster, c.Resources, clusterVersion, res, c.Logger)
	}
	m, err := newMetrics(c.Registry)
	if err != nil {
		return nil, err
	}
	a := &Agent{byName: map[string]*runner{}, store: c.Store, storeKind: storeKind(c.Store), cluster: c.ClusterName, log: c.Logger, version: clusterVersion}
	a.clusterUID = c.ClusterUID
	a.keyCluster = keyCluster
	sm, err := persist.NewMetrics(c.Registry)
	if err != nil {
		return nil, err
	}
	a.persist = persist.NewWriter(c.Store, a.storeKind, a.keyCluster, c.Logger, sm)
	a.persist.ClusterUID = c.ClusterUID
	a.reader = persist.NewReader(a.persist, c.ClusterName)
	if c.LeaderElection != nil {
		if !a.reader.CanFollow() {
			return nil, fmt.Errorf("leader election needs a store replicas share (redis), not %s", a.storeKind)
		}
		if a.election, err = newElection(*c.LeaderElection, c.RESTConfig, a); err != nil {
			return nil, err
		}
		a.persist.Follow()
	}
	if c.ProbeInterval > 0 {
		if a.probe, err = probe.New(probe.Config{
			Namespace: c.ProbeNamespace, Interval: c.ProbeInterval, Timeout: c.ProbeTimeout,
			Cluster: c.ClusterName, Delay: c.Delay, Logger: c.Logger, Registry: c.Registry,
		}, dyn); err != nil {
			return nil, err
		}
	}
	rc, err := source.NewRESTClient(c.RESTConfig)
	if err != nil {
		return nil, err
	}
	for _, r := range res {
		namespace := ""
		if r.info.Namespaced {
			namespace = c.Namespace
		}
		// A kind krm prints neither with a ported printer nor with a CRD's
		// printer columns is listed as kube-apiserver's Tables, whose cells
		// krm serves.
		tables := !render.HasPrinter(schema.GroupKind{Group: r.info.Group, Kind: r.info.Kind}) && len(r.info.PrinterColumns) == 0
		client := source.NewAPI(rc, r.gvr, namespace, tables)
		run := &runner{
			info:       r.info,
			client:     client,
			selector:   metav1.ListOptions{LabelSelector: c.LabelSelector},
			interval:   c.VerifyInterval,
			watchList:  c.VerifyWith == VerifyWatchList,
			agg:        aggregate.New(c.ClusterName, r.info.Name, c.Now),
			rows:       newRowBuilder(r.info.Kind, c.Now),
			writer:     a.persist,
			metrics:    m,
			log:        c.Logger,
			relist:     make(chan struct{}, 1),
			listed:     make(chan struct{}, 1),
			delay:      c.Delay,
			cluster:    c.ClusterName,
			stallAfter: c.WatchStallTimeout,
		}
		run.agg.OnDrift = run.driftFound
		run.hist = newHistory(c, a.keyCluster, r.info.Name, len(res))
		a.runners = append(a.runners, run)
		a.persist.Add(run)
		for _, n := range r.info.Names() {
			if _, taken := a.byName[n]; !taken {
				a.byName[n] = run
			}
		}
	}
	return a, nil
}

// storeKind names a store for status.
func storeKind(s store.Store) string {
	switch s.(type) {
	case *store.Memory:
		return "memory"
	case *store.Redis:
		return "redis"
	}
	return fmt.Sprintf("%T", s)
}

// Start loads any frames the store kept (a warm restart), then runs every
// resource until ctx is done. With leader election it follows the leader
// through the store until it leads, and returns an error if it stops leading
// while ctx is still running.
func (a *Agent) Start(ctx context.Context) error {
	a.reader.WarmAll(ctx)
	parent := ctx
	base, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { _ = a.persist.Start(base) })
	// With leader election, ctx is the leadership's: it ends when this
	// replica stops leading.
	ctx, err := a.awaitLeadership(base)
	if err != nil || ctx.Err() != nil {
		stop()
		wg.Wait()
		return err
	}
	for _, r := range a.runners {
		wg.Go(func() { _ = r.Start(ctx) })
		wg.Go(func() { r.runHistory(ctx) })
	}
	if a.election != nil {
		changed := make(chan struct{}, 1)
		for _, r := range a.runners {
			r.agg.SetStreamChanged(changed)
		}
		wg.Go(func() { a.reader.PublishStreamStates(ctx, changed) })
	}
	if a.probe != nil {
		wg.Go(func() { _ = a.probe.Start(ctx) })
	}
	a.log.Info("agent started", "resources", len(a.runners), "cluster", a.cluster)
	<-ctx.Done()
	stop()
	wg.Wait()
	return a.leadershipEnded(parent)
}

// ClusterVersion is the cluster's version, which the agent's /version
// answers.
func (a *Agent) ClusterVersion() *version.Info { return a.version }

// Resources implements api.Backend.
func (a *Agent) Resources() api.ResourceList {
	out := make([]api.ResourceStatus, 0, len(a.runners))
	for _, r := range a.runners {
		out = append(out, r.Status())
	}
	role, leader := a.election.status()
	return api.ResourceList{Cluster: a.cluster, Store: a.storeStatus(), Role: role, Leader: leader, Resources: out}
}

// storeStatus reports the store's health: degraded from a failed write or
// check until the store answers and every frame is written again.
func (a *Agent) storeStatus() api.StoreStatus {
	return a.persist.Status()
}

// Resource implements api.Backend.
func (a *Agent) Resource(name string) (api.Resource, bool) {
	r, ok := a.byName[strings.ToLower(name)]
	return r, ok
}

// Ready implements api.Backend: ready once every resource has a verified
// frame. A frame loaded from the store on a warm restart counts: the agent
// serves it (stale) until its first LIST. Ready then says so, and says when
// the store is degraded, but both are still ready.
//
// Readiness is per resource: the agent is Ready once every resource either
// has data to serve or has failed a LIST, so that one resource it may not
// read (RBAC, a removed API) does not hide the rest, nor the status that
// says what is wrong. A resource without data answers its reads 503 with
// the reason; /readyz names it.
func (a *Agent) Ready() (bool, string) {
	var waiting, failing []string
	for _, r := range a.runners {
		serving, listErr := r.agg.Readiness()
		switch {
		case serving:
		case listErr == "":
			waiting = append(waiting, r.info.Name)
		default:
			failing = append(failing, r.info.Name+" ("+listErr+")")
		}
	}
	if len(waiting) > 0 {
		sort.Strings(waiting)
		return false, fmt.Sprintf("waiting for the first LIST of %s", strings.Join(waiting, ", "))
	}
	detail := a.readyDetail()
	if len(failing) > 0 {
		sort.Strings(failing)
		cannot := fmt.Sprintf("serving %d of %d resources; cannot list %s", len(a.runners)-len(failing), len(a.runners), strings.Join(failing, "; "))
		if detail != "" {
			cannot += "; " + detail
		}
		detail = cannot
	}
	return true, detail
}
