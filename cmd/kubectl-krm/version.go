package main

import (
	"context"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/render"
	"github.com/krm-project/krm/pkg/version"
)

// VersionOptions are the flags of `kubectl krm version`.
type VersionOptions struct {
	configFlags *genericclioptions.ConfigFlags
	agent       *AgentFlags
	client      bool
	genericiooptions.IOStreams
}

// NewCmdVersion builds `kubectl krm version`.
func NewCmdVersion(cf *genericclioptions.ConfigFlags, agent *AgentFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &VersionOptions{configFlags: cf, agent: agent, IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the plugin and agent versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&o.client, "client", false, "Print the plugin's version only; don't contact the agent.")
	return cmd
}

// Run prints the versions. An unreachable agent is reported in the output
// and the exit code, after the plugin's own version.
func (o *VersionOptions) Run(ctx context.Context) error {
	v := render.Version{Plugin: version.Version, APIVersion: krmv1alpha1.SchemeGroupVersion.String()}
	if o.client {
		v.Agent = "(not asked: --client)"
		return v.PrintObj(o.Out)
	}
	// Connecting reads the agent's AgentStatus, with its version.
	conn, err := o.agent.connect(ctx, o.configFlags)
	switch {
	case err != nil:
		v.AgentError = "see the error below"
	case conn.Agent.Status.AgentVersion == "":
		v.AgentError = "the agent does not say"
	default:
		v.Agent = conn.Agent.Status.AgentVersion
	}
	if perr := v.PrintObj(o.Out); perr != nil {
		return perr
	}
	return err
}
