package benchenv

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/krm-project/krm/pkg/client"
)

// Agent is a krm-agent process a run started.
type Agent struct {
	cmd *exec.Cmd
	// URL is where it serves its API, Client a client of it.
	URL    string
	Client *client.Client
	exited chan struct{}
	err    error // cmd.Wait's result, set before exited closes
	mu     sync.Mutex
	log    []string // the last lines of its stderr
}

// StartAgent runs bin with the kubeconfig, args, a JSON log and a loopback
// listener on a free port, with env added to its environment, and waits
// until it is ready.
func (e *Env) StartAgent(ctx context.Context, bin string, env []string, args ...string) (*Agent, error) {
	args = append([]string{"--kubeconfig", e.S.Kubeconfig, "--listen", "127.0.0.1:0", "--log-format", "json"}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	// If the run dies without cleaning up, so does the agent.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &Agent{cmd: cmd, exited: make(chan struct{})}
	address := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log = append(p.log, line)
			if len(p.log) > 20 {
				p.log = p.log[1:]
			}
			p.mu.Unlock()
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
		p.err = cmd.Wait()
		close(p.exited)
	}()
	fail := func(err error) (*Agent, error) {
		_ = p.Stop()
		return nil, err
	}
	select {
	case addr := <-address:
		p.URL = "http://" + addr
	case <-p.exited:
		return nil, fmt.Errorf("krm-agent exited before listening (%v):\n%s", p.err, p.Tail())
	case <-time.After(30 * time.Second):
		return fail(fmt.Errorf("krm-agent did not say where it listens within 30s:\n%s", p.Tail()))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	if p.Client, err = client.New(p.URL, nil); err != nil {
		return fail(err)
	}
	for {
		if err := p.Client.Readyz(ctx); err == nil {
			return p, nil
		}
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-p.exited:
			return nil, fmt.Errorf("krm-agent exited (%v):\n%s", p.err, p.Tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop sends SIGTERM and waits for the agent to exit, killing it after
// 15 s; an unclean exit is an error with the agent's last log lines.
func (p *Agent) Stop() error {
	if !p.Running() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("krm-agent ignored SIGTERM for 15s and was killed:\n%s", p.Tail())
	}
	if p.err != nil {
		return fmt.Errorf("krm-agent exited with %v:\n%s", p.err, p.Tail())
	}
	return nil
}

// Running says whether the process has not exited.
func (p *Agent) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Pid is the agent's process id.
func (p *Agent) Pid() int { return p.cmd.Process.Pid }

// Tail is the agent's last lines of log.
func (p *Agent) Tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.log, "\n")
}

// RSS is the agent's resident set size, from /proc.
func (p *Agent) RSS() (int64, error) { return ProcStatus(p.Pid(), "VmRSS") }

// ResetPeakRSS starts the kernel's peak RSS (VmHWM) over from now.
func (p *Agent) ResetPeakRSS() error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.Pid()), []byte("5"), 0); err != nil {
		return fmt.Errorf("resetting the agent's peak RSS: %w", err)
	}
	return nil
}

// PeakRSS is the agent's peak RSS since it started or ResetPeakRSS.
func (p *Agent) PeakRSS() (int64, error) { return ProcStatus(p.Pid(), "VmHWM") }

// BuildAgent builds ./cmd/krm-agent into dir; run inside the krm module.
func BuildAgent(ctx context.Context, dir string) (string, error) {
	bin := dir + "/krm-agent"
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/krm-project/krm/cmd/krm-agent").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/krm-agent (run inside the krm module): %w\n%s", err, out)
	}
	return bin, nil
}
