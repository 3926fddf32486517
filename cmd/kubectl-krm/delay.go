package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/krm-project/krm/pkg/api"
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
	output      string
	noHeaders   bool
	genericiooptions.IOStreams
}

// NewCmdDelay builds `kubectl krm delay`.
func NewCmdDelay(cf *genericclioptions.ConfigFlags, agent *AgentFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &DelayOptions{configFlags: cf, agent: agent, IOStreams: streams, since: time.Hour}
	cmd := &cobra.Command{
		Use:   "delay [RESOURCE…]",
		Short: "Show how late the watch delivers ADDED and DELETED events",
		Long: `Show stream-delay statistics: for ADDED events, receive time minus the
object's creationTimestamp; for DELETED events, receive time minus its
deletionTimestamp (negative while the grace period runs). Object timestamps
have 1-second resolution, so delays are only as precise as that. Events
without the timestamp are counted as UNMEASURED.

The numbers come from InfluxDB when the agent writes there, else from the
agent's in-memory window of recent samples.`,
		Example: `  kubectl krm delay
  kubectl krm delay pods --since 15m
  kubectl krm delay pods --event ADDED --chart`,
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
	f.StringVarP(&o.output, "output", "o", "", "Output format: json or yaml. Default: a table (or the chart).")
	f.BoolVar(&o.noHeaders, "no-headers", false, "Don't print headers.")
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
	switch o.output {
	case "", "json", "yaml":
	default:
		return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: json,yaml", o.output)
	}
	if o.chart && o.output != "" {
		return fmt.Errorf("--chart draws text; it cannot be combined with -o %s", o.output)
	}
	return nil
}

// Run reads the statistics and prints them.
func (o *DelayOptions) Run(ctx context.Context) error {
	conn, err := o.agent.connect(ctx, o.configFlags)
	if err != nil {
		return err
	}
	names := []string{""}
	if len(o.resources) > 0 {
		list, err := conn.Client.Resources(ctx)
		if err != nil {
			return err
		}
		names = names[:0]
		for _, typ := range o.resources {
			if typ == api.ProbeResource {
				names = append(names, typ)
				continue
			}
			info, err := resolve(list, typ)
			if err != nil {
				return err
			}
			names = append(names, info.Name)
		}
	}
	var reports []*api.DelayReport
	for _, n := range names {
		rep, err := conn.Client.Delay(ctx, n, o.event, o.since)
		if err != nil {
			return err
		}
		reports = append(reports, rep)
	}
	switch o.output {
	case "json":
		return render.PrintJSON(o.Out, reports)
	case "yaml":
		return render.PrintYAML(o.Out, reports)
	}
	return (&render.DelayPrinter{Chart: o.chart, NoHeaders: o.noHeaders}).PrintObj(reports, o.Out)
}
