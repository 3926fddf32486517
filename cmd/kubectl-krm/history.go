package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/krm-project/krm/pkg/render"
)

// HistoryOptions are the flags and argument of `kubectl krm history`.
type HistoryOptions struct {
	configFlags *genericclioptions.ConfigFlags
	agent       *AgentFlags
	output      *objectOutput
	genericiooptions.IOStreams

	typ, name string
	namespace string
	since     string
}

// NewCmdHistory builds `kubectl krm history`.
func NewCmdHistory(cf *genericclioptions.ConfigFlags, agent *AgentFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &HistoryOptions{configFlags: cf, agent: agent, output: newObjectOutput("diff"), IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "history TYPE/NAME",
		Short: "Show every revision of an object the krm agent saw: when, by whom, what changed",
		Long: `Show the revisions of one object the agent kept (for its --history, 1h by
default): the resourceVersion, when the agent saw it, the event, whether the
watch delivered it or a verifying LIST repaired a missed event (SOURCE), the
field manager that wrote last, and the changed field paths.

-o diff prints unified YAML diffs between consecutive revisions; -o json and
-o yaml the krm.io/v1alpha1 RevisionList.`,
		Example: `  kubectl krm history deployment/web
  kubectl krm history pod/web-1 -n shop --since 10m
  kubectl krm history deploy/web -o diff`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(args); err != nil {
				return err
			}
			if err := o.output.validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	o.output.addFlags(cmd, "Default: a table; diff prints unified diffs between consecutive revisions.")
	cmd.Flags().StringVar(&o.since, "since", "", "Only revisions observed since then: a duration such as 10m, or an RFC 3339 time.")
	return cmd
}

// Complete reads TYPE/NAME and the namespace.
func (o *HistoryOptions) Complete(args []string) error {
	typ, name, ok := strings.Cut(args[0], "/")
	if !ok || typ == "" || name == "" {
		return fmt.Errorf("want TYPE/NAME, such as deployment/web, not %q", args[0])
	}
	o.typ, o.name = typ, name
	ns, _, err := o.configFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return err
	}
	o.namespace = ns
	return nil
}

// Run fetches the revisions and prints them.
func (o *HistoryOptions) Run(ctx context.Context) error {
	conn, err := o.agent.connect(ctx, o.configFlags)
	if err != nil {
		return err
	}
	c := conn.Client
	statuses, err := c.ResourceStatuses(ctx)
	if err != nil {
		return err
	}
	info, err := resolve(statuses, o.typ)
	if err != nil {
		return err
	}
	ns := o.namespace
	if !info.Namespaced {
		ns = ""
	}
	list, err := c.Revisions(ctx, info.Name, ns, o.name, o.since)
	if err != nil {
		return err
	}
	if o.output.generic() {
		return o.output.printObj(list, o.Out)
	}
	if len(list.Items) == 0 && o.output.format() == "" {
		where := ""
		if ns != "" {
			where = " in namespace " + ns
		}
		return errors.New("no revisions of " + info.Name + "/" + o.name + where + " in the agent's history")
	}
	return (&render.HistoryPrinter{Diff: o.output.format() == "diff", NoHeaders: o.output.noHeaders}).PrintObj(list, o.Out)
}
