// Package cluster runs a real, local Kubernetes control plane for krm's
// integration and e2e tests: etcd, kube-apiserver (RBAC on, certificates made
// here), kube-controller-manager, kube-scheduler and kwok for fake nodes that
// run pods, plus Redis and InfluxDB. Everything listens on 127.0.0.1 on free
// ports. Binaries are built from Go modules once and cached outside the repo,
// keyed by version.
//
// # Running a process "inside" a pod
//
// Pods on kwok nodes have no containers. To make a pod's port reach a real
// process, start the process on 127.0.0.1 and create a kwok PortForward object
// with the pod's name and namespace (see [State.ForwardPodPort]):
//
//	spec:
//	  forwards:
//	  - ports: [8080]          # the pod's port
//	    target: {address: 127.0.0.1, port: 41234}   # the local process
//
// kubectl port-forward and client-go's portforward package then reach the
// process through kube-apiserver and kwok's kubelet server, as they would a
// container.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	serviceCIDR = "10.96.0.0/16"
	serviceIP   = "10.96.0.1"
	podCIDR     = "10.244.0.0/16"

	stateFile = "state.json"
	envFile   = "env"

	// WatchCacheless is a resource kube-apiserver serves without its watch
	// cache, straight from etcd, so that a watch resumed from a compacted
	// resourceVersion reliably gets 410 Gone.
	WatchCacheless = "configmaps"

	// NodeAnnotation marks the nodes kwok manages.
	NodeAnnotation = "kwok.x-k8s.io/node"

	// ServiceAccountIssuer is kube-apiserver's --service-account-issuer,
	// the iss of its ServiceAccount tokens and, with no --api-audiences,
	// their one audience.
	ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
)

// ServiceAccountSigningKey is the PEM file of the RSA key (PKCS #1) that
// kube-apiserver signs ServiceAccount tokens with: tests sign tokens of
// their own with it, such as an expired one, which TokenRequest cannot make.
func (s *State) ServiceAccountSigningKey() string {
	return filepath.Join(s.Dir, "pki", "sa.key")
}

// Config says where the cluster lives and how big it is.
type Config struct {
	// Cache holds built binaries, keyed by version. Default: $KRM_CACHE, else
	// $HOME/.cache/krm.
	Cache string
	// Dir holds the running cluster's state. Default: <Cache>/cluster.
	Dir string
	// Nodes is how many kwok nodes to create. Default 3.
	Nodes int
	// Log receives progress messages. Default: io.Discard.
	Log io.Writer
}

// DefaultConfig reads KRM_CACHE and KRM_CLUSTER_DIR from the environment.
func DefaultConfig() Config {
	c := Config{Cache: os.Getenv("KRM_CACHE"), Dir: os.Getenv("KRM_CLUSTER_DIR")}
	c.complete()
	return c
}

func (c *Config) complete() {
	if c.Cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		c.Cache = filepath.Join(home, ".cache", "krm")
	}
	if c.Dir == "" {
		c.Dir = filepath.Join(c.Cache, "cluster")
	}
	if c.Nodes == 0 {
		c.Nodes = 3
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// State describes a running cluster. It is written to <Dir>/state.json.
type State struct {
	Dir        string         `json:"dir"`
	Kubeconfig string         `json:"kubeconfig"`
	EnvFile    string         `json:"envFile"`
	Server     string         `json:"server"`
	RedisURL   string         `json:"redisURL"`
	InfluxURL  string         `json:"influxURL"`
	Kubectl    string         `json:"kubectl"`
	Nodes      []string       `json:"nodes"`
	Ports      map[string]int `json:"ports"`
	Processes  []*Process     `json:"processes"`
	// Attached are processes started later for the cluster's users (the
	// demo's agent and Redis, see StartAttached). Down stops them first;
	// Running does not wait for them.
	Attached []*Process `json:"attached,omitempty"`
}

// Load reads the state of the cluster in dir, if one was started there.
func Load(dir string) (*State, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, stateFile), err)
	}
	return &s, nil
}

// Running reports whether every process of the cluster is alive and the
// API server answers /readyz.
func (s *State) Running(ctx context.Context) error {
	for _, p := range s.Processes {
		if !p.Alive() {
			return fmt.Errorf("%s (pid %d) is not running; its log is %s", p.Name, p.PID, p.Log)
		}
	}
	cs, err := s.Clientset()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
		return fmt.Errorf("kube-apiserver at %s is not ready: %w", s.Server, err)
	}
	return nil
}

// Up starts a cluster in cfg.Dir, or returns the one already running there.
// A half-started or dead cluster found there is stopped and replaced.
func Up(ctx context.Context, cfg Config) (*State, error) {
	cfg.complete()
	if s, err := Load(cfg.Dir); err == nil {
		if err := s.Running(ctx); err == nil {
			fmt.Fprintf(cfg.Log, "cluster already running in %s\n", cfg.Dir)
			return s, nil
		} else {
			fmt.Fprintf(cfg.Log, "replacing the cluster in %s: %v\n", cfg.Dir, err)
		}
	}
	if err := Down(cfg); err != nil {
		return nil, err
	}
	bins, err := EnsureBinaries(ctx, cfg.Cache, cfg.Log)
	if err != nil {
		return nil, err
	}
	l := &launch{cfg: cfg, bins: bins, started: time.Now()}
	s, err := l.run(ctx)
	if err != nil {
		// Leave nothing behind: a failed start stops what it started, but
		// keeps the logs for the error message the caller prints.
		for i := len(l.state.Processes) - 1; i >= 0; i-- {
			_ = l.state.Processes[i].Stop(2 * time.Second)
		}
		_ = os.Remove(filepath.Join(cfg.Dir, stateFile))
		return nil, err
	}
	return s, nil
}

// Down stops exactly the processes recorded in cfg.Dir's state file, in
// reverse start order (SIGTERM, then SIGKILL after a grace period), and
// removes the cluster directory.
func Down(cfg Config) error {
	cfg.complete()
	s, err := Load(cfg.Dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if s != nil {
		var errs []error
		procs := append(append([]*Process(nil), s.Processes...), s.Attached...)
		for i := len(procs) - 1; i >= 0; i-- {
			p := procs[i]
			grace := 5 * time.Second
			if p.Name == "kube-apiserver" {
				// It has ignored SIGTERM for a long time while clients drain;
				// the cluster is being thrown away, so do not wait for that.
				grace = 3 * time.Second
			}
			if err := p.Stop(grace); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(cfg.Dir); err != nil {
		return fmt.Errorf("removing %s: %w", cfg.Dir, err)
	}
	return nil
}

// StartAttached starts binary detached, with its output in
// <Dir>/logs/<name>.log, and records it in the state file so that it runs
// until Down stops it with the cluster. A process attached earlier under the
// same name is stopped first.
func (s *State) StartAttached(name, binary string, args, env []string) (*Process, error) {
	kept := s.Attached[:0]
	for _, p := range s.Attached {
		if p.Name != name {
			kept = append(kept, p)
			continue
		}
		if err := p.Stop(5 * time.Second); err != nil {
			return nil, err
		}
	}
	s.Attached = kept
	p, err := start(s.Dir, name, binary, args, env)
	if err != nil {
		return nil, err
	}
	s.Attached = append(s.Attached, p)
	return p, s.save()
}

// StopAttached stops every attached process.
func (s *State) StopAttached() error {
	for len(s.Attached) > 0 {
		p := s.Attached[len(s.Attached)-1]
		if err := p.Stop(5 * time.Second); err != nil {
			return err
		}
		s.Attached = s.Attached[:len(s.Attached)-1]
	}
	return s.save()
}

func (s *State) save() error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.Dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.Dir, stateFile))
}

// writeEnv writes the sourceable env file.
func (s *State) writeEnv() error {
	var b strings.Builder
	fmt.Fprintf(&b, "# krm local cluster: source this file.\n")
	fmt.Fprintf(&b, "export KUBECONFIG=%s\n", shellQuote(s.Kubeconfig))
	fmt.Fprintf(&b, "export KRM_REDIS_URL=%s\n", shellQuote(s.RedisURL))
	fmt.Fprintf(&b, "export KRM_INFLUX_URL=%s\n", shellQuote(s.InfluxURL))
	fmt.Fprintf(&b, "export KRM_CLUSTER_DIR=%s\n", shellQuote(s.Dir))
	fmt.Fprintf(&b, "export PATH=%s:\"$PATH\"\n", shellQuote(filepath.Dir(s.Kubectl)))
	return os.WriteFile(s.EnvFile, []byte(b.String()), 0o644)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
