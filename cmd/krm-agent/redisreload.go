package main

import (
	"context"
	"errors"
	"net"

	"github.com/redis/go-redis/v9"
)

// newRedisClient is the agent's Redis client. A Redis Cluster client also
// reloads the cluster's layout whenever a node does not answer: go-redis
// reloads it on MOVED and on its own only every 60 s, so after a failover
// it would send a dead master's slots to that master until then.
func newRedisClient(u *redis.UniversalOptions) redis.UniversalClient {
	client := redis.NewUniversalClient(u)
	if cc, ok := client.(*redis.ClusterClient); ok {
		cc.AddHook(reloadOnDialError{cc})
	}
	return client
}

// reloadOnDialError asks the Cluster client to reload the layout after a
// command or pipeline that could not reach its node.
type reloadOnDialError struct{ c *redis.ClusterClient }

func (h reloadOnDialError) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnDialError) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(ctx, err)
		return err
	}
}

func (h reloadOnDialError) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(ctx, err)
		return err
	}
}

func (h reloadOnDialError) check(ctx context.Context, err error) {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		h.c.ReloadState(ctx)
	}
}
