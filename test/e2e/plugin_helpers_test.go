package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/krm-project/krm/test/cluster"
)

// plugin is the cluster's kubectl with a kubectl-krm and
// kubectl_complete-krm on its PATH (freshly built ones first, from
// buildPlugin), so `kubectl krm …` goes through kubectl's own plugin
// dispatch, as it does for users.
type plugin struct {
	kubectl string
	dir     string
	env     []string
}

// buildPlugin builds cmd/kubectl-krm (with the harness's goBuild), puts the
// completion helper and a link to the cluster's kubectl beside it, and
// returns the kubectl to run with that directory first on PATH.
func buildPlugin(t *testing.T, c *cluster.State) *plugin {
	t.Helper()
	bin, err := goBuild("github.com/krm-project/krm/cmd/kubectl-krm", "kubectl-krm")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(bin)
	// The completion helper is a script kept beside the plugin's sources;
	// tests run in test/e2e.
	script, err := os.ReadFile(filepath.Join("..", "..", "cmd", "kubectl-krm", "kubectl_complete-krm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kubectl_complete-krm"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(c.Kubectl, filepath.Join(dir, "kubectl")); err != nil {
		t.Fatal(err)
	}
	p := pluginWithEnv(c, "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	p.dir = dir
	return p
}

// pluginWithEnv is the cluster's kubectl run with this process's
// environment, KUBECONFIG set to the cluster's, and env (see withEnv), which
// may set a PATH of its own. It builds nothing: `kubectl krm` is whatever
// kubectl-krm that PATH holds.
func pluginWithEnv(c *cluster.State, env ...string) *plugin {
	p := &plugin{kubectl: c.Kubectl, env: append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)}
	return p.withEnv(env...)
}

// withKubeconfig is p with KUBECONFIG set to path.
func (p *plugin) withKubeconfig(path string) *plugin {
	return p.withEnv("KUBECONFIG=" + path)
}

// withEnv is p with env (NAME=value) added to its environment; a later
// entry wins over an earlier one of the same name.
func (p *plugin) withEnv(env ...string) *plugin {
	q := *p
	q.env = append(append([]string(nil), p.env...), env...)
	return &q
}

// result is what a command did.
type result struct {
	args           []string // kubectl's arguments
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("$ kubectl %s\nexit %d\n--- stdout:\n%s--- stderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// run runs the cluster's kubectl with args in p's environment.
func (p *plugin) run(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.kubectl, args...)
	cmd.Env = p.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("still running after 2m\n%s", r)
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("running kubectl %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// krm runs `kubectl krm args…`.
func (p *plugin) krm(t *testing.T, args ...string) result {
	t.Helper()
	return p.run(t, append([]string{"krm"}, args...)...)
}

// portOf is the port of a URL such as http://127.0.0.1:41234.
func portOf(t *testing.T, rawURL string) int {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("no port in %q: %v", rawURL, err)
	}
	return port
}

// closedPort returns a port on 127.0.0.1 that nothing listens on (it did a
// moment ago, so nothing else has been given it).
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// agentLabels mark a pod as the krm agent for the plugin's default
// --agent-selector.
var agentLabels = map[string]string{"app.kubernetes.io/name": "krm-agent"}

// agentPodSpec is a pod the scheduler puts on a kwok node, which runs it.
func agentPodSpec(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: agentLabels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "agent", Image: "krm-e2e/krm-agent:1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		}}},
	}
}

// agentPod creates a kwok pod named name in ns, labelled as the krm agent,
// whose port 8080 reaches 127.0.0.1:localPort, and waits until it is
// Running and Ready.
func agentPod(t *testing.T, c *cluster.State, cs kubernetes.Interface, ns, name string, localPort int) {
	t.Helper()
	ctx := t.Context()
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, agentPodSpec(name), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the agent pod %s/%s: %v", ns, name, err)
	}
	if err := c.ForwardPodPort(ctx, ns, name, 8080, localPort); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "pod "+ns+"/"+name+" to be Running and Ready", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return errors.New("not Ready")
	})
}

// table is one table of kubectl get's output.
type table struct {
	header []string
	// starts are the offsets where the header's columns start; cells are
	// cut there, so empty cells and cells with spaces come out right.
	starts []int
	lines  []string // the rows, as printed
}

// parseTables cuts output into its tables: kubectl prints one per kind,
// separated by a blank line. Columns start where a header word follows three
// spaces ("NOMINATED NODE" is one column).
func parseTables(out string) []table {
	var tables []table
	for _, block := range strings.Split(strings.TrimSuffix(out, "\n"), "\n\n") {
		lines := strings.Split(block, "\n")
		h := lines[0]
		var tb table
		for i := 0; i < len(h); i++ {
			if h[i] != ' ' && (i == 0 || strings.HasSuffix(h[:i], "   ")) {
				tb.starts = append(tb.starts, i)
			}
		}
		tb.header = tb.cut(h)
		tb.lines = lines[1:]
		tables = append(tables, tb)
	}
	return tables
}

func (tb table) cut(line string) []string {
	var cells []string
	for i, s := range tb.starts {
		end := len(line)
		if i+1 < len(tb.starts) {
			end = min(tb.starts[i+1], len(line))
		}
		cells = append(cells, strings.TrimSpace(line[min(s, len(line)):end]))
	}
	return cells
}

func (tb table) column(name string) int {
	for i, h := range tb.header {
		if h == name {
			return i
		}
	}
	return -1
}

// rows returns the table's cells.
func (tb table) rows() [][]string {
	out := make([][]string, len(tb.lines))
	for i, l := range tb.lines {
		out[i] = tb.cut(l)
	}
	return out
}

// sameOutput compares what krm printed with what kubectl printed elapsed
// before, and returns "" when they are the same, byte for byte. The one
// allowance: an AGE cell may differ when the clock ticked between the two
// commands, by no more than elapsed and the cells' precision. Then every
// line must still be byte-identical up to the AGE column, and the cells
// after it equal (their padding follows AGE's width).
func sameOutput(want, got string, elapsed time.Duration) string {
	if want == got {
		return ""
	}
	diff := cmp.Diff(want, got)
	wt, gt := parseTables(want), parseTables(got)
	if len(wt) != len(gt) {
		return diff
	}
	for i := range wt {
		w, g := wt[i], gt[i]
		age := w.column("AGE")
		if age < 0 || !cmp.Equal(w.header, g.header) || len(w.lines) != len(g.lines) || g.column("AGE") != age {
			return diff
		}
		wr, gr := w.rows(), g.rows()
		for j := range wr {
			if w.lines[j][:min(w.starts[age], len(w.lines[j]))] != g.lines[j][:min(g.starts[age], len(g.lines[j]))] {
				return diff
			}
			if wr[j][age] != gr[j][age] && !ticked(wr[j][age], gr[j][age], elapsed) {
				return diff
			}
			wr[j][age], gr[j][age] = "<age>", "<age>"
		}
		if !cmp.Equal(wr, gr) {
			return diff
		}
	}
	return ""
}

// ticked says whether an AGE of later, printed up to elapsed after
// earlier, is what the clock's moving on makes of earlier.
func ticked(earlier, later string, elapsed time.Duration) bool {
	e, eUnit, ok1 := parseAge(earlier)
	l, lUnit, ok2 := parseAge(later)
	if !ok1 || !ok2 {
		return false
	}
	unit := max(eUnit, lUnit)
	return l-e >= -unit && l-e <= elapsed+unit
}

// parseAge reads a kubectl age ("45s", "3m7s", "5h", "2d3h", "3y") and the
// precision it was shown with.
func parseAge(s string) (age, unit time.Duration, ok bool) {
	units := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'y': 365 * 24 * time.Hour}
	n := 0
	digits := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			n, digits = n*10+int(c-'0'), true
		case units[c] != 0 && digits:
			age += time.Duration(n) * units[c]
			unit, n, digits = units[c], 0, false
		default:
			return 0, 0, false
		}
	}
	return age, unit, unit != 0 && !digits
}

// sameAsKubectl runs `kubectl args…` and `kubectl krm args… extra…` until
// they print the same (see sameOutput) to stdout and stderr and exit alike.
// Both read snapshots taken at different moments of a cluster others
// change too, so it tries for up to 30s. It returns krm's result.
func sameAsKubectl(t *testing.T, p *plugin, args, extra []string) result {
	t.Helper()
	return untilSame(t, "kubectl", "krm", 300*time.Millisecond, func() (result, result) {
		return p.run(t, args...), p.krm(t, append(append([]string{}, args...), extra...)...)
	}, func(problems string) string {
		return fmt.Sprintf("kubectl krm %s never printed what kubectl %[1]s prints within 30s; last difference:\n%s", strings.Join(args, " "), problems)
	})
}

// untilSame runs both until they exit alike and print the same stdout
// (sameOutput: an AGE the clock moved on is allowed) and stderr, for up to
// 30s; then it fails the test with failure's sentence about the last
// difference. wantName and gotName label the two sides. It returns got's
// last result.
func untilSame(t *testing.T, wantName, gotName string, every time.Duration, both func() (want, got result), failure func(problems string) string) result {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		start := time.Now()
		want, got := both()
		elapsed := time.Since(start)
		var problems []string
		if want.code != got.code {
			problems = append(problems, fmt.Sprintf("exit code: %s %d, %s %d", wantName, want.code, gotName, got.code))
		}
		if d := sameOutput(want.stdout, got.stdout, elapsed); d != "" {
			problems = append(problems, fmt.Sprintf("stdout (-%s +%s):\n%s", wantName, gotName, d))
		}
		if d := cmp.Diff(want.stderr, got.stderr); d != "" {
			problems = append(problems, fmt.Sprintf("stderr (-%s +%s):\n%s", wantName, gotName, d))
		}
		if len(problems) == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Error(failure(strings.Join(problems, "\n")))
			return got
		}
		time.Sleep(every)
	}
}

// TestSameOutput checks the comparison the plugin's e2e tests rest on: it
// must forgive a clock tick in AGE and nothing else. It needs no cluster.
func TestSameOutput(t *testing.T) {
	kubectl := "" +
		"NAME   READY   STATUS    RESTARTS   AGE   IP         NODE\n" +
		"a      1/1     Running   0          9s    10.0.0.1   kwok-node-0\n" +
		"bb     0/1     Pending   0          59s   <none>     <none>\n"
	tests := []struct {
		name string
		krm  string
		same bool
	}{
		{"identical", kubectl, true},
		{"a tick, which widens AGE", "" +
			"NAME   READY   STATUS    RESTARTS   AGE    IP         NODE\n" +
			"a      1/1     Running   0          10s    10.0.0.1   kwok-node-0\n" +
			"bb     0/1     Pending   0          60s    <none>     <none>\n", true},
		{"an age far off", "" +
			"NAME   READY   STATUS    RESTARTS   AGE   IP         NODE\n" +
			"a      1/1     Running   0          9s    10.0.0.1   kwok-node-0\n" +
			"bb     0/1     Pending   0          5h    <none>     <none>\n", false},
		{"an age going back", "" +
			"NAME   READY   STATUS    RESTARTS   AGE   IP         NODE\n" +
			"a      1/1     Running   0          7s    10.0.0.1   kwok-node-0\n" +
			"bb     0/1     Pending   0          59s   <none>     <none>\n", false},
		{"a cell after AGE", "" +
			"NAME   READY   STATUS    RESTARTS   AGE   IP         NODE\n" +
			"a      1/1     Running   0          10s   10.0.0.2   kwok-node-0\n" +
			"bb     0/1     Pending   0          59s   <none>     <none>\n", false},
		{"padding before AGE", "" +
			"NAME   READY   STATUS    RESTARTS    AGE   IP         NODE\n" +
			"a      1/1     Running   0           10s   10.0.0.1   kwok-node-0\n" +
			"bb     0/1     Pending   0           59s   <none>     <none>\n", false},
		{"a row less", "" +
			"NAME   READY   STATUS    RESTARTS   AGE   IP         NODE\n" +
			"a      1/1     Running   0          10s   10.0.0.1   kwok-node-0\n", false},
	}
	for _, tt := range tests {
		if got := sameOutput(kubectl, tt.krm, 2*time.Second) == ""; got != tt.same {
			t.Errorf("%s: same %v, want %v", tt.name, got, tt.same)
		}
	}
	for s, want := range map[string]time.Duration{"45s": 45 * time.Second, "3m7s": 187 * time.Second, "2d3h": 51 * time.Hour, "130m": 130 * time.Minute} {
		if got, _, ok := parseAge(s); !ok || got != want {
			t.Errorf("parseAge(%q) = %v, %v; want %v", s, got, ok, want)
		}
	}
	for _, s := range []string{"", "<unknown>", "5", "s", "1.5s"} {
		if _, _, ok := parseAge(s); ok {
			t.Errorf("parseAge(%q) succeeded, want a failure", s)
		}
	}
}
