package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

// delay is the path of a resource's DelayReport.
func delay(resource string) string { return "/apis/krm.io/v1alpha1/delayreports/" + resource }

// TestDelayReads checks which DelayReports `kubectl krm delay` reads, with
// what range and event.
func TestDelayReads(t *testing.T) {
	for _, tt := range []struct {
		args  []string
		reads []string
	}{
		{
			[]string{"delay"},
			[]string{
				delay("pods") + "?since=1h0m0s", delay("deployments") + "?since=1h0m0s", delay("services") + "?since=1h0m0s",
				delay("nodes") + "?since=1h0m0s", delay("probe") + "?since=1h0m0s",
			},
		},
		{[]string{"delay", "po", "probe", "--since", "15m"}, []string{delay("pods") + "?since=15m0s", delay("probe") + "?since=15m0s"}},
		{[]string{"delay", "deployments.apps", "--event", "DELETED"}, []string{delay("deployments") + "?event=DELETED&since=1h0m0s"}},
	} {
		a := newFakeAgent(t)
		r := runKrm(t, a, tt.args...)
		if r.err != nil {
			t.Errorf("%q: %v", tt.args, r.err)
			continue
		}
		if diff := cmp.Diff(tt.reads, a.Reads()); diff != "" {
			t.Errorf("%q: reads (-want +got):\n%s", tt.args, diff)
		}
	}
}

func TestDelayTable(t *testing.T) {
	r := runKrm(t, newFakeAgent(t), "delay")
	if r.err != nil {
		t.Fatal(r.err)
	}
	table, note, _ := strings.Cut(r.stdout, "\n\n")
	want := "" +
		"RESOURCE   EVENT   COUNT   UNMEASURED   MIN      P50      P90      P99      MAX\n" +
		"pods       ADDED   3       0            200ms    500ms    900ms    990ms    1s\n" +
		"probe      ADDED   2       0            100µs    200µs    300µs    300µs    300µs"
	if diff := cmp.Diff(want, table); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(note, "Source: memory, since ") || !strings.Contains(strings.Join(strings.Fields(note), " "), "object timestamps have 1-second resolution") {
		t.Errorf("note %q, want the source and the resolution", note)
	}
	// Charting every resource leaves out those without samples.
	r = runKrm(t, newFakeAgent(t), "delay", "--chart")
	if r.err != nil {
		t.Fatal(r.err)
	}
	var titles []string
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(l, "stream delay") {
			titles = append(titles, strings.Fields(l)[3])
		}
	}
	if diff := cmp.Diff([]string{"pods", "probe"}, titles); diff != "" {
		t.Errorf("charts (-want +got):\n%s", diff)
	}
}

// -o prints the agent's krm.io DelayReports, one per resource, through
// cli-runtime's printers.
func TestDelayOutput(t *testing.T) {
	a := newFakeAgent(t)
	r := runKrm(t, a, "delay", "pods", "probe", "-o", "json")
	var list krmv1alpha1.DelayReportList
	if err := json.Unmarshal([]byte(r.stdout), &list); r.err != nil || err != nil {
		t.Fatalf("delay -o json: %v, %v\n%s", r.err, err, r.stdout)
	}
	if list.APIVersion != "krm.io/v1alpha1" || list.Kind != "DelayReportList" || len(list.Items) != 2 ||
		list.Items[0].Kind != "DelayReport" || list.Items[0].Name != "pods" || list.Items[1].Name != "probe" || list.Items[0].Status.Stats[0].Count != 3 {
		t.Errorf("delay -o json: %+v, want the DelayReports of pods and probe", list)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "name"}, "delayreport.krm.io/pods\ndelayreport.krm.io/probe\n"},
		{[]string{"-o", `jsonpath={range .items[*]}{.metadata.name} {.status.stats[0].p99Seconds}{"\n"}{end}`}, "pods 0.99\nprobe 0.0003\n"},
		{
			[]string{"-o", "custom-columns=NAME:.metadata.name,SOURCE:.status.source,COUNT:.status.stats[*].count"},
			"NAME    SOURCE   COUNT\npods    memory   3\nprobe   memory   2\n",
		},
		{[]string{"-o", "custom-columns=NAME:.metadata.name", "--no-headers"}, "pods\nprobe\n"},
	} {
		r := runKrm(t, a, append([]string{"delay", "pods", "probe"}, tt.args...)...)
		if r.err != nil {
			t.Errorf("delay %q: %v", tt.args, r.err)
			continue
		}
		if diff := cmp.Diff(tt.want, r.stdout); diff != "" {
			t.Errorf("delay %q (-want +got):\n%s", tt.args, diff)
		}
	}
}

func TestDelayRejects(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--since", "0s"}, "--since must be positive, e.g. 1h; got 0s"},
		{[]string{"--event", "MODIFIED"}, `--event "MODIFIED": use ADDED or DELETED`},
		{[]string{"--chart", "-o", "json"}, "--chart draws text; it cannot be combined with -o json"},
		{
			[]string{"-o", "wide"},
			`unable to match a printer suitable for the output format "wide", allowed formats are: ` +
				"custom-columns,custom-columns-file,go-template,go-template-file,json,jsonpath,jsonpath-as-json,jsonpath-file,kyaml,name,template,templatefile,yaml",
		},
		{[]string{"widgets"}, `the krm agent does not cache a resource type "widgets"; it caches: deployments, nodes, pods, services (start the agent with --resources to add more)`},
	} {
		a := newFakeAgent(t)
		r := runKrm(t, a, append([]string{"delay"}, tt.args...)...)
		if r.err == nil || r.err.Error() != tt.want {
			t.Errorf("delay %q: %v, want %q", tt.args, r.err, tt.want)
		}
		if reads := a.Reads(); len(reads) != 0 || r.stdout != "" {
			t.Errorf("delay %q: read %q and printed %q, want neither", tt.args, reads, r.stdout)
		}
	}
}
