package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/kubectl/pkg/cmd/get"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

// objectOutput is -o of the commands that print krm's own objects (status,
// diff verified, delay): the command's own formats (its table by default,
// and e.g. wide or diff), or any format of cli-runtime's PrintFlags (json,
// yaml, name, go-template, jsonpath…) and kubectl get's custom-columns,
// applied to the krm.io list the command read.
type objectOutput struct {
	// own are the formats the command prints itself, besides "".
	own       []string
	print     *genericclioptions.PrintFlags
	columns   *get.CustomColumnsPrintFlags
	noHeaders bool
	scheme    *runtime.Scheme
}

func newObjectOutput(own ...string) *objectOutput {
	scheme := runtime.NewScheme()
	utilruntime.Must(krmv1alpha1.AddToScheme(scheme))
	return &objectOutput{
		own:     own,
		print:   genericclioptions.NewPrintFlags("").WithTypeSetter(scheme),
		columns: get.NewCustomColumnsPrintFlags(),
		scheme:  scheme,
	}
}

// addFlags adds -o, --no-headers and PrintFlags' --template,
// --allow-missing-template-keys and --show-managed-fields; ownHelp says
// what the command's own formats print.
func (o *objectOutput) addFlags(cmd *cobra.Command, ownHelp string) {
	o.print.AddFlags(cmd)
	formats := append(slices.Clone(o.own), o.print.AllowedFormats()...)
	formats = append(formats, o.columns.AllowedFormats()...)
	cmd.Flags().Lookup("output").Usage = fmt.Sprintf("Output format. One of: (%s). %s", strings.Join(formats, ", "), ownHelp)
	cmd.Flags().BoolVar(&o.noHeaders, "no-headers", false, "Don't print headers (tables and custom-columns).")
}

// format is -o as given.
func (o *objectOutput) format() string { return *o.print.OutputFormat }

// generic reports whether the objects are printed by a PrintFlags or
// custom-columns printer rather than by the command itself. A --template
// without -o is a go-template, as in kubectl.
func (o *objectOutput) generic() bool {
	f := o.format()
	if f == "" {
		t := o.print.TemplatePrinterFlags.TemplateArgument
		return t != nil && *t != ""
	}
	return !slices.Contains(o.own, f)
}

// toPrinter returns the printer of a generic format; an unknown format is
// refused with every format the command accepts.
func (o *objectOutput) toPrinter() (printers.ResourcePrinter, error) {
	format := o.format()
	o.columns.NoHeaders = o.noHeaders
	if t := o.print.TemplatePrinterFlags.TemplateArgument; t != nil {
		o.columns.TemplateArgument = *t
	}
	if p, err := o.columns.ToPrinter(format); !genericclioptions.IsNoCompatiblePrinterError(err) {
		return p, err
	}
	p, err := o.print.ToPrinter()
	if genericclioptions.IsNoCompatiblePrinterError(err) {
		allowed := append(o.print.AllowedFormats(), o.columns.AllowedFormats()...)
		allowed = append(allowed, o.own...)
		return nil, genericclioptions.NoCompatiblePrinterError{OutputFormat: &format, AllowedFormats: allowed}
	}
	return p, err
}

// validate checks -o before anything is read.
func (o *objectOutput) validate() error {
	if !o.generic() {
		return nil
	}
	_, err := o.toPrinter()
	return err
}

// printObj prints list, a krm.io list, in the generic format, as the JSON
// the agent served: cli-runtime's name printer takes only unstructured
// lists, and custom-columns reads typed objects by reflection, which shows
// times in Go's layout rather than as -o json does. The agent leaves
// apiVersion and kind out of list items, as kube-apiserver does; they are
// set here so that -o name and templates can use them.
func (o *objectOutput) printObj(list runtime.Object, w io.Writer) error {
	p, err := o.toPrinter()
	if err != nil {
		return err
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return err
	}
	for _, item := range items {
		gvks, _, err := o.scheme.ObjectKinds(item)
		if err != nil {
			return err
		}
		item.GetObjectKind().SetGroupVersionKind(gvks[0])
	}
	u, err := toUnstructured(list, o.scheme)
	if err != nil {
		return err
	}
	return p.PrintObj(u, w)
}

// toUnstructured turns a typed list into the JSON the agent served.
func toUnstructured(list runtime.Object, scheme *runtime.Scheme) (runtime.Object, error) {
	gvks, _, err := scheme.ObjectKinds(list)
	if err != nil {
		return nil, err
	}
	list = list.DeepCopyObject()
	list.GetObjectKind().SetGroupVersionKind(gvks[0])
	data, err := json.Marshal(list)
	if err != nil {
		return nil, err
	}
	u := &unstructured.UnstructuredList{}
	if err := u.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	return u, nil
}
