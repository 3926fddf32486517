package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/krm-project/krm/pkg/agent"
	"github.com/krm-project/krm/pkg/delay"
	"github.com/krm-project/krm/pkg/history"
	"github.com/krm-project/krm/pkg/server"
	"github.com/krm-project/krm/pkg/store"
	"github.com/krm-project/krm/pkg/version"
)

// Options are the agent's flags.
type Options struct {
	Kubeconfig     string
	Context        string
	Resources      []string
	VerifyInterval time.Duration
	VerifyWith     string
	Listen         string
	HealthListen   string
	MaxWatches     int
	Store          string
	Namespace      string
	LabelSelector  string
	ClusterName    string
	LogFormat      string
	LogLevel       string

	InfluxURL        string
	InfluxToken      string
	InfluxOrg        string
	InfluxBucket     string
	InfluxCreateUser bool

	ProbeInterval  time.Duration
	ProbeNamespace string

	History           time.Duration
	HistoryMaxBytes   string
	WatchStallTimeout time.Duration

	Redis  RedisOptions
	Leader LeaderOptions
	Secure SecureOptions
}

// minProbeInterval keeps the canary probe from becoming a load test.
const minProbeInterval = 100 * time.Millisecond

// Where the agent learns its own namespace, the canary probe's default: the
// downward API variable first, then the service account's mount.
const (
	podNamespaceEnv  = "POD_NAMESPACE"
	namespaceFile    = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
	defaultNamespace = "default"
)

// probeNamespace returns --probe-namespace, or the agent's own namespace.
func (o *Options) probeNamespace(getenv func(string) string, readFile func(string) ([]byte, error)) string {
	return ownNamespace(o.ProbeNamespace, getenv, readFile)
}

// influxTokenEnv holds the InfluxDB token when --influx-token is not given,
// so it stays out of the process list.
const influxTokenEnv = "KRM_INFLUX_TOKEN"

// NewCommand builds the krm-agent command.
func NewCommand() *cobra.Command {
	o := &Options{
		Resources:         agent.DefaultResources,
		VerifyInterval:    60 * time.Second,
		VerifyWith:        agent.VerifyList,
		History:           history.DefaultRetention,
		Listen:            "127.0.0.1:8080",
		MaxWatches:        server.DefaultMaxWatches,
		Store:             "memory",
		LogFormat:         "text",
		LogLevel:          "info",
		InfluxBucket:      "krm",
		WatchStallTimeout: agent.DefaultWatchStallTimeout,
		Leader:            LeaderOptions{LeaseName: "krm-agent", LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second},
	}
	cmd := &cobra.Command{
		Use:   "krm-agent",
		Short: "Cache a cluster's resources and serve them over krm's HTTP API",
		Long: `krm-agent watches resources (one watch each), verifies them with a paginated
LIST every --verify-interval, and serves the aggregated state, the verified
state and the drift between them over HTTP under /api/v1/.`,
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	// cobra adds --version (and -v) because Version is set; it prints this
	// and exits before RunE, so it needs no kubeconfig.
	cmd.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	f := cmd.Flags()
	f.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Path to a kubeconfig. Without it: the in-cluster config, then the default kubeconfig rules (KUBECONFIG, ~/.kube/config).")
	f.StringVar(&o.Context, "context", o.Context, "The kubeconfig context to use.")
	f.StringSliceVar(&o.Resources, "resources", o.Resources, "Resources to watch: plural, singular or short names, kinds, or plural.group, including CRDs.")
	f.DurationVar(&o.VerifyInterval, "verify-interval", o.VerifyInterval, "Time between verifying LISTs of each resource (plus up to 10% jitter).")
	f.StringVar(&o.VerifyWith, "verify-with", o.VerifyWith, "How the verifier reads each collection: list (paginated LISTs of 500) or watchlist (a watch with sendInitialEvents=true, served from kube-apiserver's watch cache; with a server that has no WatchList it falls back to LISTs). See docs/benchmarks.md for what each costs.")
	f.DurationVar(&o.History, "history", o.History, "How long every revision of every object is kept, for `kubectl krm history`, `get --at` and Exact-resourceVersion LISTs; 0 keeps none. With --store=redis it survives a restart.")
	f.StringVar(&o.HistoryMaxBytes, "history-max-bytes", o.HistoryMaxBytes, "Bytes history may take beyond the objects' current state, split evenly between the resources (e.g. 512Mi); past it the oldest revisions go first. Default: "+resource.NewQuantity(history.DefaultMaxBytes, resource.BinarySI).String()+".")
	f.StringVar(&o.Listen, "listen", o.Listen, "Address the HTTP API listens on. The default is reachable only through a port-forward.")
	f.StringVar(&o.HealthListen, "health-listen", o.HealthListen, "Address of a second listener that serves only /healthz, /readyz and /metrics, for kubelet's probes and Prometheus (the manifests: :8081). Default: none; the API listener serves them too.")
	f.IntVar(&o.MaxWatches, "max-watches", o.MaxWatches, "Watches served at once; beyond them a watch gets 429 with Retry-After, which clients back off on. Each holds at most a 4,096-change channel and a 64 KiB write buffer.")
	f.StringVar(&o.Store, "store", o.Store, "Where frames are kept: memory, or redis (see --redis-url, --redis-addrs) so that a restarted agent serves at once.")
	f.StringVarP(&o.Namespace, "namespace", "n", o.Namespace, "Cache only this namespace (namespaced resources). Default: all namespaces.")
	f.StringVarP(&o.LabelSelector, "label-selector", "l", o.LabelSelector, "Cache only objects matching this label selector.")
	f.StringVar(&o.ClusterName, "cluster-name", o.ClusterName, "Name of the cluster in frames and status. Default: the kubeconfig's cluster name, or \"in-cluster\".")
	f.StringVar(&o.LogFormat, "log-format", o.LogFormat, "Log format: text or json.")
	f.StringVar(&o.LogLevel, "log-level", o.LogLevel, "Log level: debug, info, warn or error.")
	f.StringVar(&o.InfluxURL, "influx-url", o.InfluxURL, "InfluxDB base URL to write stream-delay samples to (v2 write API; InfluxDB 1.8+ or 2.x). Default: keep them in memory only.")
	f.StringVar(&o.InfluxToken, "influx-token", o.InfluxToken, "InfluxDB token (2.x) or user:password (1.8). Default: $"+influxTokenEnv+".")
	f.StringVar(&o.InfluxOrg, "influx-org", o.InfluxOrg, "InfluxDB organization (2.x; ignored by 1.8).")
	f.StringVar(&o.InfluxBucket, "influx-bucket", o.InfluxBucket, "InfluxDB bucket (2.x) or database[/retention-policy] (1.8).")
	f.BoolVar(&o.InfluxCreateUser, "influx-create-user", o.InfluxCreateUser, "On an InfluxDB 1.8 with authentication and no admin user yet, create the token's user:password as its admin, and the database, before writing (the influxdb component's setup). Off: only write.")
	f.DurationVar(&o.ProbeInterval, "probe-interval", o.ProbeInterval, "Run the canary probe every interval (0: off): create and delete a small ConfigMap in --probe-namespace and record, as resource \"probe\", how long after each call's response the agent's own watch sees it, to sub-millisecond precision. Needs a namespaced Role there: create, delete, list and watch on configmaps.")
	f.StringVar(&o.ProbeNamespace, "probe-namespace", o.ProbeNamespace, "Namespace of the canary probe's ConfigMaps. Default: the agent's own namespace ($POD_NAMESPACE, then the service account's namespace file), else \"default\".")
	f.DurationVar(&o.WatchStallTimeout, "watch-stall-timeout", o.WatchStallTimeout, "Restart a watch that delivers nothing, not even a bookmark, for this long. kube-apiserver sends a bookmark about every minute, so keep it well above that; fault tests shorten it.")
	o.Redis.addFlags(cmd)
	o.Leader.addFlags(cmd)
	o.Secure.addFlags(cmd)
	// The agent's image has no shell to complete in.
	cmd.CompletionOptions.DisableDefaultCmd = true
	cmd.AddCommand(newEnsureSecretCommand(&EnsureSecretOptions{}))
	return cmd
}

// Validate checks the flags before anything connects.
func (o *Options) Validate() error {
	switch o.VerifyWith {
	case "", agent.VerifyList, agent.VerifyWatchList:
	default:
		return fmt.Errorf("--verify-with must be %s or %s, got %q", agent.VerifyList, agent.VerifyWatchList, o.VerifyWith)
	}
	if o.History < 0 {
		return fmt.Errorf("--history must not be negative, got %s; 0 turns history off", o.History)
	}
	if _, err := o.historyMaxBytes(); err != nil {
		return err
	}
	if o.VerifyInterval < time.Second {
		return fmt.Errorf("--verify-interval must be at least 1s, got %s", o.VerifyInterval)
	}
	if o.MaxWatches < 0 {
		return fmt.Errorf("--max-watches %d: want a positive number (0 means the default, %d)", o.MaxWatches, server.DefaultMaxWatches)
	}
	if o.HealthListen != "" {
		if _, _, err := net.SplitHostPort(o.HealthListen); err != nil {
			return fmt.Errorf("--health-listen %q: want host:port, e.g. :8081: %w", o.HealthListen, err)
		}
	}
	if _, _, err := net.SplitHostPort(o.Listen); err != nil {
		return fmt.Errorf("--listen %q: want host:port, e.g. 127.0.0.1:8080: %w", o.Listen, err)
	}
	if err := o.Secure.validate(); err != nil {
		return err
	}
	switch o.Store {
	case "memory":
		if o.Redis.set() {
			return errors.New("the --redis-* flags need --store=redis")
		}
	case "redis":
		if err := o.Redis.validate(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("--store %q is not supported: use memory or redis", o.Store)
	}
	if err := o.Leader.validate(o.Store); err != nil {
		return err
	}
	if o.LogFormat != "text" && o.LogFormat != "json" {
		return fmt.Errorf("--log-format %q: use text or json", o.LogFormat)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return fmt.Errorf("--log-level %q: use debug, info, warn or error", o.LogLevel)
	}
	if len(o.Resources) == 0 {
		return errors.New("--resources is empty: name at least one resource")
	}
	if o.WatchStallTimeout < 0 || (o.WatchStallTimeout > 0 && o.WatchStallTimeout < time.Second) {
		return fmt.Errorf("--watch-stall-timeout must be at least 1s (0: the default, %s), got %s", agent.DefaultWatchStallTimeout, o.WatchStallTimeout)
	}
	if o.ProbeInterval != 0 && o.ProbeInterval < minProbeInterval {
		return fmt.Errorf("--probe-interval must be 0 (off) or at least %s, got %s", minProbeInterval, o.ProbeInterval)
	}
	if o.InfluxURL != "" {
		u, err := url.Parse(o.InfluxURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--influx-url %q: want http(s)://host:port", o.InfluxURL)
		}
		if o.InfluxBucket == "" {
			return errors.New("--influx-bucket is empty: name the bucket (or 1.8 database) to write to")
		}
	}
	return nil
}

// delay builds the stream-delay recorder and the source the API reads it
// from; with --influx-url, also the InfluxDB writer the caller must start.
func (o *Options) delay(reg prometheus.Registerer, log *slog.Logger, cluster string) (*delay.Recorder, *delay.Source, *delay.InfluxWriter, error) {
	window := delay.NewWindow(delay.DefaultWindowSize)
	src := &delay.Source{Window: window}
	var writer *delay.InfluxWriter
	if o.InfluxURL != "" {
		token := o.InfluxToken
		if token == "" {
			token = os.Getenv(influxTokenEnv)
		}
		cfg := delay.InfluxConfig{URL: o.InfluxURL, Token: token, Org: o.InfluxOrg, Bucket: o.InfluxBucket, CreateUser: o.InfluxCreateUser}
		var err error
		if writer, err = delay.NewInfluxWriter(cfg, log, reg); err != nil {
			return nil, nil, nil, fmt.Errorf("--influx-url: %w", err)
		}
		if src.Influx, err = delay.NewInfluxReader(cfg, cluster); err != nil {
			return nil, nil, nil, fmt.Errorf("--influx-url: %w", err)
		}
	}
	rec, err := delay.NewRecorder(delay.RecorderOptions{Window: window, Registerer: reg, Influx: writer})
	if err != nil {
		return nil, nil, nil, err
	}
	return rec, src, writer, nil
}

func (o *Options) logger() *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(o.LogLevel))
	hopts := &slog.HandlerOptions{Level: lvl}
	if o.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, hopts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, hopts))
}

// restConfig follows the flag's documented order: --kubeconfig, then
// in-cluster, then the default loading rules.
func (o *Options) restConfig() (*rest.Config, string, error) {
	if o.Kubeconfig == "" && o.Context == "" {
		if cfg, err := rest.InClusterConfig(); err == nil {
			return cfg, "in-cluster", nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.Kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.Context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("loading the Kubernetes client configuration: %w", err)
	}
	name := "default"
	if raw, err := cc.RawConfig(); err == nil {
		ctxName := o.Context
		if ctxName == "" {
			ctxName = raw.CurrentContext
		}
		if c, ok := raw.Contexts[ctxName]; ok && c.Cluster != "" {
			name = c.Cluster
		}
	}
	return cfg, name, nil
}

// identityTimeout bounds reading the cluster's identity: an API server that
// does not answer must not hold up the start.
const identityTimeout = 10 * time.Second

// clusterIdentities is what clusterUID needs from the store
// (store.Redis): the kube-system UID each cluster name had last time.
type clusterIdentities interface {
	RememberClusterUID(ctx context.Context, name, uid string) error
	RememberedClusterUID(ctx context.Context, name string) (string, error)
}

// clusterUID reads the kube-system namespace's UID, under which the store
// keeps this cluster's frames, and records it in the store. Without get on
// namespaces/kube-system the agent says so and identifies the cluster by
// its name: a rebuilt cluster of the same name would then find the old
// one's frames. When kube-apiserver does not answer, it uses the UID the
// store recorded for the name, so a warm start still finds its frames; the
// first LIST replaces them if the cluster was rebuilt meanwhile.
func (o *Options) clusterUID(ctx context.Context, cfg *rest.Config, name string, st store.Store, log *slog.Logger) string {
	if o.Store != "redis" {
		return "" // nothing outlives the process to tell apart
	}
	ids, _ := st.(clusterIdentities)
	ctx, cancel := context.WithTimeout(ctx, identityTimeout)
	defer cancel()
	uid, err := agent.ClusterUID(ctx, cfg)
	switch {
	case err == nil:
		log.Info("cluster identity", "cluster", name, "kubeSystemUID", uid)
		if ids != nil {
			if err := ids.RememberClusterUID(ctx, name, uid); err != nil {
				log.Debug("could not record the cluster's identity in the store", "err", err)
			}
		}
		return uid
	case apierrors.IsForbidden(err) || apierrors.IsNotFound(err) || ids == nil:
		log.Warn("cannot read the cluster's identity; keying stored frames by the cluster's name, so a rebuilt cluster of the same name would read the old one's frames. Grant get on namespaces/"+agent.IdentityNamespace+" to fix this",
			"cluster", name, "err", err)
		return ""
	}
	remembered, rerr := ids.RememberedClusterUID(ctx, name)
	if rerr != nil || remembered == "" {
		log.Warn("cannot read the cluster's identity, nor find the one recorded last time; keying stored frames by the cluster's name",
			"cluster", name, "err", err, "storeErr", rerr)
		return ""
	}
	log.Warn("cannot read the cluster's identity; using the one recorded for this cluster name last time, unverified",
		"cluster", name, "kubeSystemUID", remembered, "err", err)
	return remembered
}

// Run starts the agent and its HTTP server and blocks until ctx is done,
// then shuts both down.
func (o *Options) Run(ctx context.Context) error {
	log := o.logger()
	klog.SetSlogLogger(log)
	if _, err := setMemoryLimit(os.Getenv, log); err != nil {
		return err
	}
	log.Debug("garbage collection", "GOGC", setGCPercent(os.Getenv))
	cfg, clusterName, err := o.restConfig()
	if err != nil {
		return err
	}
	cfg.UserAgent = "krm-agent/" + version.Version
	cfg.QPS, cfg.Burst = 50, 100
	if o.ClusterName != "" {
		clusterName = o.ClusterName
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	rec, delaySource, influx, err := o.delay(reg, log, clusterName)
	if err != nil {
		return err
	}
	historyBytes, err := o.historyMaxBytes()
	if err != nil {
		return err
	}
	st, closeStore, err := o.openStore(os.Getenv, log)
	if err != nil {
		return err
	}
	defer closeStore()
	clusterUID := o.clusterUID(ctx, cfg, clusterName, st, log)
	a, err := agent.Config{
		RESTConfig:        cfg,
		Resources:         o.Resources,
		VerifyInterval:    o.VerifyInterval,
		VerifyWith:        o.VerifyWith,
		HistoryRetention:  o.History,
		HistoryMaxBytes:   historyBytes,
		Namespace:         o.Namespace,
		LabelSelector:     o.LabelSelector,
		ClusterName:       clusterName,
		ClusterUID:        clusterUID,
		Store:             st,
		Registry:          reg,
		Logger:            log,
		Delay:             rec,
		ProbeInterval:     o.ProbeInterval,
		ProbeNamespace:    o.probeNamespace(os.Getenv, os.ReadFile),
		LeaderElection:    o.Leader.config(os.Getenv, os.ReadFile),
		WatchStallTimeout: o.WatchStallTimeout,
	}.Complete()
	if err != nil {
		return err
	}
	srv := server.New(a, server.Options{
		ClusterVersion: a.ClusterVersion(), APIServer: cfg.Host, AgentVersion: version.Version, Delay: delaySource,
		Logger: log, Registry: reg, Gatherer: reg, MaxWatches: o.MaxWatches,
	})
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", o.Listen, err)
	}
	// Shutdown waits for handlers, and an API watch runs until its request
	// ends: the base context is cancelled on shutdown to end them.
	baseCtx, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	httpSrv := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// Idle keep-alive connections are closed: a client that went away
		// without closing must not hold a connection forever.
		IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return baseCtx },
	}
	httpSrv.RegisterOnShutdown(cancelBase)
	log.Info("serving the krm API", "address", ln.Addr().String(), "version", version.Version, "cluster", clusterName)
	var healthSrv *http.Server
	var healthLn net.Listener
	if o.HealthListen != "" {
		if healthLn, err = net.Listen("tcp", o.HealthListen); err != nil {
			ln.Close()
			return fmt.Errorf("listening on %s: %w", o.HealthListen, err)
		}
		healthSrv = &http.Server{Handler: srv.HealthHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
		log.Info("serving health and metrics", "healthAddress", healthLn.Addr().String())
	}

	var secureSrv *http.Server
	var secureLn net.Listener
	if o.Secure.Listen != "" {
		if secureSrv, secureLn, err = o.secureServer(baseCtx, cfg, srv, log); err != nil {
			ln.Close()
			if healthLn != nil {
				healthLn.Close()
			}
			return err
		}
		secureSrv.RegisterOnShutdown(cancelBase)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Start(ctx) }()
	if influx != nil {
		// The writer flushes what it holds once ctx ends; shutdown waits
		// for that below.
		influxDone := make(chan error, 1)
		go func() { influxDone <- influx.Start(ctx) }()
		defer func() { <-influxDone }()
		log.Info("writing stream delay to InfluxDB", "url", o.InfluxURL, "bucket", o.InfluxBucket)
	}
	serveErr := make(chan error, 3)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	if healthSrv != nil {
		go func() { serveErr <- healthSrv.Serve(healthLn) }()
		defer func() {
			shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer stop()
			_ = healthSrv.Shutdown(shutdownCtx)
		}()
	}

	if secureSrv != nil {
		go func() { serveErr <- secureSrv.ServeTLS(secureLn, "", "") }()
		defer func() {
			shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer stop()
			_ = secureSrv.Shutdown(shutdownCtx)
		}()
	}

	var agentErr error
	agentStopped := false
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		cancel()
		<-agentDone
		return fmt.Errorf("serving the krm API: %w", err)
	case agentErr = <-agentDone:
		// The agent stops on its own only when it lost the leader Lease:
		// it must not go on serving a leader's views.
		agentStopped = true
		cancel()
	}
	log.Info("shutting down")
	shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer stop()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		log.Warn("HTTP server did not shut down cleanly", "err", err)
	}
	if agentStopped {
		return agentErr
	}
	return <-agentDone
}

// secureServer is the --secure-listen listener and its server: the API
// behind delegated authentication and authorization, over TLS.
func (o *Options) secureServer(baseCtx context.Context, cfg *rest.Config, srv *server.Server, log *slog.Logger) (*http.Server, net.Listener, error) {
	authn, authz, err := delegatingAuth(cfg)
	if err != nil {
		return nil, nil, err
	}
	tlsCfg, err := o.Secure.tlsConfig(log)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", o.Secure.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("listening on %s: %w", o.Secure.Listen, err)
	}
	hs := secureHTTPServer(baseCtx, srv.SecureHandler(authn, authz), tlsCfg, log)
	log.Info("serving the krm API with authentication and authorization", "secureAddress", ln.Addr().String(),
		"tokenCacheTTL", authnCacheTTL.String(), "allowCacheTTL", authzAllowTTL.String(), "denyCacheTTL", authzDenyTTL.String())
	return hs, ln, nil
}

// secureHTTPServer is the HTTP server of --secure-listen, to be started
// with ServeTLS. Its ReadHeaderTimeout also bounds each TLS handshake, so a
// client that sends half a ClientHello and stalls holds a connection for
// at most that long; a handshake that fails is logged at debug level only,
// since anyone who reaches the port can cause one.
func secureHTTPServer(baseCtx context.Context, h http.Handler, tlsCfg *tls.Config, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// minHistoryBytes keeps --history-max-bytes from a typo such as "64".
const minHistoryBytes = 1 << 20

// historyMaxBytes parses --history-max-bytes; "" is the default.
func (o *Options) historyMaxBytes() (int64, error) {
	if o.HistoryMaxBytes == "" {
		return history.DefaultMaxBytes, nil
	}
	q, err := resource.ParseQuantity(o.HistoryMaxBytes)
	if err != nil {
		return 0, fmt.Errorf("--history-max-bytes %q: want a size such as 512Mi: %w", o.HistoryMaxBytes, err)
	}
	if q.Value() < minHistoryBytes {
		return 0, fmt.Errorf("--history-max-bytes %q: want at least 1Mi", o.HistoryMaxBytes)
	}
	return q.Value(), nil
}
