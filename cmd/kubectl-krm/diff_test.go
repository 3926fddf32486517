package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/krm-project/krm/pkg/api"
)

// drift is the path of a resource's DriftReport.
func drift(resource string) string { return "/apis/krm.io/v1alpha1/driftreports/" + resource }

// TestDiffVerified checks which drift reports `kubectl krm diff verified`
// reads and its exit codes: 0 without differences, 1 with, 2 on errors.
func TestDiffVerified(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	added := api.UnverifiedChange{Type: api.ChangeAdded, UID: "u1", Namespace: "team-a", Name: "new", ResourceVersion: "12", ObservedAt: at,
		Object: json.RawMessage(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"new","namespace":"team-a"}}`)}
	missed := func(listRV string) api.DriftEntry {
		return api.DriftEntry{Kind: api.MissedAdded, UID: "u2", Namespace: "team-a", Name: "missed", VerifiedResourceVersion: "9", ListResourceVersion: listRV, FoundAt: at,
			Object: json.RawMessage(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"missed","namespace":"team-a"}}`)}
	}
	tests := []struct {
		name  string
		args  []string
		pods  api.DriftReport // the pods report; the others are empty
		code  int
		reads []string
		// out are substrings of stdout; none means stdout must be empty.
		out []string
		// exact: stdout is out[0].
		exact bool
	}{
		{
			name: "no differences", args: []string{"diff", "verified"},
			reads: []string{drift("deployments"), drift("nodes"), drift("pods"), drift("services")},
		},
		{
			name: "chosen resources, by any name", args: []string{"diff", "verified", "svc", "po"},
			reads: []string{drift("pods"), drift("services")},
		},
		{
			name: "an unverified change", args: []string{"diff", "verified", "pods"},
			pods: api.DriftReport{Resource: "pods", VerifiedResourceVersion: "10", Unverified: []api.UnverifiedChange{added}},
			code: 1, reads: []string{drift("pods")},
			out: []string{"RESOURCE   NAMESPACE   NAME   CHANGE   STREAMED   VERIFIED   AGE\n", "pods       team-a      new    Added    12         <none>"},
		},
		{
			name: "drift found by the last LIST", args: []string{"diff", "verified", "pods", "-o", "diff"},
			pods: api.DriftReport{Resource: "pods", VerifiedResourceVersion: "10", Ledger: []api.DriftEntry{missed("10")}},
			code: 1, reads: []string{drift("pods")},
			out: []string{"diff -u -N verified/v1.Pod.team-a.missed streamed/v1.Pod.team-a.missed\n", "+  name: missed\n"},
		},
		{
			name: "drift found by an earlier LIST", args: []string{"diff", "verified", "pods"},
			pods:  api.DriftReport{Resource: "pods", VerifiedResourceVersion: "11", Ledger: []api.DriftEntry{missed("10")}},
			reads: []string{drift("pods")},
		},
		{
			name: "drift found by an earlier LIST, --history", args: []string{"diff", "verified", "pods", "--history", "--no-headers"},
			pods: api.DriftReport{Resource: "pods", VerifiedResourceVersion: "11", Ledger: []api.DriftEntry{missed("10")}},
			code: 1, reads: []string{drift("pods")},
			out: []string{"pods   team-a   missed   MissedAdded   <none>   9"},
		},
		{
			name: "json without differences", args: []string{"diff", "verified", "pods", "-o", "json"},
			pods:  api.DriftReport{Resource: "pods", VerifiedResourceVersion: "11"},
			reads: []string{drift("pods")},
			out: []string{
				"{\n    \"apiVersion\": \"krm.io/v1alpha1\",\n    \"items\": [\n        {\n            \"apiVersion\": \"krm.io/v1alpha1\",\n            \"kind\": \"DriftReport\",\n",
				`"resource": "pods"`, `"verifiedResourceVersion": "11"`, `"kind": "DriftReportList"`,
			},
		},
		{
			name: "yaml with differences", args: []string{"diff", "verified", "pods", "-o", "yaml"},
			pods: api.DriftReport{Resource: "pods", VerifiedResourceVersion: "10", Unverified: []api.UnverifiedChange{added}},
			code: 1, reads: []string{drift("pods")},
			out: []string{"kind: DriftReportList\n", "  kind: DriftReport\n  metadata:\n    name: pods\n", "    resource: pods\n    unverified:\n    - name: new\n"},
		},
		{
			name: "name", args: []string{"diff", "verified", "svc", "pods", "-o", "name"},
			pods: api.DriftReport{Resource: "pods", VerifiedResourceVersion: "10", Unverified: []api.UnverifiedChange{added}},
			code: 1, reads: []string{drift("pods"), drift("services")},
			out: []string{"driftreport.krm.io/pods\ndriftreport.krm.io/services\n"}, exact: true,
		},
		{
			name: "jsonpath", args: []string{"diff", "verified", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.verifiedResourceVersion}{"\n"}{end}`},
			pods:  api.DriftReport{Resource: "pods", VerifiedResourceVersion: "11"},
			reads: []string{drift("deployments"), drift("nodes"), drift("pods"), drift("services")},
			out:   []string{"deployments=\nnodes=\npods=11\nservices=\n"}, exact: true,
		},
		{
			name: "custom-columns", args: []string{"diff", "verified", "pods", "-o", "custom-columns=NAME:.metadata.name,VERIFIED:.status.verifiedAt,CHANGES:.status.unverified[*].name"},
			pods: api.DriftReport{Resource: "pods", VerifiedAt: at, VerifiedResourceVersion: "10", Unverified: []api.UnverifiedChange{added}},
			code: 1, reads: []string{drift("pods")},
			out: []string{"NAME   VERIFIED               CHANGES\npods   2026-03-01T12:00:00Z   new\n"}, exact: true,
		},
		{
			name: "custom-columns without headers", args: []string{"diff", "verified", "pods", "-o", "custom-columns=NAME:.metadata.name", "--no-headers"},
			reads: []string{drift("pods")},
			out:   []string{"pods\n"}, exact: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newFakeAgent(t)
			if tt.pods.Resource != "" {
				a.drift["pods"] = tt.pods
			}
			r := runKrm(t, a, tt.args...)
			if code := exitCodeOf(r.err); code != tt.code {
				t.Errorf("exit code %d (%v), want %d", code, r.err, tt.code)
			}
			if r.err != nil && r.err.Error() != "" {
				t.Errorf("error message %q, want none: differences are not an error", r.err)
			}
			if diff := cmp.Diff(tt.reads, a.Reads()); diff != "" {
				t.Errorf("reads (-want +got):\n%s", diff)
			}
			if len(tt.out) == 0 && r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
			for _, w := range tt.out {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
				}
			}
			if tt.exact && r.stdout != tt.out[0] {
				t.Errorf("stdout %q, want exactly %q", r.stdout, tt.out[0])
			}
		})
	}
}

func TestDiffVerifiedErrorsExit2(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"diff", "verified", "-o", "wide"}, `unable to match a printer suitable for the output format "wide", allowed formats are: ` +
			"custom-columns,custom-columns-file,diff,go-template,go-template-file,json,jsonpath,jsonpath-as-json,jsonpath-file,kyaml,name,template,templatefile,yaml"},
		{[]string{"diff", "verified", "-o", "custom-columns="}, "custom-columns format specified but no custom columns given"},
		{[]string{"diff", "verified", "widgets"}, `the krm agent does not cache a resource type "widgets"; it caches: deployments, nodes, pods, services (start the agent with --resources to add more)`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			a := newFakeAgent(t)
			r := runKrm(t, a, tt.args...)
			if code := exitCodeOf(r.err); code != 2 || r.err.Error() != tt.want {
				t.Errorf("exit code %d, error %v; want 2 and %q", code, r.err, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		a := newFakeAgent(t)
		a.srv.Close()
		r := runKrm(t, a, "diff", "verified")
		if code := exitCodeOf(r.err); code != 2 || !strings.Contains(r.err.Error(), "is unreachable") {
			t.Errorf("exit code %d, error %v; want 2 and an unreachable agent", code, r.err)
		}
	})
}

func exitCodeOf(err error) int {
	if err == nil {
		return 0
	}
	return exitCode(err)
}

func TestExitCode(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{errors.New("boom"), 1},
		{&exitError{code: 1}, 1},
		{&exitError{code: 2, err: errors.New("boom")}, 2},
		{fmt.Errorf("running: %w", &exitError{code: 2}), 2},
	} {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
	if got := (&exitError{code: 2, err: errors.New("boom")}).Error(); got != "boom" {
		t.Errorf("an exitError's message is %q, want its error's", got)
	}
}
