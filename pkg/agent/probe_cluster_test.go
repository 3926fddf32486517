package agent_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/krm-project/krm/pkg/agent"
	"github.com/krm-project/krm/pkg/agent/probe"
	"github.com/krm-project/krm/pkg/delay"
	"github.com/krm-project/krm/test/cluster/clustertest"
	"github.com/krm-project/krm/test/watchproxy"
)

// The canary probe on the local cluster; probe_test.go tests it against a
// fake client.

// probeConfigMaps lists the probe's ConfigMaps in ns by name.
func probeConfigMaps(ctx context.Context, cs kubernetes.Interface, ns string) ([]string, error) {
	list, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(probe.Labels).String()})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, cm := range list.Items {
		names = append(names, cm.Name)
	}
	return names, nil
}

// roleOnlyConfig returns cfg acting as a new service account of ns whose
// only permissions are a Role's: the verbs on configmaps that krm-agent's
// --probe-interval help promises are enough for the probe (and for an agent
// caching configmaps in ns).
func roleOnlyConfig(t *testing.T, cs kubernetes.Interface, cfg *rest.Config, ns string) *rest.Config {
	t.Helper()
	ctx := t.Context()
	const name = "krm-probe"
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create", "delete", "list", "watch"}}},
	}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}},
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	limited := rest.CopyConfig(cfg)
	limited.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + name}
	// RBAC is in force: the identity may not even read configmaps
	// elsewhere.
	lcs, err := kubernetes.NewForConfig(limited)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lcs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{Limit: 1}); !apierrors.IsForbidden(err) {
		t.Fatalf("listing configmaps in default as %s: %v, want Forbidden", limited.Impersonate.UserName, err)
	}
	return limited
}

// TestProbe runs the canary probe as a service account that has only a
// namespaced Role: it deletes what an earlier run left, records ADDED and
// DELETED delays as resource "probe" in the window, the metrics and the API,
// and leaves nothing behind when the agent stops.
func TestProbe(t *testing.T) {
	t.Parallel()
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	leftover := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "krm-probe-leftover", Labels: probe.Labels}}
	// Named like a probe, but without the probe's labels: not the probe's.
	lookalike := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "krm-probe-lookalike", Labels: map[string]string{"app.kubernetes.io/managed-by": "krm-agent"}}}
	for _, cm := range []*corev1.ConfigMap{leftover, lookalike} {
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	ag := startMeasuringAgent(t, agent.Config{
		RESTConfig: roleOnlyConfig(t, cs, cfg, ns), Resources: []string{"configmaps"}, Namespace: ns, VerifyInterval: time.Hour,
		ProbeInterval: 200 * time.Millisecond, ProbeNamespace: ns,
	}, nil)
	eventually(t, 30*time.Second, "the leftover probe ConfigMap to be deleted", func(ctx context.Context) (string, error) {
		_, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, leftover.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return fmt.Sprintf("get %s: %v", leftover.Name, err), err
	})
	const n = 5
	ag.waitTotals(t, probe.Resource, delay.Added, n)
	ag.waitTotals(t, probe.Resource, delay.Deleted, n)

	for _, event := range []string{delay.Added, delay.Deleted} {
		samples := recordedSamples(t, ag.window, probe.Resource, event)
		var delays []time.Duration
		for _, s := range samples {
			delays = append(delays, s.Delay)
			// A sanity bound, not a speed requirement: the delay is the time
			// from the call's response to the event, negative when the event
			// is first.
			if s.Delay <= -10*time.Second || s.Delay >= 10*time.Second {
				t.Errorf("probe %s delay %v is not within ±10s", event, s.Delay)
			}
		}
		t.Logf("probe %s delays: %v", event, delays)
		if got := histogramCount(t, ag.reg, "krm_stream_delay_seconds", map[string]string{"resource": probe.Resource, "event": event}); got < n {
			t.Errorf("krm_stream_delay_seconds{probe,%s} counts %d samples, want at least %d", event, got, n)
		}
	}
	rep, err := ag.client.Delay(ctx, "", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, st := range rep.Stats {
		if st.Resource == probe.Resource && st.Count >= n {
			rows = append(rows, st.Event)
		}
	}
	if diff := cmp.Diff([]string{delay.Added, delay.Deleted}, rows); diff != "" {
		t.Errorf("probe rows served by GET /api/v1/delay (-want +got):\n%s\nreport: %+v", diff, rep.Stats)
	}
	t.Logf("probe timeouts: %v", counterValue(t, ag.reg, "krm_probe_timeouts_total", nil))
	if errs := counterValue(t, ag.reg, "krm_probe_errors_total", nil); errs != 0 {
		t.Errorf("krm_probe_errors_total = %v, want 0: the Role must be enough", errs)
	}

	ag.stop()
	// The probe deletes its ConfigMap in flight before it returns.
	left, err := probeConfigMaps(ctx, cs, ns)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("probe ConfigMaps left after the agent stopped: %v", left)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, lookalike.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("the probe touched a ConfigMap without its labels: %v", err)
	}
}

// TestProbeTimeout keeps the probe's watch away, so its events never come
// in time: each such probe is counted as a timeout and its ConfigMap is
// deleted anyway; once the watch is back, probing records samples again.
func TestProbeTimeout(t *testing.T) {
	t.Parallel()
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	proxy := watchproxy.New(t, cfg, nil)
	ag := startMeasuringAgent(t, agent.Config{
		RESTConfig: proxy.RESTConfig(), Resources: []string{"configmaps"}, Namespace: ns, VerifyInterval: time.Hour,
		ProbeInterval: 200 * time.Millisecond, ProbeNamespace: ns, ProbeTimeout: time.Second,
	}, nil)
	ag.waitTotals(t, probe.Resource, delay.Added, 1)

	proxy.Hold()
	proxy.Cut()
	timeouts := func() float64 {
		return counterValue(t, ag.reg, "krm_probe_timeouts_total", map[string]string{"event": delay.Added})
	}
	eventually(t, 30*time.Second, "probe timeouts to be counted", func(context.Context) (string, error) {
		if got := timeouts(); got < 2 {
			return fmt.Sprintf("krm_probe_timeouts_total{event=ADDED} = %v", got), nil
		}
		return "", nil
	})
	// The probes that timed out deleted their ConfigMaps: at most the one
	// in flight exists.
	if left, err := probeConfigMaps(t.Context(), cs, ns); err != nil || len(left) > 1 {
		t.Errorf("probe ConfigMaps while the watch is away: %v (%v); want at most the one in flight", left, err)
	}

	before := ag.totals(probe.Resource, delay.Added).Count
	proxy.Release()
	ag.waitTotals(t, probe.Resource, delay.Added, before+2)

	ag.stop()
	if left, err := probeConfigMaps(t.Context(), cs, ns); err != nil || len(left) != 0 {
		t.Errorf("probe ConfigMaps left after the agent stopped: %v (%v)", left, err)
	}
}
