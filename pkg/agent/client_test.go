package agent_test

import (
	"context"
	"net/http/httptest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/krm-project/krm/pkg/agent"
	"github.com/krm-project/krm/pkg/api"
	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/client"
	"github.com/krm-project/krm/pkg/server"
)

// agentClient reads an agent through its HTTP API, as krm-agent serves it,
// naming resources as the tests do.
type agentClient struct {
	*client.Client
}

// serve serves a's API the way krm-agent does and returns a client of it.
func serve(a *agent.Agent, reg *prometheus.Registry, opts server.Options) (*httptest.Server, agentClient, error) {
	opts.AgentVersion, opts.Registry, opts.Gatherer = "test", reg, reg
	srv := httptest.NewServer(server.New(a, opts).Handler())
	c, err := client.New(srv.URL, nil)
	if err != nil {
		srv.Close()
		return nil, agentClient{}, err
	}
	return srv, agentClient{c}, nil
}

// List lists resource's view.
func (c agentClient) List(ctx context.Context, resource string, opts client.ListOptions) (*client.RawList, error) {
	info, err := c.Resource(ctx, resource)
	if err != nil {
		return nil, err
	}
	return c.Client.List(ctx, info, opts)
}

// Resources is the agent's status with every resource's.
func (c agentClient) Resources(ctx context.Context) (*api.ResourceList, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	a := st.Agent
	return &api.ResourceList{AgentVersion: a.AgentVersion, Cluster: a.Cluster, Store: a.Store, Role: a.Role, Leader: a.Leader, Resources: st.Resources}, nil
}

// Drift is resource's drift report.
func (c agentClient) Drift(ctx context.Context, resource string) (*api.DriftReport, error) {
	rep, err := c.DriftReport(ctx, resource)
	if err != nil {
		return nil, err
	}
	return &rep.Status, nil
}

// Delay is resource's stream delay ("" for every resource's).
func (c agentClient) Delay(ctx context.Context, resource, event string, since time.Duration) (*api.DelayReport, error) {
	if resource != "" {
		rep, err := c.DelayReport(ctx, resource, event, since)
		if err != nil {
			return nil, err
		}
		return &rep.Status, nil
	}
	list, err := c.ResourceStatuses(ctx)
	if err != nil {
		return nil, err
	}
	var out *api.DelayReport
	for _, name := range append(namesOf(list.Items), api.ProbeResource) {
		rep, err := c.DelayReport(ctx, name, event, since)
		if err != nil {
			return nil, err
		}
		if out == nil {
			out = &rep.Status
			continue
		}
		out.Stats = append(out.Stats, rep.Status.Stats...)
	}
	return out, nil
}

func namesOf(items []krmv1alpha1.ResourceStatus) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.Name)
	}
	return out
}
