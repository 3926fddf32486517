package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/krm-project/krm/pkg/client"
	"github.com/krm-project/krm/test/benchenv"
)

// Agent is one krm-agent process of a scenario: the real binary, started
// with the scenario's flags, restarted by faults under the same name.
type Agent struct {
	Name string
	args []string
	// logPath receives its whole log.
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	url    string
	client *client.Client
	exited chan struct{}
	err    error
	log    []string
	// peakRSS is the highest VmHWM read of any process of this agent.
	peakRSS int64
}

// BuildAgent builds cmd/krm-agent into dir and returns the binary's path.
// It must run inside the krm module.
func BuildAgent(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "krm-agent")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/krm-project/krm/cmd/krm-agent").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/krm-agent (run inside the krm module): %w\n%s", err, out)
	}
	return bin, nil
}

// start runs the binary and waits until it says where it listens.
func (a *Agent) start(ctx context.Context, bin string) error {
	cmd := exec.Command(bin, a.args...)
	// If the suite dies without cleaning up, so does the agent.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	exited := make(chan struct{})
	a.mu.Lock()
	a.cmd, a.exited, a.url, a.client = cmd, exited, "", nil
	a.mu.Unlock()
	address := make(chan string, 1)
	logFile, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	go func() {
		defer logFile.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			_, _ = fmt.Fprintln(logFile, line)
			a.mu.Lock()
			a.log = append(a.log, line)
			if len(a.log) > 40 {
				a.log = a.log[1:]
			}
			a.mu.Unlock()
			var rec struct {
				Address string `json:"address"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Address != "" {
				select {
				case address <- rec.Address:
				default:
				}
			}
		}
		err := cmd.Wait()
		a.mu.Lock()
		a.err = err
		a.mu.Unlock()
		close(exited)
	}()
	select {
	case addr := <-address:
		c, err := client.New("http://"+addr, &http.Client{Timeout: 10 * time.Second})
		if err != nil {
			return err
		}
		a.mu.Lock()
		a.url, a.client = "http://"+addr, c
		a.mu.Unlock()
		return nil
	case <-exited:
		return fmt.Errorf("%s exited before listening (%v):\n%s", a.Name, a.exitErr(), a.Tail())
	case <-time.After(60 * time.Second):
		return fmt.Errorf("%s did not say where it listens within 60s:\n%s", a.Name, a.Tail())
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *Agent) exitErr() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// Client is the client of the running process; nil while it is down.
func (a *Agent) Client() *client.Client {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.runningLocked() {
		return nil
	}
	return a.client
}

// URL is the running process's base URL, "" while it is down.
func (a *Agent) URL() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.runningLocked() {
		return ""
	}
	return a.url
}

func (a *Agent) runningLocked() bool {
	if a.cmd == nil {
		return false
	}
	select {
	case <-a.exited:
		return false
	default:
		return true
	}
}

// Running reports whether the process runs.
func (a *Agent) Running() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.runningLocked()
}

// Kill kills the process with SIGKILL, as the OOM killer or a node failure
// would, and waits until it is gone.
func (a *Agent) Kill() {
	a.mu.Lock()
	cmd, exited := a.cmd, a.exited
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	a.sampleRSS()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// Stop ends the process with SIGTERM (SIGKILL after 15 s) and reports an
// unclean exit.
func (a *Agent) Stop() error {
	a.mu.Lock()
	cmd, exited := a.cmd, a.exited
	a.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-exited:
		return nil // killed, or exited on its own: reported elsewhere
	default:
	}
	a.sampleRSS()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("%s ignored SIGTERM for 15s and was killed:\n%s", a.Name, a.Tail())
	}
	if err := a.exitErr(); err != nil {
		return fmt.Errorf("%s exited with %v:\n%s", a.Name, err, a.Tail())
	}
	return nil
}

// Tail is the end of the agent's log.
func (a *Agent) Tail() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.log, "\n")
}

// warnings are the last n lines of its log at level WARN or ERROR.
func (a *Agent) warnings(n int) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for i := len(a.log) - 1; i >= 0 && len(out) < n; i-- {
		if strings.Contains(a.log[i], `"level":"WARN"`) || strings.Contains(a.log[i], `"level":"ERROR"`) {
			out = append(out, a.log[i])
		}
	}
	return strings.Join(out, " | ")
}

// sampleRSS records the process's peak RSS so far (VmHWM).
func (a *Agent) sampleRSS() {
	a.mu.Lock()
	cmd := a.cmd
	running := a.runningLocked()
	a.mu.Unlock()
	if !running {
		return
	}
	if v, err := benchenv.ProcStatus(cmd.Process.Pid, "VmHWM"); err == nil {
		a.mu.Lock()
		a.peakRSS = max(a.peakRSS, v)
		a.mu.Unlock()
	}
}

// PeakRSS is the highest resident set size any process of this agent
// reached, as far as sampled.
func (a *Agent) PeakRSS() int64 {
	a.sampleRSS()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.peakRSS
}

// Metric reads one unlabelled gauge (such as go_goroutines) or the sum of
// a metric's series whose labels contain match, from /metrics.
func (a *Agent) Metric(ctx context.Context, name, match string) (float64, error) {
	u := a.URL()
	if u == "" {
		return 0, fmt.Errorf("%s is not running", a.Name)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s/metrics: %s", u, resp.Status)
	}
	sum, found := 0.0, false
	for line := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		metric, labels, _ := strings.Cut(series, "{")
		if metric != name || !strings.Contains(labels, match) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %q: %w", name, line, err)
		}
		sum, found = sum+v, true
	}
	if !found {
		return 0, fmt.Errorf("%s serves no metric %s{%s}", a.Name, name, match)
	}
	return sum, nil
}

// Role is "leader" or "follower" with leader election, else "".
func (a *Agent) Role(ctx context.Context) (string, error) {
	c := a.Client()
	if c == nil {
		return "", errors.New(a.Name + " is not running")
	}
	st, err := c.AgentStatus(ctx)
	if err != nil {
		return "", err
	}
	return st.Status.Role, nil
}
