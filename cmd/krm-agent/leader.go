package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/krm-project/krm/pkg/agent"
)

// LeaderOptions are the flags of --leader-elect.
type LeaderOptions struct {
	Enabled       bool
	Namespace     string
	LeaseName     string
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

func (o *LeaderOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&o.Enabled, "leader-elect", o.Enabled, "Run as one of several replicas sharing --store=redis: the holder of a Lease watches, verifies and writes Redis; the others serve what it wrote, following its event stream, and take over when it stops renewing the Lease. Needs get, create and update on leases in --leader-elect-namespace.")
	f.StringVar(&o.Namespace, "leader-elect-namespace", o.Namespace, "Namespace of the Lease. Default: the agent's own namespace ($POD_NAMESPACE, then the service account's namespace file), else \"default\".")
	f.StringVar(&o.LeaseName, "leader-elect-lease-name", o.LeaseName, "Name of the Lease.")
	f.DurationVar(&o.LeaseDuration, "leader-elect-lease-duration", o.LeaseDuration, "How long followers wait after the leader's last renewal before one takes over.")
	f.DurationVar(&o.RenewDeadline, "leader-elect-renew-deadline", o.RenewDeadline, "How long the leader tries to renew before it gives up leading (and exits).")
	f.DurationVar(&o.RetryPeriod, "leader-elect-retry-period", o.RetryPeriod, "Time between tries to acquire or renew the Lease.")
}

func (o *LeaderOptions) validate(store string) error {
	if !o.Enabled {
		return nil
	}
	switch {
	case store != "redis":
		return errors.New("--leader-elect needs --store=redis: replicas share their frames through it")
	case o.LeaseName == "":
		return errors.New("--leader-elect-lease-name is empty")
	case o.LeaseDuration <= o.RenewDeadline:
		return fmt.Errorf("--leader-elect-lease-duration (%s) must be longer than --leader-elect-renew-deadline (%s)", o.LeaseDuration, o.RenewDeadline)
	case o.RetryPeriod <= 0 || float64(o.RenewDeadline) <= 1.2*float64(o.RetryPeriod):
		return fmt.Errorf("--leader-elect-renew-deadline (%s) must be longer than 1.2 × --leader-elect-retry-period (%s)", o.RenewDeadline, o.RetryPeriod)
	}
	return nil
}

// config is the agent's leader election, nil when off. The identity is the
// pod's name (the hostname in a pod) and a random suffix, so that a
// restarted replica is a new candidate.
func (o *LeaderOptions) config(getenv func(string) string, readFile func(string) ([]byte, error)) *agent.LeaderElection {
	if !o.Enabled {
		return nil
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "krm-agent"
	}
	return &agent.LeaderElection{
		Namespace:       ownNamespace(o.Namespace, getenv, readFile),
		Name:            o.LeaseName,
		Identity:        host + "_" + rand.String(6),
		LeaseDuration:   o.LeaseDuration,
		RenewDeadline:   o.RenewDeadline,
		RetryPeriod:     o.RetryPeriod,
		ReleaseOnCancel: true,
	}
}

// ownNamespace returns flag, else the agent's own namespace, else
// "default".
func ownNamespace(flag string, getenv func(string) string, readFile func(string) ([]byte, error)) string {
	if flag != "" {
		return flag
	}
	if ns := strings.TrimSpace(getenv(podNamespaceEnv)); ns != "" {
		return ns
	}
	if b, err := readFile(namespaceFile); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return defaultNamespace
}
