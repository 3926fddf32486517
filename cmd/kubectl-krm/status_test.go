package main

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

func TestStatus(t *testing.T) {
	a := newFakeAgent(t)
	r := runKrm(t, a, "status", "--no-headers")
	if r.err != nil {
		t.Fatal(r.err)
	}
	want := "" +
		"pods          30m   10    4     connected   0.0   0     memory\n" +
		"deployments   30m   10    2     connected   0.0   0     memory\n" +
		"services      30m   10    0     connected   0.0   0     memory\n" +
		"nodes         30m   10    1     connected   0.0   0     memory\n"
	if diff := cmp.Diff(want, r.stdout); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if r = runKrm(t, a, "status", "pods"); r.err == nil {
		t.Error("status pods succeeded, want an error: status takes no arguments")
	}
}

// -o prints the agent's krm.io ResourceStatus objects through cli-runtime's
// printers, with apiVersion and kind on the list and on each item.
func TestStatusOutput(t *testing.T) {
	a := newFakeAgent(t)
	r := runKrm(t, a, "status", "-o", "json")
	var list krmv1alpha1.ResourceStatusList
	if err := json.Unmarshal([]byte(r.stdout), &list); r.err != nil || err != nil {
		t.Fatalf("status -o json: %v, %v\n%s", r.err, err, r.stdout)
	}
	if list.APIVersion != "krm.io/v1alpha1" || list.Kind != "ResourceStatusList" || len(list.Items) != 4 {
		t.Errorf("status -o json: %s %s with %d items, want a krm.io/v1alpha1 ResourceStatusList of 4", list.APIVersion, list.Kind, len(list.Items))
	}
	for _, it := range list.Items {
		if it.APIVersion != "krm.io/v1alpha1" || it.Kind != "ResourceStatus" || it.Name != it.Status.Name || !it.Status.StreamConnected {
			t.Errorf("status -o json: item %+v, want a connected ResourceStatus named after its resource", it)
		}
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{
			[]string{"-o", "name"},
			"resourcestatus.krm.io/pods\nresourcestatus.krm.io/deployments\nresourcestatus.krm.io/services\nresourcestatus.krm.io/nodes\n",
		},
		{
			[]string{"-o", "jsonpath={.items[*].metadata.name}"},
			"pods deployments services nodes",
		},
		{
			[]string{"-o", `jsonpath={range .items[?(@.status.namespaced==true)]}{.status.kind}{"\n"}{end}`},
			"Pod\nDeployment\nService\n",
		},
		{
			[]string{"-o", "go-template={{range .items}}{{.metadata.name}}:{{.status.version}} {{end}}"},
			"pods:v1 deployments:v1 services:v1 nodes:v1 ",
		},
		{
			[]string{"--template", "{{len .items}}"},
			"4",
		},
		{
			[]string{"-o", "custom-columns=RESOURCE:.metadata.name,GROUP:.status.group,CONNECTED:.status.streamConnected"},
			"RESOURCE      GROUP    CONNECTED\n" +
				"pods          <none>   true\n" +
				"deployments   apps     true\n" +
				"services      <none>   true\n" +
				"nodes         <none>   true\n",
		},
		{
			[]string{"-o", "custom-columns=RESOURCE:.metadata.name", "--no-headers"},
			"pods\ndeployments\nservices\nnodes\n",
		},
		{
			[]string{"-o", "yaml"},
			"",
		},
	} {
		r := runKrm(t, a, append([]string{"status"}, tt.args...)...)
		if r.err != nil {
			t.Errorf("status %q: %v", tt.args, r.err)
			continue
		}
		if tt.want == "" {
			if want := "apiVersion: krm.io/v1alpha1\nitems:\n- apiVersion: krm.io/v1alpha1\n  kind: ResourceStatus\n  metadata:\n    name: pods\n"; len(r.stdout) < len(want) || r.stdout[:len(want)] != want {
				t.Errorf("status -o yaml starts %q, want %q", r.stdout[:min(len(r.stdout), len(want))], want)
			}
			continue
		}
		if diff := cmp.Diff(tt.want, r.stdout); diff != "" {
			t.Errorf("status %q (-want +got):\n%s", tt.args, diff)
		}
	}
}

func TestStatusRejectsOutputs(t *testing.T) {
	a := newFakeAgent(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{
			[]string{"-o", "table"},
			`unable to match a printer suitable for the output format "table", allowed formats are: ` +
				"custom-columns,custom-columns-file,go-template,go-template-file,json,jsonpath,jsonpath-as-json,jsonpath-file,kyaml,name,template,templatefile,wide,yaml",
		},
		{[]string{"-o", "jsonpath={.items[}"}, "error parsing jsonpath {.items[}, unterminated array"},
	} {
		r := runKrm(t, a, append([]string{"status"}, tt.args...)...)
		if r.err == nil || r.err.Error() != tt.want {
			t.Errorf("status %q: %v, want %q", tt.args, r.err, tt.want)
		}
		if r.stdout != "" {
			t.Errorf("status %q printed %q before failing", tt.args, r.stdout)
		}
	}
}
