package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/test/cluster/clustertest"
	"github.com/krm-project/krm/test/watchproxy"
)

// chromiumPath is Debian's chromium, which .ci/run installs; KRM_CHROMIUM
// names another.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KRM_CHROMIUM"); p != "" {
		return p
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("the web view's test needs Debian's chromium: apt-get install -y --no-install-recommends chromium (or set KRM_CHROMIUM to a Chromium binary): %v", err)
	}
	return p
}

// browser starts a headless Chromium with a fresh profile and a 1280x800
// window, and collects every console error, uncaught exception and error
// log entry (a failed load among them) of its pages.
type browser struct {
	ctx    context.Context
	mu     sync.Mutex
	errors []string
}

func startBrowser(t *testing.T) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// Without these the closed network refuses Chromium's own
		// connections, which it logs and retries.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &browser{ctx: ctx}
	chromedp.ListenTarget(ctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.APITypeError || ev.Type == runtime.APITypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				msg = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			msg = "uncaught exception: " + ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				msg += " " + ev.ExceptionDetails.Exception.Description
			}
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.LevelError {
				msg = fmt.Sprintf("log (%s): %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
			}
		}
		if msg != "" {
			b.mu.Lock()
			b.errors = append(b.errors, msg)
			b.mu.Unlock()
		}
	})
	if err := chromedp.Run(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return b
}

// run runs actions with a bound, failing the test with what.
func (b *browser) run(t *testing.T, what string, actions ...chromedp.Action) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates js in the page into v.
func (b *browser) eval(t *testing.T, js string, v any) {
	t.Helper()
	b.run(t, "evaluating "+js, chromedp.Evaluate(js, v))
}

func (b *browser) consoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// screenshot saves the viewport as name.png in the test's artifacts and,
// with KRM_UPDATE_SCREENSHOTS=1, in docs/images for the README.
func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	var png []byte
	b.run(t, "taking a screenshot of "+name, chromedp.CaptureScreenshot(&png))
	dirs := []string{t.ArtifactDir()}
	if os.Getenv("KRM_UPDATE_SCREENSHOTS") == "1" {
		dirs = append(dirs, filepath.Join("..", "..", "docs", "images"))
	}
	for _, dir := range dirs {
		path := filepath.Join(dir, "webview-"+name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s (%d bytes)", path, len(png))
	}
}

// startKrmUI runs `kubectl krm ui --agent-url agentURL` until the test ends
// and returns the URL it prints.
func startKrmUI(t *testing.T, p *plugin, agentURL string) string {
	t.Helper()
	args := []string{"krm", "ui", "--agent-url", agentURL}
	cmd := exec.Command(p.kubectl, args...)
	cmd.Env = p.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr lockedBuffer
	cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		stderr.mu.Lock()
		defer stderr.mu.Unlock()
		return stderr.buf.Write(b)
	})
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting kubectl %s: %v", strings.Join(args, " "), err)
	}
	exited := make(chan struct{})
	serving := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "Serving the krm web view at "); ok {
				url, _, _ := strings.Cut(rest, " ")
				serving <- url
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("kubectl krm ui still running 10s after SIGTERM; killed")
		}
	})
	select {
	case url := <-serving:
		return url
	case <-exited:
		t.Fatalf("kubectl %s exited before serving (%v); stderr:\n%s", strings.Join(args, " "), cmd.ProcessState, stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("kubectl %s did not print its URL within 60s; stderr:\n%s", strings.Join(args, " "), stderr.String())
	}
	return ""
}

// churn creates and deletes pods in a namespace and scales a deployment
// there, one step at a time, until the test ends; pause holds it so that
// the page and the API can be compared at rest.
type churn struct {
	mu sync.Mutex
}

func startChurn(t *testing.T, cs kubernetes.Interface, ns string) *churn {
	c := &churn{}
	ctx := t.Context()
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	pods := cs.CoreV1().Pods(ns)
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			c.mu.Lock()
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("churn-%d", i), Labels: map[string]string{"app": "churn"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "krm-e2e/churn:1"}}},
			}
			_, err := pods.Create(ctx, pod, metav1.CreateOptions{})
			if err == nil && i >= 3 {
				err = pods.Delete(ctx, fmt.Sprintf("churn-%d", i-3), metav1.DeleteOptions{})
			}
			if err == nil && i%4 == 0 {
				replicas := 1 + i%3
				_, err = cs.AppsV1().Deployments(ns).Patch(ctx, "web", types.MergePatchType,
					[]byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)), metav1.PatchOptions{})
			}
			c.mu.Unlock()
			if err != nil && ctx.Err() == nil {
				t.Errorf("churn step %d: %v", i, err)
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	return c
}

func (c *churn) pause()  { c.mu.Lock() }
func (c *churn) resume() { c.mu.Unlock() }

// TestWebView loads each page of the web view in headless Chromium, through
// `kubectl krm ui`, from a real agent on the local cluster while objects
// are created, scaled and deleted, and checks what the pages show against
// the API: object counts, live updates without a reload, delay samples,
// the drift ledger and an object's history. It saves a screenshot of each
// page and fails on any console error.
func TestWebView(t *testing.T) {
	c := clustertest.Get(t)
	ctx := t.Context()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ns := clustertest.Namespace(t, c)
	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	// The watch misses chosen services' events, so the ledger has entries.
	proxy := watchproxy.New(t, cfg, func(typ, name string) bool {
		return typ == "ADDED" && strings.HasPrefix(name, "miss-") || typ == "DELETED" && strings.HasPrefix(name, "gone-")
	})
	createObjects(t, cs, ns)
	agent := startAgent(t, buildAgent(t), "--kubeconfig", proxy.Kubeconfig(t), "--namespace", ns,
		"--resources", "pods,deployments,services", "--verify-interval", "3s",
		"--probe-interval", "2s", "--probe-namespace", ns)
	agent.waitReady(t, 30*time.Second)
	ch := startChurn(t, cs, ns)
	url := startKrmUI(t, buildPlugin(t, c), agent.URL)
	b := startBrowser(t)

	agentJSON := func(path string, v any) int {
		t.Helper()
		resp, err := http.Get(agent.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
		}
		return resp.StatusCode
	}
	apiCounts := func() map[string]int {
		list, err := agent.Client.ResourceStatuses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, st := range list.Items {
			out[st.Name] = st.Status.Objects.Aggregated
		}
		return out
	}
	const pageCounts = `Object.fromEntries([...document.querySelectorAll('#overview-table tbody tr')].map(tr => [tr.dataset.resource, Number(tr.querySelector('td.objects').textContent)]))`

	t.Run("Overview", func(t *testing.T) {
		b.run(t, "loading the overview", chromedp.Navigate(url+"#overview"),
			chromedp.WaitVisible(`#live[data-state="live"]`, chromedp.ByQuery))
		// The page and the API agree once churn rests.
		ch.pause()
		var page map[string]int
		waitFor(t, 30*time.Second, "the overview's object counts to equal resourcestatuses'", func() error {
			b.eval(t, pageCounts, &page)
			if api := apiCounts(); fmt.Sprint(api) != fmt.Sprint(page) {
				return fmt.Errorf("page %v, API %v", page, api)
			}
			return nil
		})
		ch.resume()
		if len(page) != 3 || page["pods"] == 0 {
			t.Errorf("the overview shows %v, want pods, deployments and services, pods not 0", page)
		}

		// Live: a new service shows without a reload. The marker would not
		// survive one.
		var updates string
		b.eval(t, `window.krmNoReload = true; document.getElementById('overview-table').dataset.updates`, &updates)
		before := page["services"]
		for _, name := range []string{"live-1", "live-2", "live-3"} {
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
			if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 30*time.Second, "the overview to show the 3 new services", func() error {
			b.eval(t, pageCounts, &page)
			if page["services"] != before+3 {
				return fmt.Errorf("services %d, want %d", page["services"], before+3)
			}
			return nil
		})
		var noReload bool
		var after string
		b.eval(t, `window.krmNoReload === true`, &noReload)
		b.eval(t, `document.getElementById('overview-table').dataset.updates`, &after)
		if !noReload || after == updates {
			t.Errorf("the overview changed by a reload (marker kept: %v, updates %s then %s), want a live update", noReload, updates, after)
		}
		if api := apiCounts()["services"]; api != before+3 {
			t.Errorf("resourcestatuses count %d services, the page %d", api, page["services"])
		}
		// Let the rows' highlight of a change fade before the picture.
		b.run(t, "waiting for the highlight to fade", chromedp.Sleep(1500*time.Millisecond))
		b.screenshot(t, "overview")
	})

	t.Run("Drift", func(t *testing.T) {
		// A missed ADDED and a missed DELETED, found by the next LIST.
		svc := func(name string) *corev1.Service {
			return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
		}
		for _, name := range []string{"miss-1", "gone-1"} {
			if _, err := cs.CoreV1().Services(ns).Create(ctx, svc(name), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		// The agent must hold gone-1 for its missed deletion to be drift:
		// it serves it (from its watch, or from a LIST that landed since).
		waitFor(t, 30*time.Second, "the agent to hold service gone-1", func() error {
			var svc map[string]any
			if code := agentJSON("/api/v1/namespaces/"+ns+"/services/gone-1", &svc); code != http.StatusOK {
				return fmt.Errorf("the agent answers %d for service gone-1", code)
			}
			return nil
		})
		if err := cs.CoreV1().Services(ns).Delete(ctx, "gone-1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// Drift is judged only up to what the watch delivered: the missed
		// DELETED is known once the watch passes the LIST without it. A
		// service whose events get through moves it on (a quiet watch
		// would, at its next bookmark, about a minute later).
		tick, err := cs.CoreV1().Services(ns).Create(ctx, svc("tick"), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var rep *krmv1alpha1.DriftReport
		waitFor(t, 30*time.Second, "a LIST to find the missed ADDED and DELETED", func() error {
			var err error
			if rep, err = agent.Client.DriftReport(ctx, "services"); err != nil {
				return err
			}
			if tick.Labels == nil {
				tick.Labels = map[string]string{}
			}
			tick.Labels["tick"] = fmt.Sprint(time.Now().UnixNano())
			if tick, err = cs.CoreV1().Services(ns).Update(ctx, tick, metav1.UpdateOptions{}); err != nil {
				return err
			}
			kinds := map[string]bool{}
			for _, e := range rep.Status.Ledger {
				kinds[e.Kind] = true
			}
			if !kinds[krmv1alpha1.MissedAdded] || !kinds[krmv1alpha1.MissedDeleted] {
				return fmt.Errorf("the ledger holds %v", kinds)
			}
			return nil
		})
		b.run(t, "loading the drift page", chromedp.Navigate(url+"#drift"),
			chromedp.WaitVisible(`section.drift[data-resource="services"]`, chromedp.ByQuery))
		var shown map[string]int
		b.eval(t, `Object.fromEntries([...document.querySelectorAll('table.ledger')].map(t => [t.dataset.resource, t.querySelectorAll('tr.entry').length]))`, &shown)
		for _, res := range []string{"pods", "deployments", "services"} {
			rep, err := agent.Client.DriftReport(ctx, res)
			if err != nil {
				t.Fatal(err)
			}
			if shown[res] != len(rep.Status.Ledger) {
				t.Errorf("the drift page shows %d ledger entries for %s, driftreports has %d", shown[res], res, len(rep.Status.Ledger))
			}
		}
		var repairs []string
		b.eval(t, `[...document.querySelectorAll('table.ledger[data-resource="services"] tr.entry')].map(tr => tr.querySelector('.kind').textContent + ': ' + tr.querySelector('.object').textContent + ': ' + tr.querySelector('.repair').textContent)`, &repairs)
		joined := strings.Join(repairs, "\n")
		for _, want := range []string{"missed ADDED: " + ns + "/miss-1: added to the stream", "missed DELETED: " + ns + "/gone-1: removed from the stream"} {
			if !strings.Contains(joined, want) {
				t.Errorf("the services' ledger shows\n%s\nwant a line with %q", joined, want)
			}
		}
		b.screenshot(t, "drift")
	})

	t.Run("Delay", func(t *testing.T) {
		waitFor(t, 60*time.Second, "probe and pod delay samples", func() error {
			for _, r := range []struct{ res, event string }{{"probe", "ADDED"}, {"probe", "DELETED"}, {"pods", "ADDED"}} {
				rep, err := agent.Client.DelayReport(ctx, r.res, r.event, time.Hour)
				if err != nil {
					return err
				}
				if len(rep.Status.Stats) == 0 || rep.Status.Stats[0].Count == 0 {
					return fmt.Errorf("no %s %s samples yet", r.res, r.event)
				}
			}
			return nil
		})
		b.run(t, "loading the delay page", chromedp.Navigate(url+"#delay?since=5m"),
			chromedp.WaitVisible(`#delay-stats`, chromedp.ByQuery))
		// The probe goes on measuring, so its counts are compared until a
		// load falls between two of its samples.
		ch.pause()
		defer ch.resume()
		type row struct{ Resource, Event, Count, Source string }
		var rows []row
		waitFor(t, 60*time.Second, "the delay page's sample counts to equal delayreports'", func() error {
			b.run(t, "reloading the delay page", chromedp.Click(`#delay-form button`, chromedp.ByQuery),
				chromedp.WaitVisible(`#delay-stats`, chromedp.ByQuery))
			b.eval(t, `[...document.querySelectorAll('#delay-stats tbody tr')].map(tr => ({Resource: tr.dataset.resource, Event: tr.dataset.event, Count: tr.querySelector('.count').textContent, Source: document.getElementById('delay-source-name').textContent}))`, &rows)
			if len(rows) != 8 {
				return fmt.Errorf("%d rows, want 8 (probe, pods, deployments, services; ADDED and DELETED)", len(rows))
			}
			for _, r := range rows {
				rep, err := agent.Client.DelayReport(ctx, r.Resource, r.Event, 5*time.Minute)
				if err != nil {
					return err
				}
				var n int64
				if len(rep.Status.Stats) > 0 {
					n = rep.Status.Stats[0].Count
				}
				if r.Count != fmt.Sprint(n) || r.Source != rep.Status.Source {
					return fmt.Errorf("%s %s: page %s samples from %s, API %d from %s", r.Resource, r.Event, r.Count, r.Source, n, rep.Status.Source)
				}
			}
			return nil
		})
		// The probe's millisecond line beside the timestamps' one-second
		// ones, each labelled.
		var labels []string
		b.eval(t, `[...document.querySelectorAll('.chart[data-resource="pods"][data-event="ADDED"] .u-legend .u-label')].map(e => e.textContent)`, &labels)
		if want := "p50 (1 s resolution),p90 (1 s resolution),p99 (1 s resolution),probe p50 (ms resolution)"; strings.Join(labels[1:], ",") != want {
			t.Errorf("the pods ADDED chart's series are %q, want time then %s", labels, want)
		}
		var canvases int
		b.eval(t, `document.querySelectorAll('#delay-probe .chart canvas').length`, &canvases)
		if canvases != 2 {
			t.Errorf("%d probe charts drawn, want ADDED and DELETED", canvases)
		}
		b.screenshot(t, "delay")
	})

	t.Run("Object", func(t *testing.T) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "history-1", Labels: map[string]string{"step": "0"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "krm-e2e/history:1"}}},
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for step := 1; step <= 2; step++ {
			patch := fmt.Sprintf(`{"metadata":{"labels":{"step":"%d"}}}`, step)
			if _, err := cs.CoreV1().Pods(ns).Patch(ctx, "history-1", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		var discovery metav1.APIResourceList
		agentJSON("/apis/krm.io/v1alpha1", &discovery)
		served := false
		for _, r := range discovery.APIResources {
			served = served || r.Name == "revisions"
		}
		path := fmt.Sprintf("/apis/krm.io/v1alpha1/revisions?resource=pods&namespace=%s&name=history-1", ns)
		var revs struct{ Items []json.RawMessage }
		if served {
			waitFor(t, 30*time.Second, "three revisions of pod history-1", func() error {
				if code := agentJSON(path, &revs); code != http.StatusOK || len(revs.Items) < 3 {
					return fmt.Errorf("%d, %d revisions", code, len(revs.Items))
				}
				return nil
			})
		}
		b.run(t, "loading the object page", chromedp.Navigate(fmt.Sprintf("%s#object?resource=pods&namespace=%s&name=history-1", url, ns)))
		if !served {
			// The agent has no history yet: the page says so, plainly.
			var text string
			b.run(t, "waiting for the history-not-available message", chromedp.WaitVisible(`#history-unavailable`, chromedp.ByQuery),
				chromedp.Text(`#history-unavailable`, &text, chromedp.ByQuery))
			if !strings.HasPrefix(text, "History not available: ") {
				t.Errorf("the object page says %q, want it to start with History not available", text)
			}
			b.screenshot(t, "object")
			return
		}
		// kwok moves the pod on (scheduled, Running) meanwhile, each a new
		// revision: the page and the API are compared when they agree on a
		// moment, reloading the page until then.
		waitFor(t, 30*time.Second, "the object page to show every revision the API has", func() error {
			var nodes []*cdp.Node
			b.run(t, "waiting for the revisions", chromedp.Reload(), chromedp.WaitVisible(`#revisions`, chromedp.ByQuery),
				chromedp.Nodes(`#revisions tr.revision`, &nodes, chromedp.ByQueryAll))
			if code := agentJSON(path, &revs); code != http.StatusOK {
				return fmt.Errorf("revisions answered %d", code)
			}
			if len(nodes) != len(revs.Items) {
				return fmt.Errorf("the object page shows %d revisions, revisions has %d", len(nodes), len(revs.Items))
			}
			return nil
		})
		var diff string
		b.eval(t, `[...document.querySelectorAll('#revisions .diff .add')].map(e => e.textContent).join('\n')`, &diff)
		if !strings.Contains(diff, `"step": "2"`) {
			t.Errorf("the diffs add\n%s\nwant the label step: 2", diff)
		}
		b.screenshot(t, "object")
	})

	for _, e := range b.consoleErrors() {
		t.Errorf("the page logged an error: %s", e)
	}
}
