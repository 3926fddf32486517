package main

import (
	"context"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/krm-project/krm/pkg/render"
)

// StatusOptions are the flags of `kubectl krm status`.
type StatusOptions struct {
	configFlags *genericclioptions.ConfigFlags
	agent       *AgentFlags
	output      *objectOutput
	genericiooptions.IOStreams
}

// NewCmdStatus builds `kubectl krm status`.
func NewCmdStatus(cf *genericclioptions.ConfigFlags, agent *AgentFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &StatusOptions{configFlags: cf, agent: agent, output: newObjectOutput("wide"), IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show how fresh the krm cache is, per resource",
		Long: `Show, for each resource the agent caches: when the last verifying LIST landed
and its resourceVersion, the objects cached, whether the watch is connected,
events per minute, what the last LIST found the stream had missed (+added
-deleted ~modified), and the store's health.

-o json, yaml, name, jsonpath, go-template and custom-columns print the
agent's krm.io/v1alpha1 ResourceStatus objects.`,
		Example: `  kubectl krm status
  kubectl krm status -o wide
  kubectl krm status -o json
  kubectl krm status -o jsonpath='{range .items[*]}{.metadata.name} {.status.verifiedAt}{"\n"}{end}'
  kubectl krm status -o custom-columns=RESOURCE:.metadata.name,OBJECTS:.status.objects.aggregated`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	o.output.addFlags(cmd, "Default: a table; wide adds columns.")
	return cmd
}

// Validate checks the output format.
func (o *StatusOptions) Validate() error {
	return o.output.validate()
}

// Run reads the agent's status and prints it.
func (o *StatusOptions) Run(ctx context.Context) error {
	conn, err := o.agent.connect(ctx, o.configFlags)
	if err != nil {
		return err
	}
	list, err := conn.Client.ResourceStatuses(ctx)
	if err != nil {
		return err
	}
	if o.output.generic() {
		return o.output.printObj(list, o.Out)
	}
	p := &render.StatusPrinter{NoHeaders: o.output.noHeaders, Wide: o.output.format() == "wide", Agent: conn.Agent.Status}
	return p.PrintObj(list, o.Out)
}
