// Package chaos is krm's fault suite: each scenario runs krm-agent, the
// real binary, against a real local cluster while a workload churns pods
// and deployments, injects one fault (between the agent and kube-apiserver
// through test/watchproxy, or to kube-apiserver, Redis, RBAC or the agent
// itself), and measures how the agent comes back: the time until its
// aggregated view equals kube-apiserver's at the same resourceVersion, the
// errors a reader polling it saw meanwhile, its peak RSS, its goroutines
// after, and the objects it lost. test/cmd/krm-chaos runs every scenario
// and prints the report (make chaos); TestShortFaults runs a few of them
// briefly in make test.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/watchproxy"
)

// Options size a run of the suite.
type Options struct {
	// AgentBin is the krm-agent binary.
	AgentBin string
	// VerifyInterval is the agents' --verify-interval.
	VerifyInterval time.Duration
	// StallTimeout is the agents' --watch-stall-timeout in the stall's
	// scenario.
	StallTimeout time.Duration
	// Fault is how long each timed fault lasts (drops, cuts, 410s, an
	// outage).
	Fault time.Duration
	// RBACRevoked is how long list stays revoked.
	RBACRevoked time.Duration
	// Rate is the workload's changes per second; Pods the most bare pods
	// it keeps.
	Rate float64
	Pods int
	// Log receives progress lines.
	Log io.Writer
}

// Full are make chaos's options.
func Full() Options {
	return Options{VerifyInterval: 20 * time.Second, StallTimeout: 10 * time.Second, Fault: 30 * time.Second,
		RBACRevoked: 10 * time.Minute, Rate: 10, Pods: 40}
}

// Short are make test's options: a few seconds each.
func Short() Options {
	return Options{VerifyInterval: 10 * time.Second, StallTimeout: 5 * time.Second, Fault: 10 * time.Second,
		RBACRevoked: 20 * time.Second, Rate: 5, Pods: 20}
}

// convergeTimeout bounds the wait for an agent to match kube-apiserver
// after a fault: two verifying LISTs and a minute for restarts.
func (o Options) convergeTimeout() time.Duration { return 2*o.VerifyInterval + time.Minute }

// Env is the cluster the suite runs on.
type Env struct {
	State *cluster.State
	Opts  Options
	cfg   *rest.Config
	cs    kubernetes.Interface
	md    metadata.Interface
	dir   string
}

// NewEnv prepares a run on the cluster s; dir holds its files.
func NewEnv(s *cluster.State, o Options, dir string) (*Env, error) {
	cfg, err := s.RESTConfig()
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 200, 400
	cfg.UserAgent = "krm-chaos"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	md, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return &Env{State: s, Opts: o, cfg: cfg, cs: cs, md: md, dir: dir}, nil
}

func (e *Env) progress(format string, args ...any) {
	fmt.Fprintf(e.Opts.Log, "%s krm-chaos: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9-]+`)

// Setup is what a scenario runs its agents with.
type Setup struct {
	// Store: "memory", "redis" (a redis-server of its own) or
	// "redis-cluster" (three masters, three replicas).
	Store string
	// Replicas is how many agents run; more than one elect a leader.
	Replicas int
	// ServiceAccount runs the agents as a ServiceAccount whose ClusterRole
	// the fault edits, instead of as the cluster's admin.
	ServiceAccount bool
	// ShortStall runs the agents with --watch-stall-timeout
	// Options.StallTimeout. Only the stall's scenario does: a quiet watch
	// sees a bookmark about once a minute, so a short timeout restarts
	// healthy watches too.
	ShortStall bool
}

// Scenario is one fault.
type Scenario struct {
	Name string
	// Fault is what the table says was done.
	Fault string
	// Short: part of make test's short form. Process: kills a process of
	// the cluster, so it needs a cluster of its own.
	Short, Process bool
	Setup          Setup
	// Before runs after the namespace and Redis exist, before the agents
	// start (the stream ahead of the cluster).
	Before func(ctx context.Context, r *Run) error
	// Inject does the fault and returns once it is lifted; convergence is
	// timed from then. A fault whose recovery is the agent's own (a stall)
	// returns at once and leaves it in place.
	Inject func(ctx context.Context, r *Run) error
	// After checks, once every agent converged, that the agent recovered
	// the way it should (a metric that counts the recovery).
	After func(ctx context.Context, r *Run) error
}

// Result is one scenario's figures.
type Result struct {
	Name, Fault string
	// Converged: every agent matched kube-apiserver at its own
	// resourceVersion within the bound; ConvergedIn counts from the
	// fault's end.
	Converged   bool
	ConvergedIn time.Duration
	// ReadErrors of ReadRequests: answers other than 200 (and refused
	// connections) from the fault's start until convergence.
	ReadErrors, ReadRequests int64
	PeakRSS                  int64
	// GoroutinesBefore the fault and After convergence, the highest of the
	// scenario's agents.
	GoroutinesBefore, GoroutinesAfter int
	// Lost: objects in a fresh LIST missing from an agent's view once the
	// churn stopped and it settled, or the reverse; Stale: objects at
	// another resourceVersion then.
	Lost, Stale int
	// Changes the workload made, and how many kube-apiserver refused
	// (during an outage).
	Changes, ChangesFailed int64
	Notes                  []string
	Err                    error
}

// Run is one scenario being run.
type Run struct {
	env    *Env
	sc     Scenario
	NS     string
	Proxy  *watchproxy.Proxy
	Agents []*Agent
	redis  *redisSet
	// Cluster is the agents' --cluster-name.
	Cluster    string
	kubeconfig string
	role       string // the ServiceAccount's ClusterRole
	notes      []string
	// ConvergeFrom, when Inject sets it, is when convergence is timed
	// from instead of Inject's return.
	ConvergeFrom time.Time
}

// Note adds a line to the scenario's notes in the report.
func (r *Run) Note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// Env is the run's environment.
func (r *Run) Env() *Env { return r.env }

// RunScenario runs one scenario and cleans up after it.
func (e *Env) RunScenario(ctx context.Context, sc Scenario) (res Result) {
	res = Result{Name: sc.Name, Fault: sc.Fault}
	r := &Run{env: e, sc: sc}
	defer func() {
		if err := r.cleanup(context.WithoutCancel(ctx)); err != nil && res.Err == nil {
			res.Err = err
		}
		res.Notes = append(res.Notes, r.notes...)
	}()
	res.Err = r.run(ctx, &res)
	return res
}

func (r *Run) run(ctx context.Context, res *Result) error {
	e, sc := r.env, r.sc
	e.progress("%s: setting up", sc.Name)
	if err := r.namespace(ctx); err != nil {
		return err
	}
	if sc.Setup.Replicas == 0 {
		sc.Setup.Replicas = 1
	}
	restCfg := e.cfg
	if sc.Setup.ServiceAccount {
		var err error
		if restCfg, err = r.serviceAccount(ctx); err != nil {
			return err
		}
	}
	var err error
	if r.Proxy, err = watchproxy.Start(restCfg, nil); err != nil {
		return err
	}
	r.kubeconfig = filepath.Join(e.dir, r.NS+".kubeconfig")
	if err := r.Proxy.WriteKubeconfig(r.kubeconfig); err != nil {
		return err
	}
	switch sc.Setup.Store {
	case "", "memory":
	case "redis":
		if r.redis, err = startRedis(ctx, filepath.Join(e.dir, r.NS+"-redis"), false); err != nil {
			return err
		}
	case "redis-cluster":
		if r.redis, err = startRedis(ctx, filepath.Join(e.dir, r.NS+"-redis"), true); err != nil {
			return err
		}
	default:
		return fmt.Errorf("scenario %s: unknown store %q", sc.Name, sc.Setup.Store)
	}
	w := &workload{cs: e.cs, ns: r.NS, nodes: e.State.Nodes, maxPods: e.Opts.Pods, rate: e.Opts.Rate}
	if err := w.populate(ctx); err != nil {
		return fmt.Errorf("creating the workload: %w", err)
	}
	if sc.Before != nil {
		if err := sc.Before(ctx, r); err != nil {
			return err
		}
	}
	for i := range sc.Setup.Replicas {
		if _, err := r.StartAgent(ctx, fmt.Sprintf("agent-%d", i)); err != nil {
			return err
		}
	}
	k := &checker{md: e.md, ns: r.NS}
	w.start(ctx)
	defer w.stop()
	if err := r.waitConsistent(ctx, k, e.Opts.convergeTimeout()); err != nil {
		return fmt.Errorf("before the fault: %w", err)
	}
	res.GoroutinesBefore = r.goroutines(ctx)
	rd := &reader{}
	rd.start(ctx, func() []*Agent { return r.Agents }, r.NS)
	defer rd.stop()
	stopRSS := r.sampleRSS(ctx)
	defer stopRSS()

	e.progress("%s: injecting the fault", sc.Name)
	if err := sc.Inject(ctx, r); err != nil {
		return fmt.Errorf("injecting the fault: %w", err)
	}
	lifted := time.Now()
	if !r.ConvergeFrom.IsZero() {
		lifted = r.ConvergeFrom
	}
	e.progress("%s: fault lifted; waiting until every agent matches kube-apiserver", sc.Name)
	if err := r.waitConsistent(ctx, k, e.Opts.convergeTimeout()); err != nil {
		r.Note("not converged: %v", err)
		for _, a := range r.Agents {
			r.Note("%s's last warnings: %s", a.Name, a.warnings(4))
		}
	} else {
		res.Converged, res.ConvergedIn = true, time.Since(lifted)
	}
	if sc.After != nil && res.Converged {
		if err := sc.After(ctx, r); err != nil {
			return err
		}
	}
	rd.stop()
	res.ReadErrors, res.ReadRequests = rd.errors.Load(), rd.requests.Load()
	if res.ReadErrors > 0 {
		r.Note("reader errors: %s", strings.Join(rd.topErrors(2), "; "))
	}

	w.stop()
	res.Changes, res.ChangesFailed = w.ops.Load(), w.failed.Load()
	res.Lost, res.Stale = r.settle(ctx, k)
	res.GoroutinesAfter = r.goroutines(ctx)
	stopRSS()
	for _, a := range r.Agents {
		res.PeakRSS = max(res.PeakRSS, a.PeakRSS())
	}
	e.progress("%s: converged=%v in %s, lost %d", sc.Name, res.Converged, res.ConvergedIn.Round(100*time.Millisecond), res.Lost)
	return nil
}

// waitConsistent waits until every running agent is consistent with
// kube-apiserver, and at least one runs.
func (r *Run) waitConsistent(ctx context.Context, k *checker, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := r.consistent(ctx, k)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (r *Run) consistent(ctx context.Context, k *checker) error {
	running := 0
	for _, a := range r.Agents {
		if !a.Running() {
			continue
		}
		running++
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := k.consistent(cctx, a)
		cancel()
		if err != nil {
			return err
		}
	}
	if running == 0 {
		return errors.New("no agent runs")
	}
	return nil
}

// settle waits, once the churn stopped, until every running agent equals a
// fresh LIST, and counts what differs if none does in time.
func (r *Run) settle(ctx context.Context, k *checker) (lost, stale int) {
	deadline := time.Now().Add(r.env.Opts.convergeTimeout())
	for {
		lost, stale = 0, 0
		var errs []error
		for _, a := range r.Agents {
			if !a.Running() {
				continue
			}
			d, err := k.fresh(ctx, a)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			lost += d.missing + d.extra
			stale += d.stale
		}
		if len(errs) == 0 && lost == 0 && stale == 0 {
			return 0, 0
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if len(errs) > 0 {
				r.Note("after the churn stopped: %v", errors.Join(errs...))
			}
			return lost, stale
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (r *Run) goroutines(ctx context.Context) int {
	n := 0
	for _, a := range r.Agents {
		if !a.Running() {
			continue
		}
		v, err := a.Metric(ctx, "go_goroutines", "")
		if err != nil {
			r.Note("goroutines of %s: %v", a.Name, err)
			continue
		}
		n = max(n, int(v))
	}
	return n
}

func (r *Run) sampleRSS(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			for _, a := range r.Agents {
				a.sampleRSS()
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return func() { cancel(); <-done }
}

// StartAgent starts a new agent of the scenario, or starts the named one
// again with the same flags after a kill.
func (r *Run) StartAgent(ctx context.Context, name string) (*Agent, error) {
	for _, a := range r.Agents {
		if a.Name == name {
			return a, a.start(ctx, r.env.Opts.AgentBin)
		}
	}
	o := r.env.Opts
	args := []string{"--kubeconfig", r.kubeconfig, "--resources", "pods,deployments", "--namespace", r.NS,
		"--verify-interval", o.VerifyInterval.String(),
		"--listen", "127.0.0.1:0", "--log-format", "json", "--cluster-name", r.Cluster}
	if r.sc.Setup.ShortStall {
		args = append(args, "--watch-stall-timeout", o.StallTimeout.String())
	}
	if r.redis != nil {
		args = append(args, "--store", "redis")
		args = append(args, r.redis.agentFlags()...)
	}
	if r.sc.Setup.Replicas > 1 {
		args = append(args, "--leader-elect", "--leader-elect-namespace", r.NS,
			"--leader-elect-lease-duration", "6s", "--leader-elect-renew-deadline", "4s", "--leader-elect-retry-period", "1s")
	}
	a := &Agent{Name: name, args: args, logPath: filepath.Join(r.env.dir, r.NS+"-"+name+".log")}
	r.Agents = append(r.Agents, a)
	return a, a.start(ctx, o.AgentBin)
}

// Leader is the agent that leads, waiting up to 30 s for one.
func (r *Run) Leader(ctx context.Context) (*Agent, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, a := range r.Agents {
			if role, err := a.Role(ctx); err == nil && role == "leader" {
				return a, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, errors.New("no agent says it leads after 30s")
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (r *Run) namespace(ctx context.Context) error {
	name := "chaos-" + strings.Trim(unsafeChars.ReplaceAllString(r.sc.Name, "-"), "-") + "-" + rand.String(4)
	if len(name) > 60 {
		name = name[:60]
	}
	r.Cluster = name
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"krm-chaos": "true"}}}
	if _, err := r.env.cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	r.NS = name
	// kube-controller-manager creates it; after kube-apiserver was killed
	// it may take a while to reconnect.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := r.env.cs.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s has no default ServiceAccount after 2m: %w", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *Run) cleanup(ctx context.Context) error {
	var errs []error
	for _, a := range r.Agents {
		if err := a.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if r.Proxy != nil {
		r.Proxy.Close()
	}
	if r.redis != nil {
		r.redis.stop()
	}
	if r.role != "" {
		if err := r.env.cs.RbacV1().ClusterRoleBindings().Delete(ctx, r.role, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
		if err := r.env.cs.RbacV1().ClusterRoles().Delete(ctx, r.role, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	if r.NS != "" {
		// The namespace controller deletes its pods; nothing waits for it.
		zero := int64(0)
		_ = r.env.cs.CoreV1().Pods(r.NS).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
		if err := r.env.cs.CoreV1().Namespaces().Delete(ctx, r.NS, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	if r.kubeconfig != "" {
		_ = os.Remove(r.kubeconfig)
	}
	return errors.Join(errs...)
}
