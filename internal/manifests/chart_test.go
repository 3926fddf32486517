package manifests_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/krm-project/krm/internal/manifests"
	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/test/cluster"
)

// The chart (charts/krm) and the kustomizations (manifests/) describe the
// same install twice. TestChartMatchesKustomize renders both and compares
// them object by object, whole objects, so that an edit to one that is not
// made to the other fails here. The differences it allows are these, and
// only these:
//
//  1. The Namespace krm-system is the kustomize install's only: a chart
//     installs into the release's namespace (`helm install -n krm-system
//     --create-namespace`, or one made beforehand) and does not own it, so
//     that `helm uninstall` does not delete a namespace it did not make.
//  2. The Secrets krm-redis and krm-influxdb are the chart's only: Helm
//     generates them once (lookup, then randAlphaNum) and keeps them across
//     upgrades, where the kustomize install's initContainers (krm-agent
//     ensure-secret) make them at the pod's first start. So the chart has no
//     initContainers, and its agent gets no access to Secrets: the kustomize
//     Role's rules on secrets and its Role/RoleBinding krm-agent-influxdb
//     (get on krm-influxdb) are the kustomize install's only.
//  3. The chart's objects carry Helm's labels besides the kustomize ones
//     (helmLabels); every kustomize label must be there with its value.
//  4. The chart's agent has --resources, generated from the same values as
//     its ClusterRole; its value must name exactly api.DefaultResources,
//     which the kustomize install's agent uses by not passing the flag.
//
// Argument order is not compared (flags), nor the order of the ClusterRole's
// rules (compared as a set of group, resource and verb).
var chartInstalls = []struct {
	kustomization string
	values        string // under charts/krm; "" for the chart's defaults
}{
	{".", ""},
	{"overlays/ha", "examples/ha.yaml"},
	{"overlays/influxdb", "examples/influxdb.yaml"},
	{"overlays/service", "examples/secure.yaml"},
}

// helmLabels are the labels the chart may add (difference 3).
var helmLabels = []string{
	"app.kubernetes.io/instance",
	"app.kubernetes.io/managed-by",
	"app.kubernetes.io/version",
	"helm.sh/chart",
}

const chartDir = "../../charts/krm"

// helm returns the cached helm, building it on first use (minutes, once).
func helm(t *testing.T) string {
	t.Helper()
	path, err := cluster.EnsureHelm(t.Context(), cluster.DefaultConfig().Cache, testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// object is a decoded manifest.
type object = map[string]any

func key(o object) string {
	meta, _ := o["metadata"].(map[string]any)
	return fmt.Sprintf("%s %v/%v", o["kind"], meta["namespace"], meta["name"])
}

func decodeAll(t *testing.T, what string, data []byte) map[string]object {
	t.Helper()
	out := map[string]object{}
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		var o object
		if err := yaml.Unmarshal(doc, &o); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, doc)
		}
		if o == nil {
			continue
		}
		k := key(o)
		if _, dup := out[k]; dup {
			t.Fatalf("%s has %s twice", what, k)
		}
		out[k] = o
	}
	return out
}

func renderChart(ctx context.Context, helm, values string) ([]byte, error) {
	args := []string{"template", "krm", chartDir, "--namespace", "krm-system"}
	if values != "" {
		args = append(args, "--values", filepath.Join(chartDir, values))
	}
	cmd := exec.CommandContext(ctx, helm, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

func TestChartMatchesKustomize(t *testing.T) {
	h := helm(t)
	for _, in := range chartInstalls {
		t.Run(in.kustomization, func(t *testing.T) {
			kdata, err := manifests.Render("../../manifests", manifests.Target{Kustomization: in.kustomization})
			if err != nil {
				t.Fatal(err)
			}
			cdata, err := renderChart(t.Context(), h, in.values)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range compareInstalls(decodeAll(t, "kustomize "+in.kustomization, kdata), decodeAll(t, "chart "+in.values, cdata)) {
				t.Errorf("chart (values %q) and kustomization %s differ: %s", in.values, in.kustomization, d)
			}
		})
	}
}

// compareInstalls applies the allowed differences and returns the rest, one
// sentence each.
func compareInstalls(kust, chart map[string]object) []string {
	var diffs []string
	onlyKustomize := map[string]bool{
		"Namespace <nil>/krm-system":                true, // 1
		"Role krm-system/krm-agent-influxdb":        true, // 2
		"RoleBinding krm-system/krm-agent-influxdb": true, // 2
	}
	onlyChart := map[string]bool{
		"Secret krm-system/krm-redis":    true, // 2
		"Secret krm-system/krm-influxdb": true, // 2
	}
	for _, k := range sortedKeys(kust) {
		c, ok := chart[k]
		switch {
		case !ok && onlyKustomize[k]:
			continue
		case !ok:
			diffs = append(diffs, k+" is in the kustomization only")
			continue
		}
		if d := compareObject(k, kust[k], c); d != "" {
			diffs = append(diffs, d)
		}
	}
	for _, k := range sortedKeys(chart) {
		if _, ok := kust[k]; !ok && !onlyChart[k] {
			diffs = append(diffs, k+" is in the chart only")
		}
	}
	return diffs
}

func sortedKeys(m map[string]object) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func compareObject(k string, kust, chart object) string {
	kust, chart = deepCopy(kust), deepCopy(chart)
	var diffs []string
	if d := compareLabels(kust, chart); d != "" {
		diffs = append(diffs, d)
	}
	switch kust["kind"] {
	case "Deployment":
		spec := podSpec(kust)
		delete(spec, "initContainers") // 2
		if d := normaliseAgentArgs(kust, chart); d != "" {
			diffs = append(diffs, d)
		}
	case "Role":
		kust["rules"] = slices.DeleteFunc(kust["rules"].([]any), func(r any) bool { // 2
			return slices.Contains(r.(map[string]any)["resources"].([]any), any("secrets"))
		})
	case "ClusterRole":
		kust["rules"], chart["rules"] = ruleSet(kust["rules"]), ruleSet(chart["rules"])
	}
	if d := cmp.Diff(kust, chart); d != "" {
		diffs = append(diffs, "(-kustomize +chart):\n"+d)
	}
	if len(diffs) == 0 {
		return ""
	}
	return k + ": " + strings.Join(diffs, "; ")
}

// compareLabels checks difference 3 and then removes the labels.
func compareLabels(kust, chart object) string {
	km, cm := kust["metadata"].(map[string]any), chart["metadata"].(map[string]any)
	kl, _ := km["labels"].(map[string]any)
	cl, _ := cm["labels"].(map[string]any)
	delete(km, "labels")
	delete(cm, "labels")
	var diffs []string
	for k, v := range kl {
		if cl[k] != v {
			diffs = append(diffs, fmt.Sprintf("label %s is %v in the chart, %v in the kustomization", k, cl[k], v))
		}
	}
	for k := range cl {
		if _, ok := kl[k]; !ok && !slices.Contains(helmLabels, k) {
			diffs = append(diffs, fmt.Sprintf("label %s is in the chart only", k))
		}
	}
	slices.Sort(diffs)
	return strings.Join(diffs, "; ")
}

func podSpec(o object) map[string]any {
	return o["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
}

// normaliseAgentArgs checks difference 4, removes --resources and sorts
// the agent container's args in both.
func normaliseAgentArgs(kust, chart object) string {
	var diff string
	for i, o := range []object{kust, chart} {
		for _, c := range podSpec(o)["containers"].([]any) {
			c := c.(map[string]any)
			if c["name"] != "agent" {
				continue
			}
			var args []string
			for _, a := range c["args"].([]any) {
				s := a.(string)
				if v, ok := strings.CutPrefix(s, "--resources="); ok && i == 1 {
					diff = checkResourcesArg(v)
					continue
				}
				args = append(args, s)
			}
			slices.Sort(args)
			sorted := make([]any, len(args))
			for j, a := range args {
				sorted[j] = a
			}
			c["args"] = sorted
		}
	}
	return diff
}

// checkResourcesArg says how the chart's --resources value differs from the
// agent's defaults, by plural name: the chart names them as plural.group.
func checkResourcesArg(v string) string {
	var got []string
	for _, r := range strings.Split(v, ",") {
		plural, _, _ := strings.Cut(r, ".")
		got = append(got, plural)
	}
	want := slices.Clone(api.DefaultResources)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return fmt.Sprintf("the chart's --resources=%s names %v, the agent's default (the kustomization's) is %v", v, got, want)
	}
	return ""
}

// ruleSet turns RBAC rules into sorted "group resource verb" strings.
func ruleSet(rules any) any {
	var set []any
	for _, r := range rules.([]any) {
		r := r.(map[string]any)
		for _, g := range r["apiGroups"].([]any) {
			for _, res := range r["resources"].([]any) {
				for _, v := range r["verbs"].([]any) {
					set = append(set, fmt.Sprintf("%v %v %v", g, res, v))
				}
			}
		}
	}
	slices.SortFunc(set, func(a, b any) int { return strings.Compare(a.(string), b.(string)) })
	return set
}

func deepCopy(o object) object {
	data, err := yaml.Marshal(o)
	if err != nil {
		panic(err)
	}
	var out object
	if err := yaml.Unmarshal(data, &out); err != nil {
		panic(err)
	}
	return out
}

// TestChartDriftFails shows the comparison catches a drift: a kustomize
// agent with another probe interval, and a ClusterRole with a resource the
// chart does not watch, each fail it.
func TestChartDriftFails(t *testing.T) {
	h := helm(t)
	kdata, err := manifests.Render("../../manifests", manifests.Target{Kustomization: "."})
	if err != nil {
		t.Fatal(err)
	}
	cdata, err := renderChart(t.Context(), h, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ from, to, want string }{
		{"--probe-interval=10s", "--probe-interval=20s", "--probe-interval=20s"},
		{"  - nodes\n", "  - nodes\n  - secrets\n", "secrets"},
		{"memory: 256Mi", "memory: 300Mi", "300Mi"},
	} {
		edited := strings.Replace(string(kdata), tc.from, tc.to, 1)
		if edited == string(kdata) {
			t.Fatalf("the kustomize install no longer has %q; update this test", tc.from)
		}
		diffs := compareInstalls(decodeAll(t, "edited", []byte(edited)), decodeAll(t, "chart", cdata))
		if len(diffs) == 0 || !strings.Contains(strings.Join(diffs, "\n"), tc.want) {
			t.Errorf("after replacing %q with %q the comparison reports %q, want a difference naming %q", tc.from, tc.to, diffs, tc.want)
		}
	}
}

// TestChartSchemaRejectsBadValues: wrong types and modes missing what they
// need fail `helm template` with a message that names the value.
func TestChartSchemaRejectsBadValues(t *testing.T) {
	h := helm(t)
	for _, tc := range []struct{ set, want string }{
		{"verifyInterval=soon", "verifyInterval"},
		{"ha.enabled=yes", "ha"},
		{"store.type=etcd", "store"},
		{"redis.mode=url", "redis.url"},
		{"redis.mode=sentinel,redis.addrs[0]=s:26379", "redis.sentinelMaster"},
		{"ha.enabled=true,store.type=memory", "store.type redis"},
		{"watch=null", "watch"},
		{"secure.port=70000", "port"},
	} {
		cmd := exec.CommandContext(t.Context(), h, "template", "krm", chartDir, "--set", tc.set)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("helm template --set %s succeeded, want an error naming %s", tc.set, tc.want)
			continue
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("helm template --set %s: the error does not name %s:\n%s", tc.set, tc.want, out)
		}
	}
}

// TestChartExamplesRender: every example values file renders, and the
// ClusterRole follows watch.
func TestChartExamplesRender(t *testing.T) {
	h := helm(t)
	files, err := filepath.Glob(filepath.Join(chartDir, "examples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples in %s/examples: %v", chartDir, err)
	}
	for _, f := range files {
		rel, _ := filepath.Rel(chartDir, f)
		out, err := renderChart(t.Context(), h, rel)
		if err != nil {
			t.Error(err)
			continue
		}
		if rel == filepath.Join("examples", "memory-crds.yaml") {
			objs := decodeAll(t, rel, out)
			cr := objs["ClusterRole <nil>/krm-agent"]
			got := ruleSet(cr["rules"])
			// get on namespaces is kube-system's, by name: the cluster's identity.
			want := []any{" namespaces get", " nodes get", " nodes list", " nodes watch", " pods get", " pods list", " pods watch",
				"cert-manager.io certificates get", "cert-manager.io certificates list", "cert-manager.io certificates watch"}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("%s: ClusterRole rules (-want +got):\n%s", rel, d)
			}
			if _, ok := objs["Deployment krm-system/krm-redis"]; ok {
				t.Errorf("%s: store.type memory still installs Redis", rel)
			}
		}
	}
}
