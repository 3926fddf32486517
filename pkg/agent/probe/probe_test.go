package probe

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/krm-project/krm/pkg/delay"
)

// These tests run the probe against client-go's fake dynamic client, whose
// watch delivers every create and delete; the probe on a real cluster is
// tested in delay_test.go.

const probeTestNamespace = "krm"

func configMap(name string, labels map[string]string) *unstructured.Unstructured {
	cm := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap"}}
	cm.SetName(name)
	cm.SetNamespace(probeTestNamespace)
	cm.SetLabels(labels)
	return cm
}

func newFakeDynamic(objects ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{configMapsResource: "ConfigMapList"}, objects...)
}

// probeUnderTest is a probe with its own window and metrics.
type probeUnderTest struct {
	*Probe
	window *delay.Window
}

func newTestProbe(t *testing.T, dyn *dynamicfake.FakeDynamicClient, timeout time.Duration) *probeUnderTest {
	t.Helper()
	reg := prometheus.NewRegistry()
	window := delay.NewWindow(0)
	rec, err := delay.NewRecorder(delay.RecorderOptions{Window: window, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{
		Cluster: "test", Delay: rec, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), Registry: reg,
		Interval: 5 * time.Millisecond, Namespace: probeTestNamespace, Timeout: timeout,
	}, dyn)
	if err != nil {
		t.Fatal(err)
	}
	return &probeUnderTest{Probe: p, window: window}
}

// start runs the probe until the returned stop is called, which waits for
// Start to return.
func (p *probeUnderTest) start(t *testing.T, ctx context.Context) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Start(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("probe: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func (p *probeUnderTest) count(event string) int64 {
	for _, tot := range p.window.Totals(Resource, event) {
		return tot.Count
	}
	return 0
}

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// waitFor polls cond; it fails the test after a generous time, as a
// deadlock detector, not a timing assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after 10s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func configMapNames(t *testing.T, dyn *dynamicfake.FakeDynamicClient) []string {
	t.Helper()
	list, err := dyn.Resource(configMapsResource).Namespace(probeTestNamespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, cm := range list.Items {
		names = append(names, cm.GetName())
	}
	slices.Sort(names)
	return names
}

func TestProbeRecordsItsOwnRows(t *testing.T) {
	dyn := newFakeDynamic(configMap("krm-probe-leftover", Labels), configMap("krm-probe-unlabelled", nil), configMap("app-config", nil))
	p := newTestProbe(t, dyn, 10*time.Second)
	stop := p.start(t, t.Context())
	waitFor(t, "probing", func() bool { return p.count(delay.Added) >= 3 && p.count(delay.Deleted) >= 3 })
	stop()

	// What an earlier run left is gone; what is not the probe's is not.
	if diff := cmp.Diff([]string{"app-config", "krm-probe-unlabelled"}, configMapNames(t, dyn)); diff != "" {
		t.Errorf("configmaps after the probe ran (-want +got):\n%s", diff)
	}
	var rows []string
	for _, st := range p.window.Stats(time.Time{}, "", "") {
		rows = append(rows, st.Resource+" "+st.Event)
		// A sanity bound: the fake answers at once.
		if st.Min <= -10*time.Second || st.Max >= 10*time.Second {
			t.Errorf("%s %s delays run from %v to %v, outside ±10s", st.Resource, st.Event, st.Min, st.Max)
		}
	}
	if diff := cmp.Diff([]string{"probe ADDED", "probe DELETED"}, rows); diff != "" {
		t.Errorf("rows recorded (-want +got):\n%s", diff)
	}
	for _, e := range []string{delay.Added, delay.Deleted} {
		if n := counter(t, p.metrics.timeouts.WithLabelValues(e)); n != 0 {
			t.Errorf("krm_probe_timeouts_total{event=%q} = %v, want 0", e, n)
		}
	}

	// Every probe ConfigMap carries the labels the probe selects on.
	var created []map[string]string
	for _, a := range dyn.Actions() {
		if c, ok := a.(k8stesting.CreateAction); ok {
			created = append(created, c.GetObject().(*unstructured.Unstructured).GetLabels())
		}
	}
	if len(created) == 0 {
		t.Fatal("the probe created nothing")
	}
	for _, l := range created {
		if diff := cmp.Diff(Labels, l); diff != "" {
			t.Fatalf("probe ConfigMap labels (-want +got):\n%s", diff)
		}
	}
}

// A watch that delivers nothing: every probe times out, is counted, and its
// ConfigMap is deleted all the same.
func TestProbeCountsTimeoutsAndCleansUp(t *testing.T) {
	dyn := newFakeDynamic()
	dyn.PrependWatchReactor("configmaps", func(k8stesting.Action) (bool, watch.Interface, error) {
		return true, watch.NewFake(), nil
	})
	p := newTestProbe(t, dyn, 20*time.Millisecond)
	stop := p.start(t, t.Context())
	timeouts := p.metrics.timeouts.WithLabelValues(delay.Added)
	waitFor(t, "counting timeouts", func() bool { return counter(t, timeouts) >= 3 })
	stop()

	if left := configMapNames(t, dyn); len(left) != 0 {
		t.Errorf("probe ConfigMaps left after timeouts: %v", left)
	}
	if stats := p.window.Stats(time.Time{}, "", ""); len(stats) != 0 {
		t.Errorf("samples recorded although no event came: %+v", stats)
	}
	// A DELETED is not awaited after a lost ADDED: one timeout per probe.
	if n := counter(t, p.metrics.timeouts.WithLabelValues(delay.Deleted)); n != 0 {
		t.Errorf("krm_probe_timeouts_total{event=DELETED} = %v, want 0", n)
	}
}

// Stopping the agent while a probe is in flight still deletes its
// ConfigMap.
func TestProbeCleansUpWhenStopped(t *testing.T) {
	dyn := newFakeDynamic()
	ctx, cancel := context.WithCancel(t.Context())
	dyn.PrependReactor("create", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		cancel() // the agent is told to stop while the create is in flight
		return false, nil, nil
	})
	p := newTestProbe(t, dyn, 10*time.Second)
	stop := p.start(t, ctx)
	<-ctx.Done()
	stop()

	var creates, deletes int
	for _, a := range dyn.Actions() {
		switch a.GetVerb() {
		case "create":
			creates++
		case "delete":
			deletes++
		}
	}
	if creates != 1 || deletes != 1 {
		t.Errorf("the probe made %d creates and %d deletes, want 1 and 1", creates, deletes)
	}
	if left := configMapNames(t, dyn); len(left) != 0 {
		t.Errorf("probe ConfigMaps left after stopping: %v", left)
	}
}

// New refuses a probe that could not record or would not know where to go.
func TestNewChecksTheConfig(t *testing.T) {
	rec, err := delay.NewRecorder(delay.RecorderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no interval", Config{Namespace: "krm", Delay: rec}, "interval must be positive"},
		{"no recorder", Config{Interval: time.Second, Namespace: "krm"}, ErrNeedsDelay.Error()},
		{"no namespace", Config{Interval: time.Second, Delay: rec}, "needs a namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg, newFakeDynamic()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New() = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
