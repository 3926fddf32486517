package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/krm-project/krm/pkg/api"
	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

// The Kubernetes paths of the fake agent's resources.
const (
	teamAPods        = "/api/v1/namespaces/team-a/pods"
	otherPods        = "/api/v1/namespaces/other/pods"
	teamADeployments = "/apis/apps/v1/namespaces/team-a/deployments"
	otherDeployments = "/apis/apps/v1/namespaces/other/deployments"
	nodes            = "/api/v1/nodes"
)

// TestGetArguments checks what `kubectl krm get` asks the agent for, given
// its arguments and flags: the Kubernetes paths and parameters, krm's view
// and maxStaleness among them. The kubeconfig's namespace is team-a.
func TestGetArguments(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		reads []string
	}{
		{"one type", []string{"get", "pods"}, []string{teamAPods + "?limit=500&view=aggregated"}},
		{"-n", []string{"get", "pods", "-n", "other"}, []string{otherPods + "?limit=500&view=aggregated"}},
		{"-A", []string{"get", "pods", "-A"}, []string{"/api/v1/pods?limit=500&view=aggregated"}},
		{"cluster-scoped", []string{"get", "nodes", "-n", "other"}, []string{nodes + "?limit=500&view=aggregated"}},
		{"comma-separated types, short names", []string{"get", "po,deploy,no"}, []string{teamAPods + "?limit=500&view=aggregated", teamADeployments + "?limit=500&view=aggregated", nodes + "?limit=500&view=aggregated"}},
		{"empty types are ignored", []string{"get", "pods,"}, []string{teamAPods + "?limit=500&view=aggregated"}},
		{"kind and plural.group", []string{"get", "Deployment,deployments.apps"}, []string{teamADeployments + "?limit=500&view=aggregated", teamADeployments + "?limit=500&view=aggregated"}},
		{"names", []string{"get", "pods", "a", "b"}, []string{teamAPods + "/a?view=aggregated", teamAPods + "/b?view=aggregated"}},
		{"names of several types", []string{"get", "pods,deploy", "web", "-n", "other"}, []string{otherPods + "/web?view=aggregated", otherDeployments + "/web?view=aggregated"}},
		{"TYPE/NAME", []string{"get", "pod/a", "deploy/web", "node/n1"}, []string{teamAPods + "/a?view=aggregated", teamADeployments + "/web?view=aggregated", nodes + "/n1?view=aggregated"}},
		{"TYPE/NAME -n", []string{"get", "pod/a", "-n", "other"}, []string{otherPods + "/a?view=aggregated"}},
		{
			"selectors",
			[]string{"get", "pods", "-l", "app in (web),tier!=cache", "--field-selector", "status.phase=Running"},
			[]string{teamAPods + "?fieldSelector=status.phase%3DRunning&labelSelector=app+in+%28web%29%2Ctier%21%3Dcache&limit=500&view=aggregated"},
		},
		{"view and staleness", []string{"get", "pods", "--view", "verified", "--max-staleness", "1h"}, []string{teamAPods + "?limit=500&maxStaleness=1h0m0s&view=verified"}},
		{"name with view and staleness", []string{"get", "pods", "a", "--view", "streamed", "--max-staleness", "2h"}, []string{teamAPods + "/a?maxStaleness=2h0m0s&view=streamed"}},
		{"no chunks", []string{"get", "pods", "--chunk-size", "0"}, []string{teamAPods + "?view=aggregated"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newFakeAgent(t)
			r := runKrm(t, a, tt.args...)
			if r.err != nil {
				t.Fatalf("kubectl krm %s: %v\nstderr: %s", strings.Join(tt.args, " "), r.err, r.stderr)
			}
			if diff := cmp.Diff(tt.reads, a.Reads()); diff != "" {
				t.Errorf("kubectl krm %s: reads (-want +got):\n%s", strings.Join(tt.args, " "), diff)
			}
		})
	}
}

// TestGetRejects checks the arguments refused before anything is read, and
// with what message.
func TestGetRejects(t *testing.T) {
	pairs := "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'kubectl krm get resource/<resource_name>' instead of 'kubectl krm get resource resource/<resource_name>'): "
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"get"}, "you must specify the type of resource to get, e.g. `kubectl krm get pods`; `kubectl krm status` lists the resources the agent caches"},
		{[]string{"get", "pod/a", "pods"}, pairs + `"pods"`},
		{[]string{"get", "pod/a", "b"}, pairs + `"b"`},
		{[]string{"get", "pod/"}, pairs + `"pod/"`},
		{[]string{"get", "/a"}, pairs + `"/a"`},
		{[]string{"get", "pods", "a", "-l", "app=web"}, "selectors (-l, --field-selector) cannot be used with resource names"},
		{[]string{"get", "pod/a", "--field-selector", "status.phase=Running"}, "selectors (-l, --field-selector) cannot be used with resource names"},
		{[]string{"get", "pods", "a", "-A"}, "a resource cannot be retrieved by name across all namespaces"},
		{[]string{"get", "pod/a", "--all-namespaces"}, "a resource cannot be retrieved by name across all namespaces"},
		{[]string{"get", "pods", "--view", "newest"}, `--view: unknown view "newest": use aggregated, verified or streamed`},
		{[]string{"get", "pods", "--max-staleness", "-1s"}, "--max-staleness must not be negative, got -1s"},
		{[]string{"get", "pods", "--chunk-size", "-1"}, "--chunk-size must not be negative (0 disables chunking), got -1"},
		{[]string{"get", "pods", "--show-source", "-o", "yaml"}, "--show-source adds table columns; it cannot be used with -o yaml"},
		{[]string{"get", "pods,deployments", "-w"}, "you may only specify a single resource type"},
		{[]string{"get", "pods,po", "--watch-only"}, "you may only specify a single resource type"},
		{[]string{"get", "pods", "-o", "yml"}, `unable to match a printer suitable for the output format "yml", allowed formats are: …`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			a := newFakeAgent(t)
			r := runKrm(t, a, tt.args...)
			if r.err == nil {
				t.Fatalf("succeeded, want %q", tt.want)
			}
			got := r.err.Error()
			if prefix, ok := strings.CutSuffix(tt.want, "…"); ok {
				if !strings.HasPrefix(got, prefix) {
					t.Errorf("error %q, want it to start with %q", got, prefix)
				}
			} else if got != tt.want {
				t.Errorf("error %q, want %q", got, tt.want)
			}
			if code := exitCode(r.err); code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			if reads := a.Reads(); len(reads) != 0 {
				t.Errorf("read %q before refusing, want nothing", reads)
			}
		})
	}
}

// As kubectl: TYPE/NAME pairs of several types cannot be watched.
func TestGetWatchPairsOfOneType(t *testing.T) {
	a := newFakeAgent(t)
	r := runKrm(t, a, "get", "pod/a", "deployment/b", "-w")
	if r.err == nil || r.err.Error() != "you may only specify a single resource type" || exitCode(r.err) != 1 {
		t.Errorf("get pod/a deployment/b -w: error %v (exit %d), want kubectl's single-type error, exit 1", r.err, exitCode(r.err))
	}
	if r.stdout != "" {
		t.Errorf("printed %q before failing", r.stdout)
	}
}

// As kubectl: several named objects are printed, then watching them is
// refused; one named object is watched on its own.
func TestGetWatchSeveralNames(t *testing.T) {
	for _, args := range [][]string{
		{"get", "pods", "a", "b", "-n", "team-a", "-w", "-o", "name"},
		{"get", "pod/a", "po/b", "-n", "team-a", "-w", "-o", "name"},
	} {
		r := runKrm(t, newFakeAgent(t), args...)
		want := "you may only watch a single resource or type of resource at a time"
		if r.err == nil || r.err.Error() != want || exitCode(r.err) != 1 {
			t.Errorf("%q: error %v (exit %d), want %q, exit 1", args, r.err, exitCode(r.err), want)
		}
		if r.stdout != "pod/a\npod/b\n" {
			t.Errorf("%q: printed %q, want both pods first", args, r.stdout)
		}
	}
}

func TestGetUnknownResourceType(t *testing.T) {
	a := newFakeAgent(t)
	r := runKrm(t, a, "get", "pods,widgets")
	want := `the krm agent does not cache a resource type "widgets"; it caches: deployments, nodes, pods, services (start the agent with --resources to add more)`
	if r.err == nil || r.err.Error() != want {
		t.Errorf("error %v, want %q", r.err, want)
	}
	if r.stdout != "" {
		t.Errorf("printed %q before failing", r.stdout)
	}
}

// Missing names are reported as kubectl reports them, after the objects
// found, and make the exit code 1 without another message.
func TestGetMissingNames(t *testing.T) {
	tests := []struct {
		args           []string
		stdout, stderr string
	}{
		{
			[]string{"get", "pods", "b", "nosuch", "a", "-o", "name"},
			"pod/b\npod/a\n",
			"Error from server (NotFound): pods \"nosuch\" not found\n",
		},
		{
			[]string{"get", "deploy/nosuch", "pod/a", "-o", "name"},
			"pod/a\n",
			"Error from server (NotFound): deployments.apps \"nosuch\" not found\n",
		},
		{
			// Nothing found: no "No resources found", no empty list.
			[]string{"get", "pods", "nosuch"},
			"",
			"Error from server (NotFound): pods \"nosuch\" not found\n",
		},
		{
			[]string{"get", "pods", "nosuch", "-o", "json"},
			"",
			"Error from server (NotFound): pods \"nosuch\" not found\n",
		},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runKrm(t, newFakeAgent(t), tt.args...)
			var ee *exitError
			if !errors.As(r.err, &ee) || ee.code != 1 || r.err.Error() != "" {
				t.Errorf("error %#v, want an exit code of 1 without a message", r.err)
			}
			if r.stdout != tt.stdout || r.stderr != tt.stderr {
				t.Errorf("stdout %q, stderr %q; want %q and %q", r.stdout, r.stderr, tt.stdout, tt.stderr)
			}
		})
	}
}

func TestGetTables(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		// In the order asked for; one type, so no kind prefixes.
		{[]string{"get", "pod/b", "pod/a", "-o", "wide"}, "" +
			"NAME   READY   STATUS   RESTARTS   AGE         IP       NODE     NOMINATED NODE   READINESS GATES\n" +
			"b      0/0              0          <unknown>   <none>   <none>   <none>           <none>\n" +
			"a      0/0              0          <unknown>   <none>   <none>   <none>           <none>\n"},
		// Several types: a table each, names prefixed with the kind.
		{[]string{"get", "pods,deploy"}, "" +
			"NAME    READY   STATUS   RESTARTS   AGE\n" +
			"pod/a   0/0              0          <unknown>\n" +
			"pod/b   0/0              0          <unknown>\n" +
			"\n" +
			"NAME                  READY   UP-TO-DATE   AVAILABLE   AGE\n" +
			"deployment.apps/web   0/0     0            0           <unknown>\n"},
		{[]string{"get", "pods", "-A"}, "" +
			"NAMESPACE   NAME   READY   STATUS   RESTARTS   AGE\n" +
			"other       a      0/0              0          <unknown>\n" +
			"other       web    0/0              0          <unknown>\n" +
			"team-a      a      0/0              0          <unknown>\n" +
			"team-a      b      0/0              0          <unknown>\n"},
		{[]string{"get", "pods", "--show-source"}, "" +
			"NAME   READY   STATUS   RESTARTS   AGE         SOURCE     VERIFIED\n" +
			"a      0/0              0          <unknown>   verified   30m\n" +
			"b      0/0              0          <unknown>   verified   30m\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runKrm(t, newFakeAgent(t), tt.args...)
			if r.err != nil {
				t.Fatalf("%v\nstderr: %s", r.err, r.stderr)
			}
			if diff := cmp.Diff(tt.want, r.stdout); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	list := &krmv1alpha1.ResourceStatusList{}
	for _, r := range fakeResources {
		list.Items = append(list.Items, krmv1alpha1.ResourceStatus{Status: krmv1alpha1.ResourceState{ResourceInfo: r}})
	}
	for typ, want := range map[string]string{
		"pods": "pods", "pod": "pods", "po": "pods", "Pod": "pods", "PODS": "pods",
		"deployments": "deployments", "deployment": "deployments", "deploy": "deployments", "deployments.apps": "deployments",
		"svc": "services", "no": "nodes", "Node": "nodes",
	} {
		info, err := resolve(list, typ)
		if err != nil || info.Name != want {
			t.Errorf("resolve(%q) = %q, %v; want %q", typ, info.Name, err, want)
		}
	}
	for _, typ := range []string{"deployments.extensions", "pods.apps", "p", ""} {
		if info, err := resolve(list, typ); err == nil {
			t.Errorf("resolve(%q) = %q, want an error", typ, info.Name)
		}
	}
}

// --chunk-size pages the list with limit and continue, as kubectl does, and
// prints the pages as one table.
func TestGetChunks(t *testing.T) {
	a := newFakeAgent(t)
	r := runKrm(t, a, "get", "pods", "-A", "--chunk-size", "3", "-o", "name")
	if r.err != nil {
		t.Fatalf("%v\nstderr: %s", r.err, r.stderr)
	}
	if want := "pod/a\npod/web\npod/a\npod/b\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	reads := a.Reads()
	if len(reads) != 2 || reads[0] != "/api/v1/pods?limit=3&view=aggregated" ||
		!strings.HasPrefix(reads[1], "/api/v1/pods?continue=") || !strings.HasSuffix(reads[1], "&limit=3&view=aggregated") {
		t.Errorf("reads %q, want a first page of 3 and the next one by its continue token", reads)
	}
}

// The agent refuses data verified longer ago than --max-staleness, and the
// plugin says why.
func TestGetMaxStaleness(t *testing.T) {
	for _, args := range [][]string{{"get", "pods", "--max-staleness", "1m"}, {"get", "pod/a", "--max-staleness", "1m"}} {
		r := runKrm(t, newFakeAgent(t), args...)
		if r.err == nil || !strings.HasPrefix(r.err.Error(), "pods were last verified 30m") || !strings.HasSuffix(r.err.Error(), "ago, older than maxStaleness=1m0s") {
			t.Errorf("%q: error %v, want the agent's refusal", args, r.err)
		}
		if r.stdout != "" {
			t.Errorf("%q: printed %q", args, r.stdout)
		}
	}
}

// kube-apiserver leaves apiVersion and kind out of a typed list's items;
// the plugin takes them from the resource.
func TestDecodeObject(t *testing.T) {
	deployments := fakeResources[1]
	for raw, want := range map[string]string{
		`{"metadata":{"name":"web"}}`:                                            "apps/v1 Deployment",
		`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"}}`: "apps/v1 Deployment",
	} {
		u, err := decodeObject([]byte(raw), deployments)
		if err != nil || u.GetAPIVersion()+" "+u.GetKind() != want || u.GetName() != "web" {
			t.Errorf("decodeObject(%s) = %v, %v; want web, %s", raw, u, err, want)
		}
	}
	for _, raw := range []string{`null`, `[]`, `{`} {
		if u, err := decodeObject([]byte(raw), deployments); err == nil {
			t.Errorf("decodeObject(%s) = %v, want an error", raw, u)
		}
	}
}

// Completion offers what an agent caches by default.
func TestCompletedResources(t *testing.T) {
	if diff := cmp.Diff(api.DefaultResources, completedResources); diff != "" {
		t.Errorf("completed resources (-agent's defaults +completion):\n%s", diff)
	}
}

// An answer from the frames a restarted agent stored, before its own first
// LIST, is printed with a warning on stderr, as kubectl prints the API
// server's warnings; --max-staleness refuses it.
func TestGetWarnsOfStaleFrames(t *testing.T) {
	for _, args := range [][]string{{"get", "pods"}, {"get", "pod/a", "-n", "team-a"}} {
		a := newFakeAgent(t)
		a.stale = true
		r := runKrm(t, a, args...)
		if r.err != nil || !strings.Contains(r.stdout, "a ") {
			t.Errorf("%q: %v, stdout %q", args, r.err, r.stdout)
		}
		if want := "Warning: the krm agent answers pods from the frames it stored before it restarted (last verified 30m ago)"; !strings.HasPrefix(r.stderr, want) || strings.Count(r.stderr, "Warning:") != 1 {
			t.Errorf("%q: stderr %q, want one warning starting %q", args, r.stderr, want)
		}
		r = runKrm(t, a, append(args, "--max-staleness", "1h")...)
		if r.err == nil || !strings.Contains(r.err.Error(), "--max-staleness refuses") || r.stdout != "" {
			t.Errorf("%q --max-staleness 1h: %v, stdout %q, want a refusal", args, r.err, r.stdout)
		}
	}
	r := runKrm(t, newFakeAgent(t), "get", "pods")
	if strings.Contains(r.stderr, "Warning") {
		t.Errorf("a verified answer warned: %q", r.stderr)
	}
}
