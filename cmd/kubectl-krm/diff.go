package main

import (
	"context"
	"fmt"
	"sort"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/render"
)

// DiffOptions are the flags of `kubectl krm diff verified`.
type DiffOptions struct {
	configFlags *genericclioptions.ConfigFlags
	agent       *AgentFlags
	resources   []string
	output      *objectOutput
	history     bool
	genericiooptions.IOStreams
}

// NewCmdDiff builds `kubectl krm diff` and its one subcommand, verified.
func NewCmdDiff(cf *genericclioptions.ConfigFlags, agent *AgentFlags, streams genericiooptions.IOStreams) *cobra.Command {
	diff := &cobra.Command{
		Use:   "diff",
		Short: "Compare the krm cache's views",
	}
	o := &DiffOptions{configFlags: cf, agent: agent, output: newObjectOutput("diff"), IOStreams: streams}
	verified := &cobra.Command{
		Use:   "verified [RESOURCE…]",
		Short: "Show what the stream holds that the last LIST has not confirmed, and what it missed",
		Long: `Show, per resource (all cached resources by default):

  - changes the stream delivered since the last verifying LIST: objects
    Added, Modified or Deleted, not yet confirmed by a LIST;
  - drift: events the stream missed, found by the last LIST (MissedAdded,
    MissedDeleted, MissedModified). --history shows every LIST's findings.

-o json, yaml, name, jsonpath, go-template and custom-columns print the
agent's krm.io/v1alpha1 DriftReport objects.

Exit status is 0 when there are no differences, 1 when there are, and
greater than 1 on an error, as kubectl diff does.`,
		Example: `  kubectl krm diff verified
  kubectl krm diff verified pods -o diff
  kubectl krm diff verified --history -o yaml
  kubectl krm diff verified -o jsonpath='{range .items[*]}{.metadata.name} {.status.verifiedResourceVersion}{"\n"}{end}'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.resources = args
			if err := o.Validate(); err != nil {
				return &exitError{code: 2, err: err}
			}
			return o.Run(cmd.Context())
		},
	}
	o.output.addFlags(verified, "Default: a summary table; diff prints unified YAML diffs.")
	verified.Flags().BoolVar(&o.history, "history", false, "Show the whole drift ledger, not only what the last LIST found.")
	diff.AddCommand(verified)
	return diff
}

// Validate checks the output format.
func (o *DiffOptions) Validate() error {
	return o.output.validate()
}

// Run fetches the drift reports and prints them; differences exit 1.
func (o *DiffOptions) Run(ctx context.Context) error {
	fail := func(err error) error { return &exitError{code: 2, err: err} }
	conn, err := o.agent.connect(ctx, o.configFlags)
	if err != nil {
		return fail(err)
	}
	c := conn.Client
	statuses, err := c.ResourceStatuses(ctx)
	if err != nil {
		return fail(err)
	}
	var names []string
	if len(o.resources) == 0 {
		for _, r := range statuses.Items {
			names = append(names, r.Status.Name)
		}
	}
	for _, typ := range o.resources {
		info, err := resolve(statuses, typ)
		if err != nil {
			return fail(err)
		}
		names = append(names, info.Name)
	}
	sort.Strings(names)
	reports := &krmv1alpha1.DriftReportList{}
	for _, n := range names {
		r, err := c.DriftReport(ctx, n)
		if err != nil {
			return fail(err)
		}
		reports.Items = append(reports.Items, *r)
		if n := r.Status.UnverifiedOmitted; n > 0 {
			fmt.Fprintf(o.ErrOut, "Warning: the agent's drift report of %s lists the first %d of %d changes since its last LIST, by namespace/name; the rest are left out to bound the report\n",
				r.Status.Resource, len(r.Status.Unverified), len(r.Status.Unverified)+n)
		}
	}
	p := &render.DriftPrinter{Diff: o.output.format() == "diff", NoHeaders: o.output.noHeaders, History: o.history}
	differs := len(p.Items(reports)) > 0
	if o.output.generic() {
		err = o.output.printObj(reports, o.Out)
	} else {
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
