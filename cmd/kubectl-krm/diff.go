package main

import (
	"context"
	"fmt"
	"sort"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/render"
)

// DiffOptions are the flags of `kubectl krm diff verified`.
type DiffOptions struct {
	configFlags *genericclioptions.ConfigFlags
	agent       *AgentFlags
	resources   []string
	output      string
	noHeaders   bool
	history     bool
	genericiooptions.IOStreams
}

// NewCmdDiff builds `kubectl krm diff` and its one subcommand, verified.
func NewCmdDiff(cf *genericclioptions.ConfigFlags, agent *AgentFlags, streams genericiooptions.IOStreams) *cobra.Command {
	diff := &cobra.Command{
		Use:   "diff",
		Short: "Compare the krm cache's views",
	}
	o := &DiffOptions{configFlags: cf, agent: agent, IOStreams: streams}
	verified := &cobra.Command{
		Use:   "verified [RESOURCE…]",
		Short: "Show what the stream holds that the last LIST has not confirmed, and what it missed",
		Long: `Show, per resource (all cached resources by default):

  - changes the stream delivered since the last verifying LIST: objects
    Added, Modified or Deleted, not yet confirmed by a LIST;
  - drift: events the stream missed, found by the last LIST (MissedAdded,
    MissedDeleted, MissedModified). --history shows every LIST's findings.

Exit status is 0 when there are no differences, 1 when there are, and
greater than 1 on an error, as kubectl diff does.`,
		Example: `  kubectl krm diff verified
  kubectl krm diff verified pods -o diff
  kubectl krm diff verified --history -o yaml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.resources = args
			if err := o.Validate(); err != nil {
				return &exitError{code: 2, err: err}
			}
			return o.Run(cmd.Context())
		},
	}
	f := verified.Flags()
	f.StringVarP(&o.output, "output", "o", "", "Output format: diff (unified YAML diffs), json or yaml. Default: a summary table.")
	f.BoolVar(&o.noHeaders, "no-headers", false, "Don't print headers.")
	f.BoolVar(&o.history, "history", false, "Show the whole drift ledger, not only what the last LIST found.")
	diff.AddCommand(verified)
	return diff
}

// Validate checks the output format.
func (o *DiffOptions) Validate() error {
	switch o.output {
	case "", "diff", "json", "yaml":
		return nil
	}
	return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: diff,json,yaml", o.output)
}

// Run fetches the drift reports and prints them; differences exit 1.
func (o *DiffOptions) Run(ctx context.Context) error {
	fail := func(err error) error { return &exitError{code: 2, err: err} }
	conn, err := o.agent.connect(ctx, o.configFlags)
	if err != nil {
		return fail(err)
	}
	c := conn.Client
	list, err := c.Resources(ctx)
	if err != nil {
		return fail(err)
	}
	var names []string
	if len(o.resources) == 0 {
		for _, r := range list.Resources {
			names = append(names, r.Name)
		}
	}
	for _, typ := range o.resources {
		info, err := resolve(list, typ)
		if err != nil {
			return fail(err)
		}
		names = append(names, info.Name)
	}
	sort.Strings(names)
	var reports []api.DriftReport
	for _, n := range names {
		r, err := c.Drift(ctx, n)
		if err != nil {
			return fail(err)
		}
		reports = append(reports, *r)
	}
	p := &render.DriftPrinter{Diff: o.output == "diff", NoHeaders: o.noHeaders, History: o.history}
	differs := len(p.Items(reports)) > 0
	switch o.output {
	case "json":
		err = render.PrintJSON(o.Out, reports)
	case "yaml":
		err = render.PrintYAML(o.Out, reports)
	default:
		err = p.PrintObj(reports, o.Out)
	}
	if err != nil {
		return fail(err)
	}
	if differs {
		return &exitError{code: 1}
	}
	return nil
}
