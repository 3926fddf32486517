package e2e

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/cluster/clustertest"
	"github.com/krm-project/krm/test/watchproxy"
)

// testDiffVerified checks `kubectl krm diff verified` on an agent that
// caches one quiet namespace: nothing to report (exit 0) once a LIST has
// confirmed every write, a write reported as Added (exit 1) until the next
// LIST confirms it.
func testDiffVerified(t *testing.T, c *cluster.State, cs kubernetes.Interface, bin string, p *plugin) {
	ctx := t.Context()
	ns := clustertest.Namespace(t, c)
	replicas := int32(2)
	labels := map[string]string{"app": "quiet"}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "quiet", Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "quiet", Image: "krm-e2e/quiet:1"}}},
			},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "quiet"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "quiet"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Namespaced resources only: nodes are cluster-wide, and others' changes
	// to them are not quiet.
	resources := []string{"pods", "deployments", "persistentvolumeclaims", "services", "ingresses"}
	a := startAgent(t, bin, "--kubeconfig", c.Kubeconfig, "--namespace", ns, "--resources", strings.Join(resources, ","), "--verify-interval", "5s")
	a.waitReady(t, 30*time.Second)
	waitFor(t, 60*time.Second, "the deployment's pods to run", func() error {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "quiet", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.ObservedGeneration != d.Generation || d.Status.AvailableReplicas != replicas {
			return fmt.Errorf("%d of %d replicas available", d.Status.AvailableReplicas, replicas)
		}
		return podsRunning(ctx, cs, ns, int(replicas))
	})
	// Every write so far is at or below the newest resourceVersion in ns; a
	// LIST at or above it has seen them all.
	newest := newestResourceVersion(t, cs, ns)
	waitFor(t, 30*time.Second, fmt.Sprintf("a LIST of every resource at resourceVersion %d or later", newest), func() error {
		list, err := a.Client.Status(ctx)
		if err != nil {
			return err
		}
		for _, r := range list.Resources {
			if rv, _ := strconv.ParseUint(r.VerifiedResourceVersion, 10, 64); rv < newest {
				return fmt.Errorf("%s verified at %q", r.Name, r.VerifiedResourceVersion)
			}
		}
		return nil
	})

	diff := func(args ...string) result {
		return p.krm(t, append(append([]string{"diff", "verified"}, args...), "--agent-url", a.URL)...)
	}
	if r := diff(); r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Fatalf("kubectl krm diff verified on a quiet, verified namespace:\n%s\nwant exit 0 and no output", r)
	}
	r := diff("-o", "json")
	if r.code != 0 {
		t.Fatalf("kubectl krm diff verified -o json:\n%s\nwant exit 0", r)
	}
	var got []string
	for _, rep := range decodeReports(t, r.stdout) {
		got = append(got, rep.Resource)
		if len(rep.Unverified) != 0 || len(rep.Ledger) != 0 || rep.VerifiedAt.IsZero() {
			t.Errorf("%s: %d unverified changes, %d drift entries, verified at %v; want none, none, a time", rep.Resource, len(rep.Unverified), len(rep.Ledger), rep.VerifiedAt)
		}
	}
	// One report per cached resource, by name.
	want := slices.Sorted(slices.Values(resources))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reports of diff verified -o json (-want +got):\n%s", diff)
	}

	// A write the stream delivered is a difference until a LIST confirms
	// it. A LIST may land between the write and the look; then try again.
	var name, rv string
	for attempt := 1; ; attempt++ {
		name = fmt.Sprintf("late-%d", attempt)
		svc, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 8080}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rv = svc.ResourceVersion
		sum, unified := diff(), diff("services", "-o", "diff")
		if sum.code == 1 && unified.code == 1 {
			if rows := driftRows(t, sum.stdout); !cmp.Equal(rows, []string{"services " + ns + " " + name + " Added"}) {
				t.Errorf("kubectl krm diff verified after creating service %s: rows %q\n%s", name, rows, sum)
			}
			file := "v1.Service." + ns + "." + name
			for _, w := range []string{
				"diff -u -N verified/" + file + " streamed/" + file + "\n",
				fmt.Sprintf("# services Added: %s/%s (streamed resourceVersion %s, verified <none>)\n", ns, name, rv),
				"--- verified/" + file + "\n+++ streamed/" + file + "\n",
				"\n+  name: " + name + "\n",
				"\n+  - port: 8080\n",
			} {
				if !strings.Contains(unified.stdout, w) {
					t.Errorf("kubectl krm diff verified services -o diff lacks %q:\n%s", w, unified)
				}
			}
			break
		}
		if attempt == 3 {
			t.Fatalf("a LIST always landed before diff verified looked:\n%s\n%s", sum, unified)
		}
	}
	// The next LIST confirms it.
	waitFor(t, 30*time.Second, "a LIST to confirm service "+name, func() error {
		if r := diff(); r.code != 0 || r.stdout != "" {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
}

// newestResourceVersion is the highest resourceVersion of the objects the
// quiet test made in ns.
func newestResourceVersion(t *testing.T, cs kubernetes.Interface, ns string) uint64 {
	t.Helper()
	ctx := t.Context()
	var rvs []string
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range pods.Items {
		rvs = append(rvs, o.ResourceVersion)
	}
	deps, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range deps.Items {
		rvs = append(rvs, o.ResourceVersion)
	}
	svcs, err := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range svcs.Items {
		rvs = append(rvs, o.ResourceVersion)
	}
	pvcs, err := cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range pvcs.Items {
		rvs = append(rvs, o.ResourceVersion)
	}
	var newest uint64
	for _, s := range rvs {
		rv, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("resourceVersion %q: %v", s, err)
		}
		newest = max(newest, rv)
	}
	return newest
}

// testDiffVerifiedDrift runs an agent whose watch misses events, through a
// proxy that drops them, and checks that `kubectl krm diff verified` shows
// what the next LIST found: MissedAdded, MissedModified and MissedDeleted.
func testDiffVerifiedDrift(t *testing.T, c *cluster.State, cs kubernetes.Interface, bin string, p *plugin) {
	ctx := t.Context()
	ns := clustertest.Namespace(t, c)
	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	proxy := watchproxy.New(t, cfg, func(typ, name string) bool {
		return typ == "ADDED" && strings.HasPrefix(name, "miss-") ||
			typ == "MODIFIED" && strings.HasPrefix(name, "stale-") ||
			typ == "DELETED" && strings.HasPrefix(name, "gone-")
	})
	configMaps := cs.CoreV1().ConfigMaps(ns)
	cm := func(name, v string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": v}}
	}
	// Before the agent starts, so that its first LIST has them.
	stale, err := configMaps.Create(ctx, cm("stale-cm", "1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := configMaps.Create(ctx, cm("gone-cm", "1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	a := startAgent(t, bin, "--kubeconfig", proxy.Kubeconfig(t), "--resources", "configmaps", "--namespace", ns, "--verify-interval", "6s")
	a.waitReady(t, 30*time.Second)
	// Write just after a LIST lands, so that one LIST finds all the drift.
	verifications := func() int64 {
		list, err := a.Client.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return list.Resources[0].Verifications
	}
	before := verifications()
	waitFor(t, 30*time.Second, "the second LIST, the first that judges the stream", func() error {
		if n := verifications(); n == before {
			return fmt.Errorf("%d verifications", n)
		}
		return nil
	})
	missed, err := configMaps.Create(ctx, cm("miss-cm", "1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stale.Data["v"] = "2"
	modified, err := configMaps.Update(ctx, stale, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := configMaps.Delete(ctx, gone.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Its ADDED event gets through: a change for the LIST to confirm, not
	// drift.
	seen, err := configMaps.Create(ctx, cm("seen-cm", "1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Drift is judged only up to what the watch delivered: gone-cm's
	// deletion is known missed once the watch passes the LIST's
	// resourceVersion without it. Writing seen-cm, whose events get
	// through, moves the watch on (a quiet watch would at its next
	// bookmark, about a minute later).
	tick := func() {
		seen.Data["v"] += "1"
		if seen, err = configMaps.Update(ctx, seen, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	diff := func(args ...string) result {
		return p.krm(t, append(append([]string{"diff", "verified"}, args...), "--agent-url", a.URL)...)
	}
	// resource namespace name change streamed verified
	wantRows := []string{
		strings.Join([]string{"configmaps", ns, "gone-cm", api.MissedDeleted, gone.ResourceVersion, "<none>"}, " "),
		strings.Join([]string{"configmaps", ns, "miss-cm", api.MissedAdded, "<none>", missed.ResourceVersion}, " "),
		strings.Join([]string{"configmaps", ns, "stale-cm", api.MissedModified, stale.ResourceVersion, modified.ResourceVersion}, " "),
	}
	// The drift rows: what the LIST found. The unverified changes beside
	// them (seen-cm, which the test writes to move the watch on) are not.
	rowsWithVersions := func(out string) []string {
		var rows []string
		for _, tb := range parseTables(out) {
			for _, r := range tb.rows() {
				if !strings.HasPrefix(r[3], "Missed") {
					continue
				}
				rows = append(rows, strings.Join(r[:6], " "))
			}
		}
		slices.Sort(rows)
		return rows
	}
	// The last LIST's findings show until the next LIST, 6 s later.
	waitFor(t, 30*time.Second, "diff verified configmaps to show what the stream missed", func() error {
		r := diff("configmaps")
		if r.code != 1 || !cmp.Equal(rowsWithVersions(r.stdout), wantRows) {
			tick()
			return fmt.Errorf("want exit 1 and rows %q, got:\n%s", wantRows, r)
		}
		return nil
	})
	if got, want := proxy.Dropped(), []watchproxy.Event{{Type: "ADDED", Name: "miss-cm"}, {Type: "MODIFIED", Name: "stale-cm"}, {Type: "DELETED", Name: "gone-cm"}}; !cmp.Equal(got, want) {
		t.Errorf("the proxy dropped %q, want %q", got, want)
	}

	// The wide status counts them too.
	r := p.krm(t, "status", "-o", "wide", "--agent-url", a.URL)
	if tb := parseTables(r.stdout); r.code != 0 || len(tb) != 1 || len(tb[0].rows()) != 1 || tb[0].rows()[0][tb[0].column("TOTAL-DRIFT")] != "+1 -1 ~1" {
		t.Errorf("kubectl krm status -o wide: want exit 0 and configmaps' TOTAL-DRIFT +1 -1 ~1, got:\n%s", r)
	}

	// The history keeps them after the next LIST; the default view then has
	// nothing: the LIST repaired the stream's view.
	waitFor(t, 30*time.Second, "the next LIST, which finds nothing", func() error {
		if r := diff("configmaps"); r.code != 0 || r.stdout != "" {
			return fmt.Errorf("want exit 0 and no output, got:\n%s", r)
		}
		return nil
	})
	r = diff("configmaps", "--history")
	if got := rowsWithVersions(r.stdout); r.code != 1 || !cmp.Equal(got, wantRows) {
		t.Errorf("kubectl krm diff verified configmaps --history: want exit 1 and rows %q, got:\n%s", wantRows, r)
	}

	r = diff("configmaps", "--history", "-o", "diff")
	if r.code != 1 {
		t.Errorf("kubectl krm diff verified --history -o diff: want exit 1:\n%s", r)
	}
	for _, w := range []string{
		fmt.Sprintf("diff -u -N verified/v1.ConfigMap.%s.miss-cm streamed/v1.ConfigMap.%[1]s.miss-cm\n# configmaps MissedAdded: %[1]s/miss-cm (streamed resourceVersion <none>, verified %s)\n", ns, missed.ResourceVersion),
		fmt.Sprintf("diff -u -N verified/v1.ConfigMap.%s.stale-cm streamed/v1.ConfigMap.%[1]s.stale-cm\n# configmaps MissedModified: %[1]s/stale-cm (streamed resourceVersion %s, verified %s)\n", ns, stale.ResourceVersion, modified.ResourceVersion),
		fmt.Sprintf("diff -u -N verified/v1.ConfigMap.%s.gone-cm streamed/v1.ConfigMap.%[1]s.gone-cm\n# configmaps MissedDeleted: %[1]s/gone-cm (streamed resourceVersion %s, verified <none>)\n", ns, gone.ResourceVersion),
		"\n+  name: miss-cm\n",
		"\n+  v: \"2\"\n",
		"\n-  name: gone-cm\n",
	} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("kubectl krm diff verified --history -o diff lacks %q:\n%s", w, r.stdout)
		}
	}

	r = diff("configmaps", "--history", "-o", "json")
	if r.code != 1 {
		t.Errorf("kubectl krm diff verified --history -o json: want exit 1:\n%s", r)
	}
	reports := decodeReports(t, r.stdout)
	if len(reports) != 1 || reports[0].Resource != "configmaps" {
		t.Fatalf("want one report, of configmaps:\n%s", r.stdout)
	}
	type entry struct{ Kind, UID, Name, Streamed, Verified string }
	var entries []entry
	for _, e := range reports[0].Ledger {
		entries = append(entries, entry{e.Kind, e.UID, e.Name, e.StreamedResourceVersion, e.VerifiedResourceVersion})
	}
	wantEntries := []entry{
		{api.MissedDeleted, string(gone.UID), "gone-cm", gone.ResourceVersion, ""},
		{api.MissedAdded, string(missed.UID), "miss-cm", "", missed.ResourceVersion},
		{api.MissedModified, string(stale.UID), "stale-cm", stale.ResourceVersion, modified.ResourceVersion},
	}
	if diff := cmp.Diff(wantEntries, entries); diff != "" {
		t.Errorf("the ledger in diff verified -o json (-want +got):\n%s", diff)
	}
}
