package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/resource"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/kubectl/pkg/cmd/get"

	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/render"
	"github.com/krm-project/krm/pkg/store"
)

const getExample = `  # List all pods in the current namespace, from the krm cache
  kubectl krm get pods

  # List pods in all namespaces, with where each row comes from
  kubectl krm get pods -A --show-source

  # List deployments and services, wide
  kubectl krm get deploy,svc -o wide

  # Only the last LIST's view, refusing answers verified more than 2 minutes ago
  kubectl krm get pods --view verified --max-staleness 2m

  # Watch pods as the cache sees them change
  kubectl krm get pods -w`

// GetOptions are the flags and arguments of `kubectl krm get`.
type GetOptions struct {
	configFlags *genericclioptions.ConfigFlags
	agent       *AgentFlags
	printFlags  *get.PrintFlags
	genericiooptions.IOStreams

	resources     []string // as typed, e.g. "po", "deploy"
	names         []string // empty: list
	pairs         bool     // TYPE/NAME arguments: names[i] is of resources[i]
	namespace     string
	allNamespaces bool
	labelSelector string
	fieldSelector string
	watch         bool
	watchOnly     bool
	view          string
	showSource    bool
	maxStaleness  time.Duration
}

// NewCmdGet builds `kubectl krm get`.
func NewCmdGet(cf *genericclioptions.ConfigFlags, agent *AgentFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &GetOptions{configFlags: cf, agent: agent, printFlags: get.NewGetPrintFlags(), IOStreams: streams, view: string(store.Aggregated)}
	cmd := &cobra.Command{
		Use:   "get TYPE[.GROUP][,TYPE…] [NAME…] | TYPE/NAME… [flags]",
		Short: "Display one or many resources from the krm cache",
		Long: `Display one or many resources, as kubectl get does, answered by the krm agent's
cache instead of the API server.

The default view is aggregated: the last verifying LIST plus the events
streamed since. --view verified shows the last LIST alone, --view streamed
what the watch built. --show-source adds SOURCE (verified or streamed) and
VERIFIED (how long ago the last LIST landed).`,
		Example: getExample,
		// Resource types complete from the agent's defaults; asking the
		// agent would need a port-forward per keystroke.
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return api.DefaultResources, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(cmd, args); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "If present, list the requested object(s) across all namespaces.")
	f.StringVarP(&o.labelSelector, "selector", "l", "", "Selector (label query) to filter on, supports '=', '==', '!=', 'in', 'notin'.")
	f.StringVar(&o.fieldSelector, "field-selector", "", "Selector (field query) to filter on, e.g. --field-selector status.phase=Running.")
	f.BoolVarP(&o.watch, "watch", "w", false, "After listing the requested objects, watch for changes.")
	f.BoolVar(&o.watchOnly, "watch-only", false, "Watch for changes to the requested object(s), without listing them first.")
	f.StringVar(&o.view, "view", o.view, "Which view to read: aggregated, verified or streamed.")
	f.BoolVar(&o.showSource, "show-source", false, "Add SOURCE (verified or streamed) and VERIFIED (age of the last LIST) columns.")
	f.DurationVar(&o.maxStaleness, "max-staleness", 0, "Fail instead of answering when the last verifying LIST is older than this (e.g. 30s).")
	// -o, --no-headers, --sort-by, --show-labels, -L, --show-kind and the
	// template flags are kubectl get's own.
	o.printFlags.AddFlags(cmd)
	return cmd
}

// Complete reads the arguments and the namespace.
func (o *GetOptions) Complete(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return errors.New("you must specify the type of resource to get, e.g. `kubectl krm get pods`; `kubectl krm status` lists the resources the agent caches")
	}
	if strings.Contains(args[0], "/") {
		for _, a := range args {
			typ, name, ok := strings.Cut(a, "/")
			if !ok || typ == "" || name == "" {
				return fmt.Errorf("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'kubectl krm get resource/<resource_name>' instead of 'kubectl krm get resource resource/<resource_name>'): %q", a)
			}
			o.resources = append(o.resources, typ)
			o.names = append(o.names, name)
		}
		o.pairs = true
	} else {
		for _, r := range strings.Split(args[0], ",") {
			if r != "" {
				o.resources = append(o.resources, r)
			}
		}
		o.names = args[1:]
	}
	o.namespace = "default"
	if ns, _, err := o.configFlags.ToRawKubeConfigLoader().Namespace(); err == nil && ns != "" {
		o.namespace = ns
	} else if err != nil && o.agent.URL == "" {
		return fmt.Errorf("reading the namespace from the kubeconfig: %w", err)
	}
	if o.configFlags.Namespace != nil && *o.configFlags.Namespace != "" {
		o.namespace = *o.configFlags.Namespace
	}
	return nil
}

func (o *GetOptions) sortBy() string   { return *o.printFlags.HumanReadableFlags.SortBy }
func (o *GetOptions) showLabels() bool { return *o.printFlags.HumanReadableFlags.ShowLabels }
func (o *GetOptions) labelColumns() []string {
	return *o.printFlags.HumanReadableFlags.ColumnLabels
}

func (o *GetOptions) output() string {
	if o.printFlags.OutputFormat == nil {
		return ""
	}
	return *o.printFlags.OutputFormat
}

// Validate checks the flags before connecting.
func (o *GetOptions) Validate() error {
	if _, err := store.ParseSource(o.view); err != nil {
		return fmt.Errorf("--view: %w", err)
	}
	if o.maxStaleness < 0 {
		return fmt.Errorf("--max-staleness must not be negative, got %s", o.maxStaleness)
	}
	out := o.output()
	o.printFlags.CustomColumnsFlags.NoHeaders = *o.printFlags.NoHeaders
	if out != "" && out != "wide" {
		if _, err := o.printFlags.ToPrinter(); err != nil {
			return err
		}
	}
	if o.showSource && out != "" && out != "wide" {
		return fmt.Errorf("--show-source adds table columns; it cannot be used with -o %s", out)
	}
	if len(o.names) > 0 && (o.labelSelector != "" || o.fieldSelector != "") {
		return errors.New("selectors (-l, --field-selector) cannot be used with resource names")
	}
	if len(o.names) > 0 && o.allNamespaces {
		return errors.New("a resource cannot be retrieved by name across all namespaces")
	}
	// kubectl watches one type at a time; TYPE/NAME pairs are checked once
	// their types are resolved.
	if (o.watch || o.watchOnly) && !o.pairs && len(o.resources) > 1 {
		return resource.ErrMultipleResourceTypes
	}
	return nil
}

// fetched is one resource type's answer.
type fetched struct {
	info    api.ResourceInfo
	items   []unstructured.Unstructured
	sources map[string]string // uid -> verified | streamed
	header  api.FrameHeader
}

// Run reads the cache and prints.
func (o *GetOptions) Run(ctx context.Context) error {
	conn, err := o.agent.connect(ctx, o.configFlags)
	if err != nil {
		return err
	}
	c := conn.Client
	resources, err := c.Resources(ctx)
	if err != nil {
		return err
	}
	infos := make([]api.ResourceInfo, len(o.resources))
	types := map[string]bool{}
	for i, typ := range o.resources {
		if infos[i], err = resolve(resources, typ); err != nil {
			return err
		}
		types[infos[i].Name] = true
	}
	// Validate refused several types in one argument; TYPE/NAME pairs are
	// checked here, once resolved, as kubectl does.
	if (o.watch || o.watchOnly) && len(types) > 1 {
		return resource.ErrMultipleResourceTypes
	}
	var all []fetched
	var notFound []error
	for i, info := range infos {
		if o.watchOnly {
			all = append(all, fetched{info: info})
			continue
		}
		if len(o.names) > 0 {
			names := o.names
			if o.pairs {
				names = o.names[i : i+1]
			}
			f, errs, err := o.getNames(ctx, c, info, names)
			if err != nil {
				return err
			}
			notFound = append(notFound, errs...)
			all = append(all, f)
			continue
		}
		f, err := o.list(ctx, c, info)
		if err != nil {
			return err
		}
		all = append(all, f)
	}
	if !o.watchOnly {
		if err := o.print(all); err != nil {
			return err
		}
	}
	if len(notFound) > 0 {
		for _, e := range notFound {
			if err := render.PrintError(o.ErrOut, e); err != nil {
				return err
			}
		}
		return &exitError{code: 1}
	}
	if o.watch || o.watchOnly {
		if len(o.names) > 1 {
			// kubectl, too, prints the objects and then refuses.
			return errors.New("you may only watch a single resource or type of resource at a time")
		}
		return o.watchChanges(ctx, c, all)
	}
	return nil
}

// resolve finds typ among the agent's resources, by any name kubectl
// accepts: plural, short name, kind, singular or plural.group.
func resolve(list *api.ResourceList, typ string) (api.ResourceInfo, error) {
	t := strings.ToLower(typ)
	for _, r := range list.Resources {
		if slices.Contains(r.Names(), t) {
			return r.ResourceInfo, nil
		}
	}
	var names []string
	for _, r := range list.Resources {
		names = append(names, r.Name)
	}
	sort.Strings(names)
	return api.ResourceInfo{}, fmt.Errorf("the krm agent does not cache a resource type %q; it caches: %s (start the agent with --resources to add more)", typ, strings.Join(names, ", "))
}

func (o *GetOptions) listOptions(info api.ResourceInfo) api.ListOptions {
	opts := api.ListOptions{
		LabelSelector: o.labelSelector, FieldSelector: o.fieldSelector, View: o.view, MaxStaleness: o.maxStaleness,
	}
	if info.Namespaced && !o.allNamespaces {
		opts.Namespace = o.namespace
	}
	return opts
}

func (o *GetOptions) list(ctx context.Context, c *api.Client, info api.ResourceInfo) (fetched, error) {
	raw, err := c.List(ctx, info.Name, o.listOptions(info))
	if err != nil {
		return fetched{}, err
	}
	f := fetched{info: info, sources: map[string]string{}, header: raw.Krm.Header}
	for _, r := range raw.Krm.Rows {
		f.sources[r.UID] = r.Source
	}
	for _, item := range raw.Items {
		var u unstructured.Unstructured
		if err := u.UnmarshalJSON(item); err != nil {
			return fetched{}, fmt.Errorf("decoding a %s from the agent: %w", info.Kind, err)
		}
		f.items = append(f.items, u)
	}
	return f, nil
}

// getNames fetches named objects; the ones not found are returned as
// errors worded like kubectl's, to print after the found ones.
func (o *GetOptions) getNames(ctx context.Context, c *api.Client, info api.ResourceInfo, names []string) (fetched, []error, error) {
	f := fetched{info: info, sources: map[string]string{}}
	var missing []error
	ns := ""
	if info.Namespaced {
		ns = o.namespace
	}
	for _, name := range names {
		obj, err := c.Get(ctx, info.Name, ns, name, api.GetOptions{View: o.view, MaxStaleness: o.maxStaleness})
		var apiErr *api.Error
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
			// kubectl names the resource with its group: deployments.apps.
			resource := info.Resource
			if info.Group != "" {
				resource += "." + info.Group
			}
			missing = append(missing, fmt.Errorf("Error from server (NotFound): %s %q not found", resource, name))
			continue
		}
		if err != nil {
			return fetched{}, nil, err
		}
		var u unstructured.Unstructured
		if err := u.UnmarshalJSON(obj.Object); err != nil {
			return fetched{}, nil, fmt.Errorf("decoding %s %s from the agent: %w", info.Kind, name, err)
		}
		f.items = append(f.items, u)
		f.sources[string(u.GetUID())] = obj.Krm.Row.Source
		f.header = obj.Krm.Header
	}
	return f, missing, nil
}

func (o *GetOptions) tablePrinter(all []fetched, noHeaders bool) *render.TablePrinter {
	opts := render.TableOptions{
		Wide: o.output() == "wide", NoHeaders: noHeaders || *o.printFlags.NoHeaders,
		ShowLabels: o.showLabels(), WithNamespace: o.allNamespaces, LabelColumns: o.labelColumns(),
		WithKind: severalKinds(all) || *o.printFlags.HumanReadableFlags.ShowKind,
	}
	for _, f := range all {
		if len(f.info.PrinterColumns) > 0 {
			if opts.PrinterColumns == nil {
				opts.PrinterColumns = map[schema.GroupKind][]api.PrinterColumn{}
			}
			opts.PrinterColumns[schema.GroupKind{Group: f.info.Group, Kind: f.info.Kind}] = f.info.PrinterColumns
		}
	}
	if o.showSource {
		sources := map[string]string{}
		verified := map[string]time.Time{}
		for _, f := range all {
			for uid, s := range f.sources {
				sources[uid] = s
				verified[uid] = f.header.VerifiedAt
			}
		}
		opts.ExtraColumns = []render.ExtraColumn{
			{Header: "SOURCE", Value: func(obj *unstructured.Unstructured) string { return sources[string(obj.GetUID())] }},
			{Header: "VERIFIED", Value: func(obj *unstructured.Unstructured) string {
				at := verified[string(obj.GetUID())]
				if at.IsZero() {
					return "<never>"
				}
				return duration.HumanDuration(time.Since(at))
			}},
		}
	}
	return &render.TablePrinter{Options: opts}
}

func (o *GetOptions) print(all []fetched) error {
	var items []unstructured.Unstructured
	for _, f := range all {
		items = append(items, f.items...)
	}
	if o.sortBy() != "" {
		if err := sortItems(items, o.sortBy()); err != nil {
			return err
		}
	}
	if len(items) == 0 && len(o.names) > 0 {
		// Only missing names: kubectl prints their NotFound errors alone.
		return nil
	}
	out := o.output()
	if out == "" || out == "wide" {
		if len(items) == 0 {
			return render.PrintNoResources(o.ErrOut, o.namespace, o.allNamespaces || !anyNamespaced(all))
		}
		p := o.tablePrinter(all, false)
		// Named objects print in the order they were asked for.
		p.Options.KeepOrder = o.sortBy() != "" || len(o.names) > 0
		return p.PrintObj(&unstructured.UnstructuredList{Items: items}, o.Out)
	}
	printer, err := o.printFlags.ToPrinter()
	if err != nil {
		return err
	}
	var obj runtime.Object
	if len(o.names) == 1 && len(items) == 1 {
		obj = &items[0]
	} else {
		list := &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "v1", "kind": "List", "metadata": map[string]any{"resourceVersion": ""}}}
		list.Items = items
		obj = list
	}
	return printer.PrintObj(obj, o.Out)
}

// severalKinds says whether all holds more than one resource type, when
// kubectl prefixes names with their kind. TYPE/NAME arguments fetch each
// name on its own, so `pod/a pod/b` is one type.
func severalKinds(all []fetched) bool {
	for _, f := range all {
		if f.info.Name != all[0].info.Name {
			return true
		}
	}
	return false
}

func anyNamespaced(all []fetched) bool {
	for _, f := range all {
		if f.info.Namespaced {
			return true
		}
	}
	return false
}

// sortItems sorts by a JSONPath field the way kubectl get --sort-by does.
func sortItems(items []unstructured.Unstructured, field string) error {
	expr, err := get.RelaxedJSONPathExpression(field)
	if err != nil {
		return fmt.Errorf("--sort-by %q: %w", field, err)
	}
	objs := make([]runtime.Object, len(items))
	for i := range items {
		objs[i] = &items[i]
	}
	sorter, err := get.SortObjects(scheme.Codecs.UniversalDecoder(), objs, expr)
	if err != nil {
		return fmt.Errorf("--sort-by %q: %w", field, err)
	}
	sorted := make([]unstructured.Unstructured, len(items))
	for i := range items {
		sorted[i] = items[sorter.OriginalPosition(i)]
	}
	copy(items, sorted)
	return nil
}

// watchChanges streams changes of each resource, printing a row per event
// as kubectl get --watch does.
func (o *GetOptions) watchChanges(ctx context.Context, c *api.Client, all []fetched) error {
	type tagged struct {
		f  fetched
		ev api.Event
	}
	events := make(chan tagged)
	errc := make(chan error, len(all))
	for _, f := range all {
		opts := o.listOptions(f.info)
		if len(o.names) == 1 {
			// Validate refuses selectors with names.
			opts.FieldSelector = "metadata.name=" + o.names[0]
		}
		ch, err := c.Watch(ctx, f.info.Name, opts)
		if err != nil {
			return err
		}
		go func() {
			skipInitial := !o.watchOnly
			for ev := range ch {
				// The watch opens with the current objects, which the list
				// above already printed.
				if skipInitial && ev.Type == api.EventAdded && f.contains(ev.Row) {
					continue
				}
				select {
				case events <- tagged{f, ev}:
				case <-ctx.Done():
					return
				}
			}
			errc <- fmt.Errorf("the watch of %s ended", f.info.Name)
		}()
	}
	printedHeader := !o.watchOnly
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case t := <-events:
			if t.ev.Type == api.EventError {
				return fmt.Errorf("watching %s: %s", t.f.info.Name, t.ev.Message)
			}
			var u unstructured.Unstructured
			if err := json.Unmarshal(t.ev.Object, &u.Object); err != nil {
				return fmt.Errorf("decoding a watch event of %s: %w", t.f.info.Name, err)
			}
			if t.ev.Row != nil {
				t.f.sources = map[string]string{t.ev.Row.UID: t.ev.Row.Source}
			}
			out := o.output()
			if out == "" || out == "wide" {
				p := o.tablePrinter([]fetched{t.f}, printedHeader)
				if err := p.PrintObj(&u, o.Out); err != nil {
					return err
				}
				printedHeader = true
				continue
			}
			printer, err := o.printFlags.ToPrinter()
			if err != nil {
				return err
			}
			if err := printer.PrintObj(&u, o.Out); err != nil {
				return err
			}
		}
	}
}

func (f fetched) contains(row *api.RowMeta) bool {
	if row == nil {
		return false
	}
	for _, it := range f.items {
		if string(it.GetUID()) == row.UID && it.GetResourceVersion() == row.ResourceVersion {
			return true
		}
	}
	return false
}
