package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/krm-project/krm/internal/dist"
	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// The versions TestKrewInstall stamps on the plugin's release and on the
// agent, so that `kubectl krm version` shows which answered.
const (
	krewPluginVersion = "v0.1.0-krewtest.1"
	krewAgentVersion  = "v0.1.0-krewtest-agent.1"
)

// TestKrewInstall installs krm's release archive with the real krew, as a
// user does, and runs the installed plugin through kubectl against a real
// agent on the local cluster. It builds the release for this machine,
// installs it with `kubectl krew install --manifest --archive`, runs
// `kubectl krm version` against the agent, lists and uninstalls it. Nothing
// goes to the network: krew's index is a local git repository made here.
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
	// dist.Build takes the repository's root; tests run in test/e2e.
	rel, err := dist.Build(ctx, dist.Config{Repo: filepath.Join("..", ".."), Version: krewPluginVersion, Out: t.TempDir(), Platforms: []dist.Platform{dist.Host()}, Log: t.Output()})
	if err != nil {
		t.Fatal(err)
	}
	agentBin, err := goBuild("github.com/krm-project/krm/cmd/krm-agent", "krm-agent",
		"-ldflags", "-X github.com/krm-project/krm/pkg/version.Version="+krewAgentVersion)
	if err != nil {
		t.Fatal(err)
	}
	agent := startAgent(t, agentBin, "--kubeconfig", c.Kubeconfig)
	agent.waitReady(t, 60*time.Second)

	// kubectl runs krew as a plugin: it must be on PATH as kubectl-krew.
	tools := t.TempDir()
	if err := os.Symlink(krew, filepath.Join(tools, "kubectl-krew")); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	initKrewIndex(t, root, rel.Manifest)
	// Only krew's bin, krew and the cluster's kubectl are on PATH: no other
	// kubectl-krm can answer for the installed one.
	path := []string{filepath.Join(root, "bin"), tools, filepath.Dir(c.Kubectl)}
	k := pluginWithEnv(c, "KREW_ROOT="+root, "KREW_NO_UPGRADE_CHECK=1", pathEnv(path...))
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
	store := filepath.Join(root, "store", "krm", krewPluginVersion)
	for _, f := range []string{"kubectl-krm", "LICENSE", "kubectl_complete-krm"} {
		if _, err := os.Stat(filepath.Join(store, f)); err != nil {
			t.Errorf("krew did not install %s: %v", f, err)
		}
	}

	r = k.krm(t, "version", "--agent-url", agent.URL)
	if r.code != 0 || !strings.Contains(r.stdout, "Plugin Version: "+krewPluginVersion+"\n") || !strings.Contains(r.stdout, "Agent Version: "+krewAgentVersion+"\n") {
		t.Errorf("kubectl krm version --agent-url: want exit 0, plugin %s and agent %s\n%s", krewPluginVersion, krewAgentVersion, r)
	}
	r = k.krm(t, "version", "--client")
	if r.code != 0 || !strings.Contains(r.stdout, "Plugin Version: "+krewPluginVersion+"\n") || strings.Contains(r.stdout, krewAgentVersion) {
		t.Errorf("kubectl krm version --client: want exit 0 and plugin %s only\n%s", krewPluginVersion, r)
	}

	// kubectl completes `kubectl krm …` through kubectl_complete-krm, which
	// krew leaves in the store: users put that on PATH (see the caveats).
	kc := k.withEnv(pathEnv(append(path, store, "/usr/bin", "/bin")...))
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
	if r := k.krm(t, "version", "--client"); r.code == 0 {
		t.Errorf("kubectl krm still runs after uninstall\n%s", r)
	}
}

// pathEnv is a PATH of just dirs, for pluginWithEnv and withEnv.
func pathEnv(dirs ...string) string {
	return "PATH=" + strings.Join(dirs, string(os.PathListSeparator))
}

// initKrewIndex makes root's default index a git repository holding the
// manifest, as `kubectl krew update` would clone it. krew's list and
// uninstall refuse to run without an index.
func initKrewIndex(t *testing.T, root, manifest string) {
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
