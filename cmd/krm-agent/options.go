package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/krm-project/krm/pkg/agent"
	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/store"
	"github.com/krm-project/krm/pkg/version"
)

// Options are the agent's flags.
type Options struct {
	Kubeconfig     string
	Context        string
	Resources      []string
	VerifyInterval time.Duration
	Listen         string
	Store          string
	Namespace      string
	LabelSelector  string
	ClusterName    string
	LogFormat      string
	LogLevel       string
}

// NewCommand builds the krm-agent command.
func NewCommand() *cobra.Command {
	o := &Options{
		Resources:      agent.DefaultResources,
		VerifyInterval: 60 * time.Second,
		Listen:         "127.0.0.1:8080",
		Store:          "memory",
		LogFormat:      "text",
		LogLevel:       "info",
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
	f := cmd.Flags()
	f.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Path to a kubeconfig. Without it: the in-cluster config, then the default kubeconfig rules (KUBECONFIG, ~/.kube/config).")
	f.StringVar(&o.Context, "context", o.Context, "The kubeconfig context to use.")
	f.StringSliceVar(&o.Resources, "resources", o.Resources, "Resources to watch: plural, singular or short names, kinds, or plural.group, including CRDs.")
	f.DurationVar(&o.VerifyInterval, "verify-interval", o.VerifyInterval, "Time between verifying LISTs of each resource (plus up to 10% jitter).")
	f.StringVar(&o.Listen, "listen", o.Listen, "Address the HTTP API listens on. The default is reachable only through a port-forward.")
	f.StringVar(&o.Store, "store", o.Store, "Where frames are kept: memory.")
	f.StringVarP(&o.Namespace, "namespace", "n", o.Namespace, "Cache only this namespace (namespaced resources). Default: all namespaces.")
	f.StringVarP(&o.LabelSelector, "label-selector", "l", o.LabelSelector, "Cache only objects matching this label selector.")
	f.StringVar(&o.ClusterName, "cluster-name", o.ClusterName, "Name of the cluster in frames and status. Default: the kubeconfig's cluster name, or \"in-cluster\".")
	f.StringVar(&o.LogFormat, "log-format", o.LogFormat, "Log format: text or json.")
	f.StringVar(&o.LogLevel, "log-level", o.LogLevel, "Log level: debug, info, warn or error.")
	return cmd
}

// Validate checks the flags before anything connects.
func (o *Options) Validate() error {
	if o.VerifyInterval < time.Second {
		return fmt.Errorf("--verify-interval must be at least 1s, got %s", o.VerifyInterval)
	}
	if _, _, err := net.SplitHostPort(o.Listen); err != nil {
		return fmt.Errorf("--listen %q: want host:port, e.g. 127.0.0.1:8080: %w", o.Listen, err)
	}
	if o.Store != "memory" {
		return fmt.Errorf("--store %q is not supported: use memory", o.Store)
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
	return nil
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

// Run starts the agent and its HTTP server and blocks until ctx is done,
// then shuts both down.
func (o *Options) Run(ctx context.Context) error {
	log := o.logger()
	klog.SetSlogLogger(log)
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

	a, err := agent.Config{
		RESTConfig:     cfg,
		Resources:      o.Resources,
		VerifyInterval: o.VerifyInterval,
		Namespace:      o.Namespace,
		LabelSelector:  o.LabelSelector,
		ClusterName:    clusterName,
		Store:          store.NewMemory(),
		Registry:       reg,
		Logger:         log,
	}.Complete()
	if err != nil {
		return err
	}
	srv := api.NewServer(a, api.ServerOptions{AgentVersion: version.Version, Registry: reg, Gatherer: reg, Logger: log})
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", o.Listen, err)
	}
	httpSrv := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	log.Info("serving the krm API", "address", ln.Addr().String(), "version", version.Version, "cluster", clusterName)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Start(ctx) }()
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		cancel()
		<-agentDone
		return fmt.Errorf("serving the krm API: %w", err)
	}
	log.Info("shutting down")
	shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer stop()
	_ = httpSrv.Shutdown(shutdownCtx)
	return <-agentDone
}
