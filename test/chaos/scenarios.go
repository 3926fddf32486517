package chaos

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/krm-project/krm/pkg/agent"
	"github.com/krm-project/krm/pkg/store"
)

// Scenarios is every fault of issue 12, in the order the report lists
// them: faults between the agent and kube-apiserver first, process kills
// last.
func Scenarios() []Scenario {
	return []Scenario{
		dropScenario(0.01, false),
		dropScenario(0.05, true),
		dropScenario(0.20, false),
		{
			Name: "watch-cut-5s", Fault: "every watch cut every 5 s for the fault's duration", Short: true,
			Inject: func(ctx context.Context, r *Run) error {
				return r.every(ctx, 5*time.Second, func() { r.Proxy.Cut() })
			},
		},
		{
			Name: "watch-stall", Fault: "the open watches held open, silent (no events, no bookmarks), never released", Short: true,
			Setup: Setup{ShortStall: true},
			Inject: func(ctx context.Context, r *Run) error {
				n := r.Proxy.StallOpen()
				if n == 0 {
					return errors.New("no open watch to stall")
				}
				r.ConvergeFrom = time.Now()
				r.Note("stalled %d watches; converged counts from the stall's start: the watchdog (--watch-stall-timeout %s) must restart them", n, r.env.Opts.StallTimeout)
				// Changes made after the stall began are what the agent
				// must catch up with.
				return sleep(ctx, time.Second)
			},
			After: func(ctx context.Context, r *Run) error {
				return r.counted(ctx, "krm_watch_restarts_total", `reason="stalled"`, "watches restarted as stalled")
			},
		},
		{
			Name: "410-gone", Fault: "every 10 s: watches cut, and each resumes to 410 Gone (Expired), as after a compaction", Short: true,
			Inject: func(ctx context.Context, r *Run) error {
				return r.every(ctx, 10*time.Second, func() { r.Proxy.Gone(len(watched)); r.Proxy.Cut() })
			},
			After: func(ctx context.Context, r *Run) error {
				return r.counted(ctx, "krm_watch_restarts_total", `reason="gone"`, "watches restarted after 410 Gone")
			},
		},
		{
			Name: "rbac-list-revoked", Fault: "the agent's ServiceAccount loses list on pods and deployments for the RBAC duration, then gets it back",
			Setup: Setup{ServiceAccount: true},
			Inject: func(ctx context.Context, r *Run) error {
				if err := r.setListAllowed(ctx, false); err != nil {
					return err
				}
				r.Note("list revoked for %s", r.env.Opts.RBACRevoked)
				if err := sleep(ctx, r.env.Opts.RBACRevoked); err != nil {
					return err
				}
				return r.setListAllowed(ctx, true)
			},
			After: func(ctx context.Context, r *Run) error {
				return r.counted(ctx, "krm_lists_total", `result="error"`, "LISTs refused")
			},
		},
		{
			Name: "stream-ahead", Fault: "Redis's event streams start with an ID 2^40, ahead of the cluster's resourceVersions (an etcd restore); leader and follower",
			Setup:  Setup{Store: "redis", Replicas: 2},
			Before: streamAhead,
			Inject: func(ctx context.Context, r *Run) error { return sleep(ctx, r.env.Opts.Fault) },
			After: func(ctx context.Context, r *Run) error {
				return r.counted(ctx, "krm_store_event_stream_resets_total", "", "event streams reset")
			},
		},
		{
			Name: "redis-killed", Fault: "Redis killed -9, down for the fault's duration, restarted empty; leader and follower",
			Setup: Setup{Store: "redis", Replicas: 2},
			Inject: func(ctx context.Context, r *Run) error {
				srv := r.redis.servers[0]
				srv.kill()
				if err := sleep(ctx, r.env.Opts.Fault); err != nil {
					return err
				}
				return srv.start()
			},
		},
		{
			Name: "redis-flushed", Fault: "FLUSHALL on Redis under a leader and a follower",
			Setup: Setup{Store: "redis", Replicas: 2},
			Inject: func(ctx context.Context, r *Run) error {
				if _, err := r.redis.servers[0].command(ctx, "FLUSHALL"); err != nil {
					return err
				}
				// The churn goes on into the empty Redis.
				return sleep(ctx, r.env.Opts.Fault)
			},
		},
		{
			Name: "redis-corrupt-frame", Fault: "each verified frame's first chunk overwritten with garbage, then the agent killed -9 and restarted",
			Setup:  Setup{Store: "redis"},
			Inject: corruptFrames,
		},
		{
			Name: "redis-cluster-failover", Fault: "the Redis Cluster master holding the pods' keys (of 3, each with a replica) killed -9; its replica takes over; leader and follower",
			Setup: Setup{Store: "redis-cluster", Replicas: 2},
			Inject: func(ctx context.Context, r *Run) error {
				m, err := r.podsMaster(ctx)
				if err != nil {
					return err
				}
				r.Note("killed the master %s, which holds the pods' keys", m.Addr)
				m.kill()
				if err := sleep(ctx, 5*time.Second); err != nil {
					return err
				}
				return r.redis.waitClusterOK(ctx, time.Minute)
			},
		},
		{
			Name: "agent-killed", Fault: "the agent killed -9 under churn and restarted (Redis store)", Short: true,
			Setup: Setup{Store: "redis"},
			Inject: func(ctx context.Context, r *Run) error {
				r.ConvergeFrom = time.Now()
				r.Agents[0].Kill()
				_, err := r.StartAgent(ctx, r.Agents[0].Name)
				return err
			},
		},
		{
			Name: "ha-leader-killed", Fault: "the HA leader killed -9 (lease 6 s); the follower takes over",
			Setup: Setup{Store: "redis", Replicas: 2},
			Inject: func(ctx context.Context, r *Run) error {
				l, err := r.Leader(ctx)
				if err != nil {
					return err
				}
				r.Note("killed %s, the leader", l.Name)
				r.ConvergeFrom = time.Now()
				l.Kill()
				// Changes made after the kill reach the follower only once
				// it leads.
				return sleep(ctx, time.Second)
			},
			After: func(ctx context.Context, r *Run) error {
				l, err := r.Leader(ctx)
				if err != nil {
					return err
				}
				r.Note("%s leads", l.Name)
				return nil
			},
		},
		{
			Name: "apiserver-killed", Fault: "kube-apiserver killed -9, down for the fault's duration, restarted", Process: true,
			Inject: func(ctx context.Context, r *Run) error {
				s := r.env.State
				if err := s.Kill("kube-apiserver"); err != nil {
					return err
				}
				if err := sleep(ctx, r.env.Opts.Fault); err != nil {
					return err
				}
				return s.StartAgain(ctx, "kube-apiserver")
			},
		},
		{
			Name: "apiserver-down-at-start", Fault: "the agent killed -9, then started while kube-apiserver is down, with frames in Redis", Process: true,
			Setup:  Setup{Store: "redis"},
			Inject: apiserverDownAtStart,
		},
	}
}

func dropScenario(rate float64, short bool) Scenario {
	return Scenario{
		Name: fmt.Sprintf("drop-%gpct", rate*100), Fault: fmt.Sprintf("%g %% of watch events dropped at random for the fault's duration", rate*100), Short: short,
		Inject: func(ctx context.Context, r *Run) error {
			r.Proxy.DropRate(rate)
			err := sleep(ctx, r.env.Opts.Fault)
			r.Proxy.DropRate(0)
			r.Note("dropped %d events", len(r.Proxy.Dropped()))
			return err
		},
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// every calls f every period for the fault's duration.
func (r *Run) every(ctx context.Context, period time.Duration, f func()) error {
	end := time.Now().Add(r.env.Opts.Fault)
	for time.Now().Before(end) {
		f()
		if err := sleep(ctx, min(period, time.Until(end))); err != nil {
			return err
		}
	}
	return nil
}

// counted checks that the agents' metric (summed over the series whose
// labels contain match) is positive, and notes it.
func (r *Run) counted(ctx context.Context, metric, match, what string) error {
	total := 0.0
	for _, a := range r.Agents {
		if v, err := a.Metric(ctx, metric, match); err == nil {
			total += v
		}
	}
	if total == 0 {
		return fmt.Errorf("no agent counts %s (%s{%s})", what, metric, match)
	}
	r.Note("%s: %g (%s)", what, total, metric)
	return nil
}

// serviceAccount creates the ServiceAccount the agents run as, a
// ClusterRole of the scenario's own bound to it, and returns a
// configuration with a TokenRequest token for it.
func (r *Run) serviceAccount(ctx context.Context) (*rest.Config, error) {
	cs := r.env.cs
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "krm-chaos"}}
	if _, err := cs.CoreV1().ServiceAccounts(r.NS).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	r.role = "krm-chaos-" + r.NS
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: r.role}, Rules: agentRules(true)}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: r.role},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: r.role},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "krm-chaos", Namespace: r.NS}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	hour := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(r.NS).CreateToken(ctx, "krm-chaos",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &hour}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("TokenRequest for krm-chaos: %w", err)
	}
	cfg := rest.AnonymousClientConfig(r.env.cfg)
	cfg.BearerToken = tr.Status.Token
	return cfg, nil
}

// agentRules is what the agent needs here: read pods and deployments
// (list only when list is true), and kube-system for the cluster's
// identity.
func agentRules(list bool) []rbacv1.PolicyRule {
	verbs := []string{"get", "watch"}
	if list {
		verbs = append(verbs, "list")
	}
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: verbs},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: verbs},
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, ResourceNames: []string{agent.IdentityNamespace}, Verbs: []string{"get"}},
	}
}

func (r *Run) setListAllowed(ctx context.Context, list bool) error {
	role, err := r.env.cs.RbacV1().ClusterRoles().Get(ctx, r.role, metav1.GetOptions{})
	if err != nil {
		return err
	}
	role.Rules = agentRules(list)
	_, err = r.env.cs.RbacV1().ClusterRoles().Update(ctx, role, metav1.UpdateOptions{})
	return err
}

// keyCluster is how the agents key this cluster in Redis.
func (r *Run) keyCluster(ctx context.Context) (string, error) {
	uid, err := agent.ClusterUID(ctx, r.env.cfg)
	if err != nil {
		return "", err
	}
	return (&store.Header{Cluster: r.Cluster, ClusterUID: uid}).KeyCluster(), nil
}

// podsMaster is the Redis Cluster master that holds the pods' frames and
// events.
func (r *Run) podsMaster(ctx context.Context) (*redisServer, error) {
	kc, err := r.keyCluster(ctx)
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, srv := range r.redis.servers {
		addrs = append(addrs, srv.Addr)
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer cc.Close()
	m, err := cc.MasterForKey(ctx, store.EventsKey(kc, "pods"))
	if err != nil {
		return nil, err
	}
	for _, srv := range r.redis.servers {
		if srv.Addr == m.Options().Addr {
			return srv, nil
		}
	}
	return nil, fmt.Errorf("no server of the scenario is %s", m.Options().Addr)
}

// streamAhead puts an event with an ID far ahead of the cluster's
// resourceVersions at the head of each resource's stream, as an etcd
// restore leaves them.
func streamAhead(ctx context.Context, r *Run) error {
	kc, err := r.keyCluster(ctx)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: r.redis.servers[0].Addr})
	defer rdb.Close()
	st := store.NewRedis(rdb, store.RedisOptions{})
	const future = 1 << 40
	for _, w := range watched {
		row := &store.Row{UID: "from-before-the-restore", Namespace: r.NS, Name: "from-before-the-restore", ResourceVersion: future, Source: store.Streamed, Object: []byte(`{}`)}
		if _, err := st.AppendEvents(ctx, []store.Event{{Cluster: kc, Resource: w.name, Type: "ADDED", Row: row}}); err != nil {
			return err
		}
	}
	r.Note("streams start at ID %d", int64(future))
	return nil
}

// corruptFrames overwrites the first chunk of each resource's verified
// frame, then kills the agent and starts it again, so that its warm start
// reads them.
func corruptFrames(ctx context.Context, r *Run) error {
	kc, err := r.keyCluster(ctx)
	if err != nil {
		return err
	}
	srv := r.redis.servers[0]
	for _, w := range watched {
		head := store.HeadKey(kc, w.name, store.Verified)
		gen, err := srv.command(ctx, "HGET", head, "gen")
		if err != nil || gen == "" {
			return fmt.Errorf("no verified frame of %s in Redis (%s): %v", w.name, head, err)
		}
		if _, err := srv.command(ctx, "HSET", head+":"+gen, "0", "not a chunk"); err != nil {
			return err
		}
	}
	r.ConvergeFrom = time.Now()
	r.Agents[0].Kill()
	_, err = r.StartAgent(ctx, r.Agents[0].Name)
	return err
}

// apiserverDownAtStart kills the agent, then kube-apiserver, starts the
// agent again (it must serve Redis's frames) and, after the fault's
// duration, kube-apiserver.
func apiserverDownAtStart(ctx context.Context, r *Run) error {
	s := r.env.State
	a := r.Agents[0]
	r.ConvergeFrom = time.Now()
	a.Kill()
	if err := s.Kill("kube-apiserver"); err != nil {
		return err
	}
	if _, err := r.StartAgent(ctx, a.Name); err != nil {
		return fmt.Errorf("the agent does not start while kube-apiserver is down: %w", err)
	}
	if err := sleep(ctx, r.env.Opts.Fault/2); err != nil {
		return err
	}
	if c := a.Client(); c != nil {
		if _, _, err := agentView(ctx, c, r.NS, "pods"); err != nil {
			r.Note("while kube-apiserver was down the restarted agent answered: %v", err)
		} else {
			r.Note("while kube-apiserver was down the restarted agent served Redis's frames")
		}
	}
	if err := sleep(ctx, r.env.Opts.Fault/2); err != nil {
		return err
	}
	return s.StartAgain(ctx, "kube-apiserver")
}
