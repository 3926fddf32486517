package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// systemPython is Debian's python3, into which python3-kubernetes installs
// the official client; a python3 earlier on PATH (pyenv, a venv) may lack
// it. -E and -s keep PYTHON* variables and the user's site-packages out, so
// the test runs Debian's package and nothing else; -B leaves no
// __pycache__ in examples/python.
var systemPython = []string{"/usr/bin/python3", "-E", "-s", "-B"}

// TestPythonClient runs examples/python, with the official Python client
// (Debian's python3-kubernetes), through `kubectl krm proxy` to a real
// agent: LISTs come back as typed V1PodList and V1DeploymentList with krm's
// freshness headers, in pages and with selectors; a watch follows changes,
// resumes from a resourceVersion and relists after 410; a delete is
// refused with 405 and changes nothing.
func TestPythonClient(t *testing.T) {
	c := clustertest.Get(t)
	requirePythonClient(t)
	ctx := t.Context()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ns := clustertest.Namespace(t, c)
	createPythonWorkload(t, cs, ns)
	waitFor(t, 60*time.Second, "deployment web's 2 pods and pod solo to run, and web to be ready", func() error {
		if err := podsRunning(ctx, cs, ns, 3); err != nil {
			return err
		}
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.ReadyReplicas != 2 {
			return fmt.Errorf("deployment web has %d ready replicas", d.Status.ReadyReplicas)
		}
		return nil
	})
	// Started once the workload is settled, so its first LIST holds
	// everything the Python client should see.
	agent := startAgent(t, buildAgent(t), "--kubeconfig", c.Kubeconfig, "--namespace", ns, "--resources", "pods,deployments")
	agent.waitReady(t, 60*time.Second)
	proxyURL := startKrmProxy(t, buildPlugin(t, c), agent.URL)
	py := pythonEnv{"KRM_PROXY_URL=" + proxyURL}

	t.Run("List", func(t *testing.T) {
		r := py.run(t, "list_pods.py")
		if r.code != 0 {
			t.Fatalf("list_pods.py failed\n%s", r)
		}
		got := parsePythonListing(t, r)
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var wantPods [][]string
		for _, p := range pods.Items {
			wantPods = append(wantPods, []string{ns + "/" + p.Name, string(p.Status.Phase), p.Spec.NodeName, "V1Pod"})
		}
		checkPythonSection(t, r, got["pods"], "V1PodList", 1, wantPods)
		checkPythonSection(t, r, got["deployments"], "V1DeploymentList", 1,
			[][]string{{ns + "/web", "2/2", "V1Deployment"}})
	})

	t.Run("PagesAndSelectors", func(t *testing.T) {
		// Two web pods, one per page: the client follows metadata.continue.
		// (A server may send a continue token that leads to an empty page,
		// as kube-apiserver does when a selector filters, so a page count
		// is a minimum.)
		r := py.run(t, "list_pods.py", "-n", ns, "-l", "app=web", "--limit", "1")
		if r.code != 0 {
			t.Fatalf("list_pods.py failed\n%s", r)
		}
		got := parsePythonListing(t, r)
		web, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			t.Fatal(err)
		}
		var wantPods [][]string
		for _, p := range web.Items {
			wantPods = append(wantPods, []string{ns + "/" + p.Name, string(p.Status.Phase), p.Spec.NodeName, "V1Pod"})
		}
		checkPythonSection(t, r, got["pods"], "V1PodList", 2, wantPods)
		checkPythonSection(t, r, got["deployments"], "V1DeploymentList", 1,
			[][]string{{ns + "/web", "2/2", "V1Deployment"}})

		// A field selector that leaves no deployment: an empty list must
		// still decode (items: [], not null).
		r = py.run(t, "list_pods.py", "--field-selector", "metadata.name=solo")
		if r.code != 0 {
			t.Fatalf("list_pods.py failed\n%s", r)
		}
		got = parsePythonListing(t, r)
		solo, err := cs.CoreV1().Pods(ns).Get(ctx, "solo", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkPythonSection(t, r, got["pods"], "V1PodList", 1,
			[][]string{{ns + "/solo", string(solo.Status.Phase), solo.Spec.NodeName, "V1Pod"}})
		checkPythonSection(t, r, got["deployments"], "V1DeploymentList", 1, nil)
	})

	t.Run("Watch", func(t *testing.T) {
		const timeout = 10
		w := py.start(t, "watch_pods.py", ns, "--timeout", strconv.Itoa(timeout))
		w.waitLine(t, 30*time.Second, "the initial LIST", func(l string) bool {
			return strings.HasPrefix(l, "V1PodList: 3 pods in "+ns+" at resourceVersion ")
		})
		w.waitLine(t, 30*time.Second, "the watch to start", func(l string) bool {
			return strings.HasPrefix(l, "watching pods in "+ns+" from resourceVersion ")
		})
		createPythonPod(t, cs, ns, "added")
		w.waitLine(t, 30*time.Second, "the ADDED event of pod added", func(l string) bool {
			f := strings.Fields(l)
			return len(f) >= 3 && f[0] == "ADDED" && f[1] == "added" && f[2] == "V1Pod"
		})
		// The server ends the watch at timeoutSeconds, and so the script.
		r := w.wait(t, timeout*time.Second+30*time.Second)
		if r.code != 0 {
			t.Fatalf("watch_pods.py failed\n%s", r)
		}
		rv := resumeVersion(t, r)

		// Created while nothing watches: a watch from rv must deliver it,
		// and nothing from before rv.
		createPythonPod(t, cs, ns, "later")
		r = py.run(t, "watch_pods.py", ns, "--resource-version", rv, "--timeout", "3")
		if r.code != 0 {
			t.Fatalf("watch_pods.py --resource-version %s failed\n%s", rv, r)
		}
		events := watchEvents(r.stdout)
		if !slices.Contains(events, "ADDED later") {
			t.Errorf("a watch from resourceVersion %s lacks the ADDED event of pod later; events %q\n%s", rv, events, r)
		}
		if slices.Contains(events, "ADDED added") {
			t.Errorf("a watch from resourceVersion %s repeats the ADDED event of pod added, which came before it\n%s", rv, r)
		}
		if strings.Contains(r.stdout, "V1PodList") {
			t.Errorf("with --resource-version the script must watch without listing first\n%s", r)
		}
	})

	t.Run("WatchRelistsAfter410", func(t *testing.T) {
		// resourceVersion 1 is older than anything the agent keeps.
		r := py.run(t, "watch_pods.py", ns, "--resource-version", "1", "--timeout", "3")
		if r.code != 0 {
			t.Fatalf("watch_pods.py --resource-version 1 failed\n%s", r)
		}
		gone := regexp.MustCompile(`(?m)^resourceVersion 1 is too old for the server \(410 Expired: .+\); listing again$`)
		if !gone.MatchString(r.stdout) {
			t.Errorf("the watch from resourceVersion 1 did not end in 410 Expired\n%s", r)
		}
		if !regexp.MustCompile(`(?m)^V1PodList: \d+ pods in ` + ns).MatchString(r.stdout) {
			t.Errorf("after 410 the script did not list again\n%s", r)
		}
	})

	t.Run("DeleteRefused", func(t *testing.T) {
		r := py.run(t, "delete_pod.py", "--host", proxyURL, ns, "solo")
		if r.code != 1 {
			t.Errorf("delete_pod.py exited %d, want 1\n%s", r.code, r)
		}
		for _, want := range []string{"answered 405 MethodNotAllowed", "read-only"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("delete_pod.py's stderr lacks %q\n%s", want, r)
			}
		}
		pod, err := cs.CoreV1().Pods(ns).Get(ctx, "solo", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("pod solo after the refused delete: %v", err)
		}
		if pod.DeletionTimestamp != nil {
			t.Errorf("pod solo is being deleted (since %s) after krm refused the delete", pod.DeletionTimestamp)
		}
	})

	t.Run("ProxyNotRunning", func(t *testing.T) {
		r := py.run(t, "list_pods.py", "--host", fmt.Sprintf("http://127.0.0.1:%d", closedPort(t)))
		if r.code != 1 {
			t.Errorf("list_pods.py without a proxy exited %d, want 1\n%s", r.code, r)
		}
		for _, want := range []string{"Connection refused", "kubectl krm proxy"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("list_pods.py without a proxy: stderr lacks %q\n%s", want, r)
			}
		}
		if strings.Contains(r.stderr, "Traceback") {
			t.Errorf("list_pods.py without a proxy printed a traceback\n%s", r)
		}
	})
}

// requirePythonClient skips the test when systemPython cannot import the
// kubernetes client, except in CI, where .ci/run installs it.
func requirePythonClient(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, systemPython[0], append(systemPython[1:], "-c", "import kubernetes")...).CombinedOutput()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("%s cannot import the official Python client (%v: %s); install it with `apt-get install python3-kubernetes`",
		systemPython[0], err, bytes.TrimSpace(out))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; in CI, .ci/run installs it")
	}
	t.Skip(msg)
}

// createPythonWorkload makes, in ns, deployment web (2 replicas, labelled
// app=web) and the standalone pod solo.
func createPythonWorkload(t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	labels := map[string]string{"app": "web"}
	replicas := int32(2)
	_, err := cs.AppsV1().Deployments(ns).Create(t.Context(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "krm-e2e/web:1"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating deployment web: %v", err)
	}
	createPythonPod(t, cs, ns, "solo")
}

func createPythonPod(t *testing.T, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "krm-e2e/" + name + ":1"}}},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating pod %s/%s: %v", ns, name, err)
	}
}

// startKrmProxy runs `kubectl krm proxy --port 0 --agent-url agentURL
// extra…` until the test ends and returns the URL it serves on.
func startKrmProxy(t *testing.T, p *plugin, agentURL string, extra ...string) string {
	t.Helper()
	args := append([]string{"krm", "proxy", "--port", "0", "--agent-url", agentURL}, extra...)
	// kubectl execs the plugin in its own place, so the signals reach it.
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
			if addr, ok := strings.CutPrefix(sc.Text(), "Starting to serve on "); ok {
				serving <- addr
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
			t.Errorf("kubectl krm proxy still running 10s after SIGTERM; killed")
		}
		if t.Failed() {
			t.Logf("kubectl %s stderr:\n%s", strings.Join(args, " "), stderr.String())
		}
	})
	select {
	case addr := <-serving:
		return "http://" + addr
	case <-exited:
		t.Fatalf("kubectl %s exited before serving (%v); stderr:\n%s", strings.Join(args, " "), cmd.ProcessState, stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("kubectl %s did not print where it serves within 60s; stderr:\n%s", strings.Join(args, " "), stderr.String())
	}
	return ""
}

// pythonEnv is what the examples run with, beside this process's
// environment.
type pythonEnv []string

// pythonResult is what an example did.
type pythonResult struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r pythonResult) String() string {
	return fmt.Sprintf("$ python3 %s\nexit %d\n--- stdout:\n%s--- stderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// pythonProcess is a running example whose stdout is collected line by line.
type pythonProcess struct {
	args   []string
	cmd    *exec.Cmd
	stderr bytes.Buffer
	mu     sync.Mutex
	lines  []string
	done   chan struct{}
}

// start runs examples/python/script with args until it exits or the test
// ends.
func (e pythonEnv) start(t *testing.T, script string, args ...string) *pythonProcess {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("..", "..", "examples", "python", script))
	if err != nil {
		t.Fatal(err)
	}
	p := &pythonProcess{args: append([]string{script}, args...), done: make(chan struct{})}
	p.cmd = exec.Command(systemPython[0], append(append(systemPython[1:], path), args...)...)
	p.cmd.Env = append(os.Environ(), e...)
	p.cmd.Stderr = &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", script, err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		_ = p.cmd.Wait()
	})
	return p
}

// run runs examples/python/script with args to its end, within 2 minutes.
func (e pythonEnv) run(t *testing.T, script string, args ...string) pythonResult {
	t.Helper()
	return e.start(t, script, args...).wait(t, 2*time.Minute)
}

// waitLine waits until the script has printed a line that matches.
func (p *pythonProcess) waitLine(t *testing.T, timeout time.Duration, what string, match func(string) bool) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		found := slices.ContainsFunc(p.lines, match)
		p.mu.Unlock()
		if found {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before printing %s\n%s", p.args[0], what, p.wait(t, time.Second))
		case <-deadline:
			t.Fatalf("%s did not print %s within %s; so far:\n%s", p.args[0], what, timeout, strings.Join(p.output(), "\n"))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// wait waits up to timeout for the script to exit and returns what it did.
func (p *pythonProcess) wait(t *testing.T, timeout time.Duration) pythonResult {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s still running after %s; so far:\n%s", p.args[0], timeout, strings.Join(p.output(), "\n"))
	}
	err := p.cmd.Wait()
	r := pythonResult{args: p.args, stderr: p.stderr.String()}
	if out := p.output(); len(out) > 0 {
		r.stdout = strings.Join(out, "\n") + "\n"
	}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("running %s: %v", p.args[0], err)
	}
	return r
}

func (p *pythonProcess) output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.lines)
}

// pythonSection is one resource's part of list_pods.py's output.
type pythonSection struct {
	// summary is the first line, e.g. "pods: V1PodList with 3 items in 1
	// page, resourceVersion 123".
	summary string
	headers map[string]string // the X-Krm-* lines
	rows    [][]string        // each item's cells
}

// pythonSummary reads a section's first line.
var pythonSummary = regexp.MustCompile(`^\w+: (\w+) with (\d+) items? in (\d+) pages?, resourceVersion (\d+)$`)

// parsePythonListing cuts list_pods.py's output into its sections, by
// resource ("pods", "deployments").
func parsePythonListing(t *testing.T, r pythonResult) map[string]*pythonSection {
	t.Helper()
	sections := map[string]*pythonSection{}
	var cur *pythonSection
	for _, line := range strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n") {
		switch {
		case !strings.HasPrefix(line, "  "):
			name, _, _ := strings.Cut(line, ":")
			cur = &pythonSection{summary: line, headers: map[string]string{}}
			sections[name] = cur
		case cur == nil:
			t.Fatalf("list_pods.py printed an indented line before any section\n%s", r)
		case strings.HasPrefix(line, "  X-Krm-"):
			name, value, _ := strings.Cut(strings.TrimSpace(line), ": ")
			cur.headers[name] = value
		case strings.HasPrefix(line, "  NAMESPACE/NAME "):
		default:
			cur.rows = append(cur.rows, strings.Fields(line))
		}
	}
	return sections
}

// checkPythonSection checks that a section came from a LIST of type
// listType, read in minPages pages or more, with krm's freshness headers,
// and that its rows are rows, in the API server's order.
func checkPythonSection(t *testing.T, r pythonResult, s *pythonSection, listType string, minPages int, rows [][]string) {
	t.Helper()
	if s == nil {
		t.Errorf("list_pods.py printed no section for its %s\n%s", listType, r)
		return
	}
	m := pythonSummary.FindStringSubmatch(s.summary)
	if m == nil {
		t.Errorf("cannot read the summary %q\n%s", s.summary, r)
		return
	}
	if m[1] != listType {
		t.Errorf("%s: the client returned a %s, want a %s\n%s", s.summary, m[1], listType, r)
	}
	if items, _ := strconv.Atoi(m[2]); items != len(rows) {
		t.Errorf("%s: %d items, want %d\n%s", s.summary, items, len(rows), r)
	}
	if pages, _ := strconv.Atoi(m[3]); pages < minPages {
		t.Errorf("%s: %d pages, want at least %d\n%s", s.summary, pages, minPages, r)
	}
	if v := s.headers[api.HeaderVerifiedAt]; !isTime(v) {
		t.Errorf("%s: %s is %q, want an RFC 3339 time\n%s", s.summary, api.HeaderVerifiedAt, v, r)
	}
	rv := s.headers[api.HeaderResourceVersion]
	if _, err := strconv.ParseUint(rv, 10, 64); err != nil {
		t.Errorf("%s: %s is %q, want a resourceVersion\n%s", s.summary, api.HeaderResourceVersion, rv, r)
	}
	if lag := s.headers[api.HeaderStreamLag]; lag != "disconnected" && !isDuration(lag) {
		t.Errorf("%s: %s is %q, want a duration or \"disconnected\"\n%s", s.summary, api.HeaderStreamLag, lag, r)
	}
	if diff := cmp.Diff(rows, s.rows); diff != "" {
		t.Errorf("%s: rows (-API server +Python through krm):\n%s\n%s", s.summary, diff, r)
	}
}

func isTime(s string) bool {
	_, err := time.Parse(time.RFC3339Nano, s)
	return err == nil
}

func isDuration(s string) bool {
	_, err := time.ParseDuration(s)
	return err == nil
}

// watchEvents are the "TYPE name" of each event watch_pods.py printed.
func watchEvents(stdout string) []string {
	var events []string
	for _, line := range strings.Split(stdout, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == "V1Pod" {
			events = append(events, f[0]+" "+f[1])
		}
	}
	return events
}

// resumeVersion is the resourceVersion watch_pods.py says to carry on
// from.
func resumeVersion(t *testing.T, r pythonResult) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^watch ended; carry on with --resource-version (\d+)$`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("watch_pods.py did not say where to carry on from\n%s", r)
	}
	return m[1]
}
