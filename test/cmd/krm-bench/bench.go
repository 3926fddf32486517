package main

import (
	"context"
	"time"

	"github.com/krm-project/krm/test/benchenv"
	"github.com/krm-project/krm/test/cluster"
)

// bench is one run: its namespace and nodes, its pods and the agent
// watching them.
type bench struct {
	*benchenv.Env
	o     options
	agent *benchenv.Agent
}

func newBench(s *cluster.State, o options) (*bench, error) {
	env, err := benchenv.New(s, "krm-bench", o.pods, o.workers, progress)
	if err != nil {
		return nil, err
	}
	return &bench{Env: env, o: o}, nil
}

// agentVerifyInterval is the agent's --verify-interval in the run.
const agentVerifyInterval = 30 * time.Second

// startAgent starts krm-agent with the bench's flags, then extra ones
// (later flags win).
func (b *bench) startAgent(ctx context.Context, bin string, extra ...string) (err error) {
	args := append([]string{"--resources", "pods", "--namespace", b.NS, "--verify-interval", agentVerifyInterval.String()}, extra...)
	b.agent, err = b.StartAgent(ctx, bin, b.o.agentEnv, args...)
	return err
}

func (b *bench) stopAgent() error { return b.agent.Stop() }

// waitAgentHasAll waits until the running agent serves every pod Running.
func (b *bench) waitAgentHasAll(ctx context.Context, timeout time.Duration) error {
	return b.WaitAgentHasAll(ctx, b.agent, timeout)
}

// cleanup stops the agent and deletes the namespace, its pods and the
// run's nodes.
func (b *bench) cleanup(ctx context.Context) error {
	var stopErr error
	if b.agent != nil {
		stopErr = b.agent.Stop()
	}
	if err := b.Cleanup(ctx); err != nil {
		return err
	}
	return stopErr
}
