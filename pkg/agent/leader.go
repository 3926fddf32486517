package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderElection makes the agent one replica of several behind one Redis
// store. The replica holding the Lease leads: it watches, LISTs and writes
// frames and events to the store. The others follow: they serve the frames
// and events the leader wrote, read from the store as they land, and take
// the Lease over when the leader stops renewing it.
type LeaderElection struct {
	// Namespace and Name are the Lease's.
	Namespace string
	Name      string
	// Identity names this replica in the Lease; it must be unique.
	Identity string
	// LeaseDuration is how long followers wait after the last renewal
	// before taking over; RenewDeadline how long the leader keeps trying to
	// renew before it stops leading; RetryPeriod the time between tries.
	// Defaults 15s, 10s and 2s.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// ReleaseOnCancel gives the Lease up when the agent stops, so that a
	// follower takes over at once instead of after LeaseDuration.
	ReleaseOnCancel bool
}

// Roles in status.
const (
	roleLeader   = "leader"
	roleFollower = "follower"
)

// errLostLeadership ends an agent that stopped leading while still asked
// to run: its views were a leader's, and a restart follows the new one.
var errLostLeadership = errors.New("lost the leader Lease")

// election is a LeaderElection in progress.
type election struct {
	elector *leaderelection.LeaderElector
	cfg     LeaderElection
	leading chan context.Context
	// ran is closed when the elector stops, after it released the Lease;
	// followed when the followers stopped.
	ran, followed chan struct{}

	mu     sync.Mutex
	role   string
	leader string
}

func newElection(le LeaderElection, rc *rest.Config, a *Agent) (*election, error) {
	if le.Namespace == "" || le.Name == "" || le.Identity == "" {
		return nil, errors.New("leader election needs the Lease's namespace and name and this replica's identity")
	}
	if le.LeaseDuration == 0 {
		le.LeaseDuration = 15 * time.Second
	}
	if le.RenewDeadline == 0 {
		le.RenewDeadline = 10 * time.Second
	}
	if le.RetryPeriod == 0 {
		le.RetryPeriod = 2 * time.Second
	}
	client, err := coordinationv1client.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	e := &election{cfg: le, role: roleFollower, leading: make(chan context.Context, 1), ran: make(chan struct{})}
	e.elector, err = leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: le.Namespace, Name: le.Name},
			Client:     client,
			LockConfig: resourcelock.ResourceLockConfig{Identity: le.Identity},
		},
		LeaseDuration:   le.LeaseDuration,
		RenewDeadline:   le.RenewDeadline,
		RetryPeriod:     le.RetryPeriod,
		ReleaseOnCancel: le.ReleaseOnCancel,
		Name:            le.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) { e.leading <- ctx },
			OnStoppedLeading: func() {},
			OnNewLeader: func(id string) {
				e.mu.Lock()
				e.leader = id
				e.mu.Unlock()
				a.log.Info("leader elected", "lease", le.Namespace+"/"+le.Name, "leader", id, "self", id == le.Identity)
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("leader election: %w", err)
	}
	return e, nil
}

// status returns the replica's role and the leader's identity; "" for both
// without leader election.
func (e *election) status() (role, leader string) {
	if e == nil {
		return "", ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.role, e.leader
}

// awaitLeadership returns at once, with ctx, without leader election.
// With it, the agent follows the leader through the store until it wins the
// Lease, and returns a context that ends when it stops leading.
func (a *Agent) awaitLeadership(ctx context.Context) (context.Context, error) {
	e := a.election
	if e == nil {
		return ctx, nil
	}
	go func() {
		defer close(e.ran)
		e.elector.Run(ctx)
	}()
	fctx, stop := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		a.reader.Follow(fctx)
	}()
	a.log.Info("following the leader through the store until this replica wins the Lease", "lease", e.cfg.Namespace+"/"+e.cfg.Name, "identity", e.cfg.Identity)
	var lead context.Context
	select {
	case lead = <-e.leading:
	case <-ctx.Done():
		stop()
		<-followed
		return ctx, nil
	}
	// A follower may still be waiting on Redis: leading does not wait for
	// it, it only stops it from changing anything.
	a.reader.StopFollowing()
	stop()
	e.followed = followed
	e.mu.Lock()
	e.role = roleLeader
	e.mu.Unlock()
	a.persist.Lead()
	a.log.Info("leading: watching, verifying and writing to the store", "identity", e.cfg.Identity)
	return lead, nil
}

// leadershipEnded waits for the elector to stop (and release the Lease) and
// says whether the agent lost the Lease while parent still runs.
func (a *Agent) leadershipEnded(parent context.Context) error {
	if a.election == nil {
		return nil
	}
	<-a.election.ran
	<-a.election.followed
	if parent.Err() == nil {
		return fmt.Errorf("%w %s/%s; exiting so that a restart follows the new leader", errLostLeadership, a.election.cfg.Namespace, a.election.cfg.Name)
	}
	return nil
}
