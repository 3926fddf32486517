package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/resource"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/kubectl/pkg/cmd/get"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/client"
	"github.com/krm-project/krm/pkg/render"
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

// completedResources are what an agent caches unless told otherwise, which
// completion offers as resource types.
var completedResources = []string{"pods", "deployments", "persistentvolumeclaims", "services", "ingresses", "nodes"}

// The agent's views, as its view parameter names them.
const (
	viewAggregated = "aggregated"
	viewVerified   = "verified"
	viewStreamed   = "streamed"
)

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
	chunkSize     int64
	// at is --at as given; atTime the time it names.
	at     string
	atTime time.Time
}

// NewCmdGet builds `kubectl krm get`.
func NewCmdGet(cf *genericclioptions.ConfigFlags, agent *AgentFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &GetOptions{configFlags: cf, agent: agent, printFlags: get.NewGetPrintFlags(), IOStreams: streams, view: viewAggregated, chunkSize: 500}
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
			return completedResources, cobra.ShellCompDirectiveNoFileComp
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
	f.Int64Var(&o.chunkSize, "chunk-size", o.chunkSize, "Return large lists in chunks rather than all at once. Pass 0 to disable.")
	f.StringVar(&o.at, "at", "", "List the view as it was then, from the agent's history: a duration ago such as 10m, or an RFC 3339 time. Fails when history does not reach that far.")
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
	switch o.view {
	case viewAggregated, viewVerified, viewStreamed:
	default:
		return fmt.Errorf("--view: unknown view %q: use aggregated, verified or streamed", o.view)
	}
	if o.maxStaleness < 0 {
		return fmt.Errorf("--max-staleness must not be negative, got %s", o.maxStaleness)
	}
	if o.at != "" {
		t, err := parseAt(o.at, time.Now())
		if err != nil {
			return err
		}
		o.atTime = t
		if len(o.names) > 0 || o.watch || o.watchOnly {
			return errors.New("--at lists a resource as it was; it takes no names and does not watch (`kubectl krm history TYPE/NAME` shows one object's revisions)")
		}
		if o.view != viewAggregated {
			return errors.New("--at reads history, which records the aggregated view; leave --view out")
		}
	}
	if o.chunkSize < 0 {
		return fmt.Errorf("--chunk-size must not be negative (0 disables chunking), got %d", o.chunkSize)
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
	info  client.ResourceInfo
	items []unstructured.Unstructured
	// origins of the items by uid, for --show-source.
	origins map[string]origin
	// listRV is the list's resourceVersion, where a watch of the list
	// starts; "" for objects got by name.
	listRV string
}

// origin is where an object's row comes from: SOURCE and VERIFIED.
type origin struct {
	source     string // verified or streamed
	verifiedAt time.Time
}

func originOf(f client.Freshness, obj *unstructured.Unstructured) origin {
	return origin{source: f.Source(obj.GetResourceVersion()), verifiedAt: f.VerifiedAt}
}

// Run reads the cache and prints.
func (o *GetOptions) Run(ctx context.Context) error {
	conn, err := o.agent.connect(ctx, o.configFlags)
	if err != nil {
		return err
	}
	c := conn.Client
	statuses, err := c.ResourceStatuses(ctx)
	if err != nil {
		return err
	}
	infos := make([]client.ResourceInfo, len(o.resources))
	types := map[string]bool{}
	for i, typ := range o.resources {
		if infos[i], err = resolve(statuses, typ); err != nil {
			return err
		}
		types[infos[i].Name] = true
	}
	// Validate refused several types in one argument; TYPE/NAME pairs are
	// checked here, once resolved, as kubectl does.
	if (o.watch || o.watchOnly) && len(types) > 1 {
		return resource.ErrMultipleResourceTypes
	}
	// --watch-only reads too, as kubectl does: a watch starts where the
	// list ends, and a named object's first event is the state read here.
	var all []fetched
	var notFound []error
	for i, info := range infos {
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
func resolve(statuses *krmv1alpha1.ResourceStatusList, typ string) (client.ResourceInfo, error) {
	t := strings.ToLower(typ)
	for _, r := range statuses.Items {
		if slices.Contains(r.Status.Names(), t) {
			return r.Status.ResourceInfo, nil
		}
	}
	var names []string
	for _, r := range statuses.Items {
		names = append(names, r.Status.Name)
	}
	sort.Strings(names)
	return client.ResourceInfo{}, fmt.Errorf("the krm agent does not cache a resource type %q; it caches: %s (start the agent with --resources to add more)", typ, strings.Join(names, ", "))
}

func (o *GetOptions) listOptions(info client.ResourceInfo) client.ListOptions {
	opts := client.ListOptions{
		LabelSelector: o.labelSelector, FieldSelector: o.fieldSelector, View: o.view, MaxStaleness: o.maxStaleness, At: o.atTime,
	}
	if info.Namespaced && !o.allNamespaces {
		opts.Namespace = o.namespace
	}
	return opts
}

// list reads every page of info's objects, --chunk-size at a time, as
// kubectl does.
func (o *GetOptions) list(ctx context.Context, c *client.Client, info client.ResourceInfo) (fetched, error) {
	f := fetched{info: info, origins: map[string]origin{}}
	opts := o.listOptions(info)
	opts.Limit = o.chunkSize
	for {
		page, err := c.List(ctx, info, opts)
		if err != nil {
			return fetched{}, err
		}
		if f.listRV == "" {
			f.listRV = page.ResourceVersion
			if err := o.checkStale(info, page.Freshness); err != nil {
				return fetched{}, err
			}
		}
		for _, item := range page.Items {
			u, err := decodeObject(item, info)
			if err != nil {
				return fetched{}, err
			}
			f.items = append(f.items, *u)
			f.origins[string(u.GetUID())] = originOf(page.Freshness, u)
		}
		if page.Continue == "" {
			return f, nil
		}
		opts.Continue = page.Continue
	}
}

// decodeObject decodes one of info's objects. kube-apiserver leaves
// apiVersion and kind out of a typed list's items; they are info's.
func decodeObject(raw []byte, info client.ResourceInfo) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal(raw, &u.Object); err != nil {
		return nil, fmt.Errorf("decoding a %s from the agent: %w", info.Kind, err)
	}
	if u.Object == nil {
		return nil, fmt.Errorf("decoding a %s from the agent: it sent %s", info.Kind, raw)
	}
	if u.GetKind() == "" {
		u.SetAPIVersion(info.APIVersion())
		u.SetKind(info.Kind)
	}
	return u, nil
}

// getNames fetches named objects; the ones not found are returned as
// errors worded as kubectl words them, to print after the found ones.
func (o *GetOptions) getNames(ctx context.Context, c *client.Client, info client.ResourceInfo, names []string) (fetched, []error, error) {
	f := fetched{info: info, origins: map[string]origin{}}
	var missing []error
	ns := ""
	if info.Namespaced {
		ns = o.namespace
	}
	for _, name := range names {
		obj, err := c.Get(ctx, info, ns, name, client.GetOptions{View: o.view, MaxStaleness: o.maxStaleness})
		if apierrors.IsNotFound(err) {
			// The agent's message is kube-apiserver's: deployments.apps
			// "web" not found.
			missing = append(missing, fmt.Errorf("Error from server (NotFound): %s", err.Error()))
			continue
		}
		if err != nil {
			return fetched{}, nil, err
		}
		if len(f.items) == 0 {
			if err := o.checkStale(info, obj.Freshness); err != nil {
				return fetched{}, nil, err
			}
		}
		u, err := decodeObject(obj.Object, info)
		if err != nil {
			return fetched{}, nil, err
		}
		f.items = append(f.items, *u)
		f.origins[string(u.GetUID())] = originOf(obj.Freshness, u)
	}
	return f, missing, nil
}

// checkStale warns on stderr, as kubectl prints the API server's warnings,
// when the agent answered from the frames it stored before it restarted,
// which no LIST of its own has confirmed yet; with --max-staleness that is
// an error instead.
func (o *GetOptions) checkStale(info client.ResourceInfo, f client.Freshness) error {
	if !f.Stale {
		return nil
	}
	verified := "at an unknown time"
	if !f.VerifiedAt.IsZero() {
		verified = duration.HumanDuration(time.Since(f.VerifiedAt)) + " ago"
	}
	msg := fmt.Sprintf("the krm agent answers %s from the frames it stored before it restarted (last verified %s); its own first LIST has not confirmed them yet", info.Name, verified)
	if o.maxStaleness > 0 {
		return fmt.Errorf("%s, and --max-staleness refuses an answer that is not verified by the running agent; retry once its LIST lands (`kubectl krm status` shows it)", msg)
	}
	_, err := fmt.Fprintf(o.ErrOut, "Warning: %s\n", msg)
	return err
}

func (o *GetOptions) tablePrinter(all []fetched, noHeaders bool) *render.TablePrinter {
	opts := render.TableOptions{
		Wide: o.output() == "wide", NoHeaders: noHeaders || *o.printFlags.NoHeaders,
		ShowLabels: o.showLabels(), WithNamespace: o.allNamespaces, LabelColumns: o.labelColumns(),
		WithKind:  severalKinds(all) || *o.printFlags.HumanReadableFlags.ShowKind,
		ChunkSize: int(o.chunkSize),
	}
	if o.chunkSize == 0 {
		opts.ChunkSize = -1 // one page
	}
	for _, f := range all {
		if len(f.info.PrinterColumns) > 0 {
			if opts.PrinterColumns == nil {
				opts.PrinterColumns = map[schema.GroupKind][]krmv1alpha1.PrinterColumn{}
			}
			opts.PrinterColumns[schema.GroupKind{Group: f.info.Group, Kind: f.info.Kind}] = f.info.PrinterColumns
		}
	}
	if o.showSource {
		origins := map[string]origin{}
		for _, f := range all {
			for uid, from := range f.origins {
				origins[uid] = from
			}
		}
		opts.ExtraColumns = []render.ExtraColumn{
			{Header: "SOURCE", Value: func(obj *unstructured.Unstructured) string { return origins[string(obj.GetUID())].source }},
			{Header: "VERIFIED", Value: func(obj *unstructured.Unstructured) string {
				at := origins[string(obj.GetUID())].verifiedAt
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
// as kubectl get --watch does. As in kubectl, a list is watched from its
// resourceVersion, so every event is a change; a named object is watched
// from now, and its first event, the state already read, is not printed.
func (o *GetOptions) watchChanges(ctx context.Context, c *client.Client, all []fetched) error {
	type tagged struct {
		f     fetched
		fresh client.Freshness
		ev    client.Event
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan tagged)
	errc := make(chan error, len(all))
	for _, f := range all {
		opts := o.listOptions(f.info)
		if len(o.names) == 1 {
			// Validate refuses selectors with names.
			opts.FieldSelector = "metadata.name=" + o.names[0]
		} else {
			opts.ResourceVersion = f.listRV
		}
		ch, fresh, err := c.Watch(ctx, f.info, opts)
		if err != nil {
			return err
		}
		go func() {
			skipRead := len(o.names) == 1
			for ev := range ch {
				if skipRead && ev.Type == "ADDED" && f.holds(ev.Object) {
					skipRead = false
					continue
				}
				select {
				case events <- tagged{f, fresh, ev}:
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
			if ctx.Err() != nil {
				return nil
			}
			return err
		case t := <-events:
			switch t.ev.Type {
			case "ADDED", "MODIFIED", "DELETED":
			case "ERROR":
				return fmt.Errorf("watching %s: %w", t.f.info.Name, t.ev.Err)
			default:
				continue // BOOKMARK
			}
			u, err := decodeObject(t.ev.Object, t.f.info)
			if err != nil {
				return fmt.Errorf("a watch event of %s: %w", t.f.info.Name, err)
			}
			out := o.output()
			if out == "" || out == "wide" {
				t.f.origins = map[string]origin{string(u.GetUID()): originOf(t.fresh, u)}
				p := o.tablePrinter([]fetched{t.f}, printedHeader)
				if err := p.PrintObj(u, o.Out); err != nil {
					return err
				}
				printedHeader = true
				continue
			}
			printer, err := o.printFlags.ToPrinter()
			if err != nil {
				return err
			}
			if err := printer.PrintObj(u, o.Out); err != nil {
				return err
			}
		}
	}
}

// holds says whether f already holds obj (as uid and resourceVersion).
func (f fetched) holds(obj json.RawMessage) bool {
	var meta struct {
		Metadata struct {
			UID             string `json:"uid"`
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if json.Unmarshal(obj, &meta) != nil {
		return false
	}
	for _, it := range f.items {
		if string(it.GetUID()) == meta.Metadata.UID && it.GetResourceVersion() == meta.Metadata.ResourceVersion {
			return true
		}
	}
	return false
}

// parseAt reads --at: a duration before now, or an RFC 3339 time.
func parseAt(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--at %s: a duration is how long ago, and must not be negative", v)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("--at %q: want a duration ago such as 10m, or an RFC 3339 time such as 2026-12-06T11:00:00Z", v)
	}
	return t, nil
}
