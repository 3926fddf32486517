package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/krm-project/krm/pkg/client"
)

// agentBuild is cmd/krm-agent, built once per test binary by buildAgent.
var agentBuild struct {
	once sync.Once
	path string
	err  error
}

// buildAgent returns cmd/krm-agent, built with the go on PATH the first time
// it is called in this test binary.
func buildAgent(t *testing.T) string {
	t.Helper()
	agentBuild.once.Do(func() {
		agentBuild.path, agentBuild.err = goBuild("github.com/krm-project/krm/cmd/krm-agent", "krm-agent")
	})
	if agentBuild.err != nil {
		t.Fatal(agentBuild.err)
	}
	return agentBuild.path
}

// goBuild builds pkg, with flags added to go build's (e.g. "-ldflags",
// "-X …"), into a directory of its own under the system's temporary
// directory. clustertest.Main ends the process with os.Exit, so nothing can
// remove that directory as the test binary ends; instead each build removes
// the directories left by test binaries no longer running.
func goBuild(pkg, name string, flags ...string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building %s needs the go command on PATH: %w", name, err)
	}
	removeStaleBuilds()
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", buildDirPrefix, os.Getpid()))
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append(append([]string{"build"}, flags...), "-o", bin, pkg)
	if out, err := exec.CommandContext(ctx, gobin, args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// buildDirPrefix starts the name of each build directory, followed by the
// pid of the test binary that made it.
const buildDirPrefix = "krm-e2e-bin-"

func removeStaleBuilds() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), buildDirPrefix+"*"))
	for _, dir := range dirs {
		pidText, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), buildDirPrefix), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(dir)
		}
	}
}

// agentProcess is a running krm-agent. Its stderr (JSON logs) is kept for
// failure messages.
type agentProcess struct {
	cmd    *exec.Cmd
	URL    string
	Client *client.Client
	log    lockedBuffer
	exited chan struct{}
	// waitErr is cmd.Wait's result, set before exited closes.
	waitErr error
}

// startAgent runs bin with args plus a JSON log format and a kernel-chosen
// port on 127.0.0.1, and returns once the agent says where it listens.
// When the test ends the agent is stopped, and its log is shown if the test
// failed.
func startAgent(t *testing.T, bin string, args ...string) *agentProcess {
	t.Helper()
	return startAgentOn(t, bin, "127.0.0.1:0", args...)
}

// startAgentOn is startAgent listening on listen: a restarted agent takes
// its predecessor's address, as a pod behind a Service would.
func startAgentOn(t *testing.T, bin, listen string, args ...string) *agentProcess {
	t.Helper()
	args = append(args, "--listen", listen, "--log-format", "json")
	p := &agentProcess{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	// An agent must not outlive a test binary that dies without cleaning
	// up (a -timeout panic, a kill).
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	address := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			p.log.writeLine(line)
			var rec struct {
				Address string `json:"address"`
			}
			if json.Unmarshal(line, &rec) == nil && rec.Address != "" {
				select {
				case address <- rec.Address:
				default:
				}
			}
		}
		// Wait closes the pipe, so it runs only once everything is read.
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if p.running() {
			if err := p.stop(10 * time.Second); err != nil {
				t.Errorf("stopping krm-agent at the end of the test: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("krm-agent %v log:\n%s", args, p.log.String())
		}
	})

	select {
	case addr := <-address:
		p.URL = "http://" + addr
	case <-p.exited:
		t.Fatalf("krm-agent exited before listening (%v); log:\n%s", p.waitErr, p.log.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("krm-agent did not log its listen address within 30s; log:\n%s", p.log.String())
	}
	p.Client, err = client.New(p.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *agentProcess) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// waitReady polls /readyz until the agent has verified every resource.
func (p *agentProcess) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := p.Client.Readyz(t.Context())
		if err == nil {
			return
		}
		if !p.running() {
			t.Fatalf("krm-agent exited while waiting for /readyz (%v)", p.waitErr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("krm-agent not ready after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits up to grace for a clean exit (status 0). It
// kills the process if it is still running after grace.
func (p *agentProcess) stop(grace time.Duration) error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	start := time.Now()
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("still running %s after SIGTERM; killed", grace)
	}
	if p.waitErr != nil {
		return fmt.Errorf("%w after SIGTERM (%s)", p.waitErr, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// runAgent runs bin to completion (it is expected to fail fast) and returns
// its exit code and stderr.
func runAgent(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("krm-agent %v still running after 30s; stderr:\n%s", args, stderr.String())
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stderr.String()
	default:
		t.Fatalf("running krm-agent %v: %v", args, err)
		return 0, ""
	}
}

// lockedBuffer collects a process's output while tests read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) writeLine(line []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(line)
	b.buf.WriteByte('\n')
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// kubectl runs the cluster's own kubectl and returns its stdout.
func kubectl(ctx context.Context, path, kubeconfig string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}
