package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/render"
)

// DelayOptions are the flags of `kubectl krm delay`.
type DelayOptions struct {
	configFlags *genericclioptions.ConfigFlags
	agent       *AgentFlags
	resources   []string
	since       time.Duration
	event       string
	chart       bool
	output      *objectOutput
	genericiooptions.IOStreams
}

// NewCmdDelay builds `kubectl krm delay`.
func NewCmdDelay(cf *genericclioptions.ConfigFlags, agent *AgentFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &DelayOptions{configFlags: cf, agent: agent, output: newObjectOutput(), IOStreams: streams, since: time.Hour}
	cmd := &cobra.Command{
		Use:   "delay [RESOURCE…]",
		Short: "Show how late the watch delivers ADDED and DELETED events",
		Long: `Show stream-delay statistics: for ADDED events, receive time minus the
object's creationTimestamp; for DELETED events, receive time minus its
deletionTimestamp (negative while the grace period runs). Object timestamps
have 1-second resolution, so delays are only as precise as that. Events
without the timestamp are counted as UNMEASURED.

The numbers come from InfluxDB when the agent writes there, else from the
agent's in-memory window of recent samples. RESOURCE may be "probe", the
agent's canary. -o json, yaml, name, jsonpath, go-template and
custom-columns print the agent's krm.io/v1alpha1 DelayReport objects, one
per resource.`,
		Example: `  kubectl krm delay
  kubectl krm delay pods --since 15m
  kubectl krm delay pods --event ADDED --chart
  kubectl krm delay pods -o jsonpath='{.items[0].status.stats[0].p99Seconds}'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.resources = args
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.since, "since", o.since, "How far back to look, e.g. 15m or 24h.")
	f.StringVar(&o.event, "event", "", "Only this event type: ADDED or DELETED.")
	f.BoolVar(&o.chart, "chart", false, "Draw the delay over time as a text chart instead of the table.")
	o.output.addFlags(cmd, "Default: a table (or the chart).")
	return cmd
}

// Validate checks the flags.
func (o *DelayOptions) Validate() error {
	if o.since <= 0 {
		return fmt.Errorf("--since must be positive, e.g. 1h; got %s", o.since)
	}
	switch o.event {
	case "", "ADDED", "DELETED":
	default:
		return fmt.Errorf("--event %q: use ADDED or DELETED", o.event)
	}
	if err := o.output.validate(); err != nil {
		return err
	}
	if o.chart && o.output.generic() {
		return fmt.Errorf("--chart draws text; it cannot be combined with -o %s", o.output.format())
	}
	return nil
}

// Run reads the statistics and prints them.
func (o *DelayOptions) Run(ctx context.Context) error {
	conn, err := o.agent.connect(ctx, o.configFlags)
	if err != nil {
		return err
	}
	c := conn.Client
	statuses, err := c.ResourceStatuses(ctx)
	if err != nil {
		return err
	}
	var names []string
	if len(o.resources) == 0 {
		for _, r := range statuses.Items {
			names = append(names, r.Status.Name)
		}
		names = append(names, krmv1alpha1.ProbeName)
	}
	for _, typ := range o.resources {
		if typ == krmv1alpha1.ProbeName {
			names = append(names, typ)
			continue
		}
		info, err := resolve(statuses, typ)
		if err != nil {
			return err
		}
		names = append(names, info.Name)
	}
	reports := &krmv1alpha1.DelayReportList{}
	for _, n := range names {
		rep, err := c.DelayReport(ctx, n, o.event, o.since)
		if err != nil {
			return err
		}
		reports.Items = append(reports.Items, *rep)
	}
	if o.output.generic() {
		return o.output.printObj(reports, o.Out)
	}
	if o.chart && len(o.resources) == 0 {
		reports = withSamples(reports)
	}
	return (&render.DelayPrinter{Chart: o.chart, NoHeaders: o.output.noHeaders}).PrintObj(reports, o.Out)
}

// withSamples leaves out the reports without samples, so that charting
// every resource does not draw an empty chart for each quiet one; when
// none has any, the first stays to say so.
func withSamples(list *krmv1alpha1.DelayReportList) *krmv1alpha1.DelayReportList {
	out := &krmv1alpha1.DelayReportList{}
	for _, r := range list.Items {
		if len(r.Status.Stats) > 0 || len(r.Status.Series) > 0 {
			out.Items = append(out.Items, r)
		}
	}
	if len(out.Items) == 0 && len(list.Items) > 0 {
		out.Items = list.Items[:1]
	}
	return out
}
