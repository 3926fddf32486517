package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/krm-project/krm/pkg/render"
)

// StatusOptions are the flags of `kubectl krm status`.
type StatusOptions struct {
	configFlags *genericclioptions.ConfigFlags
	agent       *AgentFlags
	output      string
	noHeaders   bool
	genericiooptions.IOStreams
}

// NewCmdStatus builds `kubectl krm status`.
func NewCmdStatus(cf *genericclioptions.ConfigFlags, agent *AgentFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &StatusOptions{configFlags: cf, agent: agent, IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show how fresh the krm cache is, per resource",
		Long: `Show, for each resource the agent caches: when the last verifying LIST landed
and its resourceVersion, the objects cached, whether the watch is connected,
events per minute, what the last LIST found the stream had missed (+added
-deleted ~modified), and the store's health.`,
		Example: `  kubectl krm status
  kubectl krm status -o wide
  kubectl krm status -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "Output format: wide, json or yaml.")
	cmd.Flags().BoolVar(&o.noHeaders, "no-headers", false, "Don't print headers.")
	return cmd
}

// Validate checks the output format.
func (o *StatusOptions) Validate() error {
	switch o.output {
	case "", "wide", "json", "yaml":
		return nil
	}
	return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: json,wide,yaml", o.output)
}

// Run reads the agent's status and prints it.
func (o *StatusOptions) Run(ctx context.Context) error {
	conn, err := o.agent.connect(ctx, o.configFlags)
	if err != nil {
		return err
	}
	list, err := conn.Client.Resources(ctx)
	if err != nil {
		return err
	}
	switch o.output {
	case "json":
		return render.PrintJSON(o.Out, list)
	case "yaml":
		return render.PrintYAML(o.Out, list)
	}
	return (&render.StatusPrinter{NoHeaders: o.noHeaders, Wide: o.output == "wide"}).PrintObj(list, o.Out)
}
