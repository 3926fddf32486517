package render

import (
	"fmt"
	"io"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"
)

// PrintNoResources says a list came back empty, worded as kubectl get says
// it (on stderr, where callers send it).
func PrintNoResources(w io.Writer, namespace string, allNamespaces bool) error {
	if allNamespaces || namespace == "" {
		_, err := fmt.Fprintln(w, "No resources found")
		return err
	}
	_, err := fmt.Fprintf(w, "No resources found in %s namespace.\n", namespace)
	return err
}

// PrintError prints an error the way kubectl does: "error: " unless the
// message already names its origin ("Error from server …").
func PrintError(w io.Writer, err error) error {
	msg := err.Error()
	if len(msg) >= 5 && msg[:5] == "Error" {
		_, werr := fmt.Fprintln(w, msg)
		return werr
	}
	_, werr := fmt.Fprintln(w, "error: "+msg)
	return werr
}

// Version is what `kubectl krm version` prints.
type Version struct {
	Plugin string `json:"pluginVersion"`
	Agent  string `json:"agentVersion,omitempty"`
	// AgentError says why the agent's version is unknown.
	AgentError string `json:"agentError,omitempty"`
	APIVersion string `json:"apiVersion"`
}

// PrintObj prints the versions as kubectl version does.
func (v Version) PrintObj(w io.Writer) error {
	agent := v.Agent
	if agent == "" {
		agent = "unknown (" + v.AgentError + ")"
	}
	_, err := fmt.Fprintf(w, "Plugin Version: %s\nAgent Version: %s\nAPI Version: %s\n", v.Plugin, agent, v.APIVersion)
	return err
}

// printRows lays out a simple table with kubectl's printer, so krm's own
// tables look like kubectl's.
func printRows(w io.Writer, headers []string, rows [][]any, noHeaders bool) error {
	t := &metav1.Table{}
	for _, h := range headers {
		t.ColumnDefinitions = append(t.ColumnDefinitions, metav1.TableColumnDefinition{Name: h, Type: "string"})
	}
	for _, r := range rows {
		t.Rows = append(t.Rows, metav1.TableRow{Cells: r})
	}
	tw := printers.GetNewTabWriter(w)
	if err := printers.NewTablePrinter(printers.PrintOptions{NoHeaders: noHeaders}).PrintObj(t, tw); err != nil {
		return err
	}
	return tw.Flush()
}

// since is a kubectl-style age, or a placeholder for a zero time.
func since(t, now time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	return duration.HumanDuration(now.Sub(t))
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
