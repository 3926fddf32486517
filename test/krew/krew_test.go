// Package krew_test installs krm's release archive with the real krew, as a
// user does, and runs the installed plugin through kubectl against a real
// agent on the local cluster.
package krew_test

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
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/krm-project/krm/internal/dist"
	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

// repo is the repository's root, seen from this package's directory.
const repo = "../.."

const (
	pluginVersion = "v0.1.0-krewtest.1"
	agentVersion  = "v0.1.0-krewtest-agent.1"
)

// TestKrewInstall builds the release for this machine, installs it with
// `kubectl krew install --manifest --archive`, runs `kubectl krm version`
// against a real agent, lists and uninstalls it. Nothing goes to the
// network: krew's index is a local git repository made here.
func TestKrewInstall(t *testing.T) {
	c := clustertest.Get(t)
	if !slices.Contains(dist.All, dist.Host()) {
		t.Skipf("no release is built for %s", dist.Host())
	}
	ctx := t.Context()
	krew, _, err := cluster.EnsureKrew(ctx, cluster.DefaultConfig().Cache, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	rel, err := dist.Build(ctx, dist.Config{Repo: repo, Version: pluginVersion, Out: t.TempDir(), Platforms: []dist.Platform{dist.Host()}, Log: t.Output()})
	if err != nil {
		t.Fatal(err)
	}
	agentURL := startAgent(t, c)

	// kubectl runs krew as a plugin: it must be on PATH as kubectl-krew.
	tools := t.TempDir()
	if err := os.Symlink(krew, filepath.Join(tools, "kubectl-krew")); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	initIndex(t, root, rel.Manifest)
	k := &kubectl{path: c.Kubectl, env: append(os.Environ(),
		"KREW_ROOT="+root,
		"KREW_NO_UPGRADE_CHECK=1",
		"KUBECONFIG="+c.Kubeconfig,
		// Only krew's bin, krew and the cluster's kubectl: no other
		// kubectl-krm can answer for the installed one.
		"PATH="+strings.Join([]string{filepath.Join(root, "bin"), tools, filepath.Dir(c.Kubectl)}, string(os.PathListSeparator)),
	)}
	installed := filepath.Join(root, "bin", "kubectl-krm")

	r := k.run(t, "krew", "install", "--manifest="+rel.Manifest, "--archive="+rel.Archives[0])
	if r.code != 0 || !strings.Contains(r.stderr, "Installed plugin: krm") {
		t.Fatalf("kubectl krew install --manifest --archive: want exit 0 and \"Installed plugin: krm\"\n%s", r)
	}
	if _, err := os.Lstat(installed); err != nil {
		t.Fatalf("krew installed no %s: %v\n%s", installed, err, r)
	}
	// Caveats tell where the agent comes from.
	if !strings.Contains(r.stderr, "kubectl apply -k") || !strings.Contains(r.stderr, "--agent-url") {
		t.Errorf("krew install did not show the caveats:\n%s", r)
	}
	store := filepath.Join(root, "store", "krm", pluginVersion)
	for _, f := range []string{"kubectl-krm", "LICENSE", "kubectl_complete-krm"} {
		if _, err := os.Stat(filepath.Join(store, f)); err != nil {
			t.Errorf("krew did not install %s: %v", f, err)
		}
	}

	r = k.run(t, "krm", "version", "--agent-url", agentURL)
	if r.code != 0 || !strings.Contains(r.stdout, "Plugin Version: "+pluginVersion+"\n") || !strings.Contains(r.stdout, "Agent Version: "+agentVersion+"\n") {
		t.Errorf("kubectl krm version --agent-url: want exit 0, plugin %s and agent %s\n%s", pluginVersion, agentVersion, r)
	}
	r = k.run(t, "krm", "version", "--client")
	if r.code != 0 || !strings.Contains(r.stdout, "Plugin Version: "+pluginVersion+"\n") || strings.Contains(r.stdout, agentVersion) {
		t.Errorf("kubectl krm version --client: want exit 0 and plugin %s only\n%s", pluginVersion, r)
	}

	// kubectl completes `kubectl krm …` through kubectl_complete-krm, which
	// krew leaves in the store: users put that on PATH (see the caveats).
	kc := k.withPath(store, "/usr/bin", "/bin")
	if r := kc.run(t, "__complete", "krm", "vers"); r.code != 0 || !strings.HasPrefix(r.stdout, "version\t") {
		t.Errorf("kubectl __complete krm vers with the installed kubectl_complete-krm: want exit 0 and version\n%s", r)
	}

	// Plugins installed from a manifest file belong to krew's "detached"
	// index; listing prints INDEX/NAME for them.
	r = k.run(t, "krew", "list")
	if r.code != 0 || !slices.Contains(strings.Fields(r.stdout), "detached/krm") {
		t.Errorf("kubectl krew list: want exit 0 and krm (as detached/krm)\n%s", r)
	}

	r = k.run(t, "krew", "uninstall", "krm")
	if r.code != 0 || !strings.Contains(r.stderr, "Uninstalled plugin: krm") {
		t.Fatalf("kubectl krew uninstall krm: want exit 0 and \"Uninstalled plugin: krm\"\n%s", r)
	}
	if _, err := os.Lstat(installed); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there after uninstall (%v)", installed, err)
	}
	if _, err := os.Stat(store); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there after uninstall (%v)", store, err)
	}
	if r := k.run(t, "krew", "list"); r.code != 0 || strings.Contains(r.stdout, "krm") {
		t.Errorf("kubectl krew list after uninstall: want exit 0 and no krm\n%s", r)
	}
	if r := k.run(t, "krm", "version", "--client"); r.code == 0 {
		t.Errorf("kubectl krm still runs after uninstall\n%s", r)
	}
}

// initIndex makes root's default index a git repository holding the
// manifest, as `kubectl krew update` would clone it. krew's list and
// uninstall refuse to run without an index.
func initIndex(t *testing.T, root, manifest string) {
	t.Helper()
	index := filepath.Join(root, "index", "default")
	if err := os.MkdirAll(filepath.Join(index, "plugins"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(index, "plugins", "krm.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"init", "-q"},
		{"add", "plugins/krm.yaml"},
		{"-c", "user.name=krm tests", "-c", "user.email=krm-tests@example.invalid", "commit", "-q", "-m", "krm"},
	} {
		cmd := exec.CommandContext(t.Context(), "git", args...)
		cmd.Dir = index
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s in %s: %v\n%s", strings.Join(args, " "), index, err, out)
		}
	}
}

// kubectl runs the cluster's kubectl in an environment of its own.
type kubectl struct {
	path string
	env  []string
}

// withPath is k with dirs added at the end of PATH.
func (k *kubectl) withPath(dirs ...string) *kubectl {
	env := slices.Clone(k.env)
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
			env[i] = "PATH=" + strings.Join(append([]string{v}, dirs...), string(os.PathListSeparator))
			break
		}
	}
	return &kubectl{path: k.path, env: env}
}

// result is what a command did.
type result struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("$ kubectl %s\nexit %d\n--- stdout:\n%s--- stderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

func (k *kubectl) run(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.path, args...)
	cmd.Env = k.env
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

// startAgent builds cmd/krm-agent stamped with agentVersion, runs it on a
// port of 127.0.0.1 the kernel picks, against the cluster, and returns its
// URL once it is ready. The agent is stopped when the test ends.
func startAgent(t *testing.T, c *cluster.State) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "krm-agent")
	build := exec.CommandContext(t.Context(), "go", "build", "-ldflags", "-X github.com/krm-project/krm/pkg/version.Version="+agentVersion,
		"-o", bin, "github.com/krm-project/krm/cmd/krm-agent")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/krm-agent: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--kubeconfig", c.Kubeconfig, "--listen", "127.0.0.1:0", "--log-format", "json")
	// The agent must not outlive a test binary that dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer // written by the reader below until exited closes
	address := make(chan string, 1)
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			log.Write(append(sc.Bytes(), '\n'))
			var rec struct {
				Address string `json:"address"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Address != "" {
				select {
				case address <- rec.Address:
				default:
				}
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("krm-agent log:\n%s", log.String())
		}
	})

	var url string
	select {
	case addr := <-address:
		url = "http://" + addr
	case err := <-exited:
		exited <- err
		t.Fatalf("krm-agent exited before listening (%v)", err)
	case <-time.After(30 * time.Second):
		t.Fatal("krm-agent did not log its listen address within 30s")
	}
	client, err := api.NewClient(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := client.Readyz(t.Context())
		if err == nil {
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("krm-agent at %s not ready after 60s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
