// Package kind is krm's end-to-end test on a real cluster: it creates a kind
// cluster, loads the agent image that `make image` built into its nodes,
// installs manifests/ with that image, and checks that `kubectl krm`,
// dispatched by kubectl as a plugin, answers like kubectl does.
//
// It needs a running container engine (Docker, Podman or nerdctl) and skips
// without one, so CI, which has none, does not run it. Run it with
//
//	make e2e-kind
//
// which builds the image and the plugin first. It is a module of its own so
// that kind's dependencies never reach krm's go.mod.
package kind

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
	kindlog "sigs.k8s.io/kind/pkg/log"
)

var (
	imageArchiveFlag = flag.String("image-archive", "../../bin/krm-agent-image.tar",
		"the agent image archive that `make image` writes")
	imageFlag = flag.String("image", "",
		"the agent image's tag inside -image-archive (default: the archive's only tag)")
	pluginFlag = flag.String("plugin", "../../bin",
		"kubectl-krm: the directory that holds it, or the binary")
	kubectlFlag = flag.String("kubectl", "",
		"the kubectl binary (default: kubectl from PATH)")
	manifestsFlag = flag.String("manifests", "../../manifests",
		"the repository's manifests directory (a kustomization)")
	keepFlag = flag.Bool("keep", false,
		"keep the kind cluster after the test; it logs how to delete it")
	nodeImageFlag = flag.String("node-image", "",
		"the kind node image (default: kind's own default)")
	kindVerbosityFlag = flag.Int("kind-verbosity", 0,
		"verbosity of kind's log (0 shows its progress only)")
)

const (
	// agentImageName is the agent's image name after manifests/base's
	// images: entry; the test's overlay replaces its tag.
	agentImageName = "krm-project/krm-agent"
	namespace      = "krm-system"
	// noEngine is the skip message without a running container engine.
	noEngine = "no container engine (docker, podman or nerdctl) is running; " +
		"make e2e-kind needs one — CI does not run this test"
)

func TestKind(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: TestKind creates a kind cluster")
	}
	engine, why := detectEngine()
	if engine == nil {
		t.Skipf("%s (%s)", noEngine, why)
	}
	t.Logf("container engine: %s", engine.name)

	// Check every input before the cluster exists: creating it takes minutes.
	archive, err := filepath.Abs(*imageArchiveFlag)
	if err != nil {
		t.Fatal(err)
	}
	image := resolveImage(t, archive, *imageFlag)
	pluginDir := pluginDir(t, *pluginFlag)
	kubectl := *kubectlFlag
	if kubectl == "" {
		kubectl = "kubectl"
	}
	// Resolve kubectl before PATH gains the plugin directory.
	if kubectl, err = exec.LookPath(kubectl); err != nil {
		t.Fatalf("kubectl not found (set -kubectl): %v", err)
	}
	if kubectl, err = filepath.Abs(kubectl); err != nil {
		t.Fatal(err)
	}
	manifests, err := filepath.Abs(*manifestsFlag)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(manifests, "kustomization.yaml")); err != nil {
		t.Fatalf("-manifests %s is not a kustomization: %v", *manifestsFlag, err)
	}
	overlay := t.TempDir()
	if err := writeOverlay(overlay, manifests, image); err != nil {
		t.Fatal(err)
	}
	// kubectl finds kubectl-krm on PATH: plugin dispatch.
	path := pluginDir + string(os.PathListSeparator) + os.Getenv("PATH")
	k := &kube{t: t, kubectl: kubectl, env: environ(map[string]string{"PATH": path})}
	rendered, stderr, err := k.run(time.Minute, "kustomize", overlay)
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", overlay, err, stderr)
	}
	if !strings.Contains(rendered, "image: "+image+"\n") {
		t.Fatalf("the overlay does not set the agent's image to %s: does manifests/base still name it %s?\n%s",
			image, agentImageName, rendered)
	}

	// The cluster.
	name := "krm-e2e-" + randomSuffix(t)
	var kubeconfigDir string
	if *keepFlag {
		// It must outlive the test.
		if kubeconfigDir, err = os.MkdirTemp("", name+"-"); err != nil {
			t.Fatal(err)
		}
	} else {
		kubeconfigDir = t.TempDir()
	}
	kubeconfig := filepath.Join(kubeconfigDir, "kubeconfig")
	k.env = environ(map[string]string{"KUBECONFIG": kubeconfig, "PATH": path})
	provider := cluster.NewProvider(
		cluster.ProviderWithLogger(&testLogger{t: t, verbosity: kindlog.Level(*kindVerbosityFlag)}),
		engine.option,
	)
	t.Logf("creating kind cluster %s (kubeconfig %s); if the test is interrupted, delete it with: kind delete cluster --name %s",
		name, kubeconfig, name)
	t.Cleanup(func() {
		if *keepFlag {
			t.Logf("kept kind cluster %s: use it with KUBECONFIG=%s; delete it with: kind delete cluster --name %s",
				name, kubeconfig, name)
			return
		}
		t.Logf("deleting kind cluster %s", name)
		if err := provider.Delete(name, kubeconfig); err != nil {
			t.Errorf("deleting kind cluster %s: %v; delete it with: kind delete cluster --name %s", name, err, name)
		}
	})
	opts := []cluster.CreateOption{
		cluster.CreateWithWaitForReady(3 * time.Minute),
		cluster.CreateWithKubeconfigPath(kubeconfig),
	}
	if *nodeImageFlag != "" {
		opts = append(opts, cluster.CreateWithNodeImage(*nodeImageFlag))
	}
	start := time.Now()
	if err := provider.Create(name, opts...); err != nil {
		t.Fatalf("creating kind cluster %s: %v", name, err)
	}
	t.Logf("created kind cluster %s in %s", name, time.Since(start).Round(time.Second))

	// The agent image, into every node.
	nodeList, err := provider.ListInternalNodes(name)
	if err != nil {
		t.Fatalf("listing the nodes of kind cluster %s: %v", name, err)
	}
	if len(nodeList) == 0 {
		t.Fatalf("kind cluster %s has no nodes", name)
	}
	for _, node := range nodeList {
		if err := loadArchive(node, archive); err != nil {
			t.Fatalf("loading %s into node %s: %v", archive, node, err)
		}
		id, err := nodeutils.ImageID(node, image)
		if err != nil || id == "" {
			t.Fatalf("image %s is not on node %s after loading %s (%v): is -image the archive's tag?",
				image, node, archive, err)
		}
		t.Logf("loaded %s into node %s (%s)", image, node, id)
	}

	// krm, from the repository's manifests with the image replaced.
	if out, stderr, err := k.run(2*time.Minute, "apply", "-k", overlay); err != nil {
		t.Fatalf("kubectl apply -k %s: %v\n%s%s", overlay, err, out, stderr)
	} else {
		t.Logf("kubectl apply -k %s:\n%s", overlay, out)
	}
	// Redis first: the agent is ready only once it reaches its store.
	for _, deployment := range []string{"krm-redis", "krm-agent"} {
		out, stderr, err := k.run(4*time.Minute, "-n", namespace, "rollout", "status", "deployment/"+deployment, "--timeout=3m")
		if err != nil {
			k.dumpNamespace()
			t.Fatalf("deployment %s did not roll out: %v\n%s%s", deployment, err, out, stderr)
		}
	}

	// The plugin, dispatched by kubectl.
	for _, args := range [][]string{{"krm", "version"}, {"krm", "status"}} {
		out, stderr, err := k.run(2*time.Minute, args...)
		if err != nil {
			k.dumpNamespace()
			t.Fatalf("kubectl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, stderr)
		}
		t.Logf("kubectl %s:\n%s", strings.Join(args, " "), out)
	}
	comparePods(t, k)
}

// comparePods checks that `kubectl krm get pods -A` prints kubectl's header
// and the same pods as `kubectl get pods -A`. Pods come and go, so it polls
// for up to 30s until both agree.
func comparePods(t *testing.T, k *kube) {
	t.Helper()
	var last string
	deadline := time.Now().Add(30 * time.Second)
	for {
		want, wantErr, err := k.run(time.Minute, "get", "pods", "-A")
		if err != nil {
			t.Fatalf("kubectl get pods -A: %v\n%s%s", err, want, wantErr)
		}
		got, gotErr, err := k.run(time.Minute, "krm", "get", "pods", "-A")
		if err != nil {
			k.dumpNamespace()
			t.Fatalf("kubectl krm get pods -A: %v\nstdout:\n%s\nstderr:\n%s", err, got, gotErr)
		}
		wantHeader, wantPods := podTable(want)
		gotHeader, gotPods := podTable(got)
		var problems []string
		if gotHeader != wantHeader {
			problems = append(problems, fmt.Sprintf("header:\n  kubectl krm: %q\n  kubectl:     %q", gotHeader, wantHeader))
		}
		if missing := minus(wantPods, gotPods); len(missing) > 0 {
			problems = append(problems, "pods kubectl krm misses: "+strings.Join(missing, " "))
		}
		if extra := minus(gotPods, wantPods); len(extra) > 0 {
			problems = append(problems, "pods only kubectl krm lists: "+strings.Join(extra, " "))
		}
		if len(problems) == 0 {
			if len(wantPods) == 0 {
				t.Fatalf("kubectl get pods -A lists no pods:\n%s%s", want, wantErr)
			}
			t.Logf("kubectl krm get pods -A agrees with kubectl on the header and %d pods:\n%s", len(wantPods), got)
			return
		}
		last = fmt.Sprintf("%s\n\nkubectl krm get pods -A:\n%s%s\nkubectl get pods -A:\n%s%s",
			strings.Join(problems, "\n"), got, gotErr, want, wantErr)
		if time.Now().After(deadline) {
			t.Fatalf("kubectl krm get pods -A still differs from kubectl get pods -A after 30s:\n%s", last)
		}
		time.Sleep(2 * time.Second)
	}
}

// podTable returns the header line of a `get pods -A` table and its pods as
// NAMESPACE/NAME.
func podTable(out string) (header string, pods []string) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 {
		return "", nil
	}
	header = strings.TrimRight(lines[0], " ")
	for _, line := range lines[1:] {
		if f := strings.Fields(line); len(f) >= 2 {
			pods = append(pods, f[0]+"/"+f[1])
		}
	}
	slices.Sort(pods)
	return header, slices.Compact(pods)
}

// minus returns the elements of a that are not in b; both are sorted.
func minus(a, b []string) []string {
	var out []string
	for _, s := range a {
		if _, found := slices.BinarySearch(b, s); !found {
			out = append(out, s)
		}
	}
	return out
}

// engine is a container engine that kind can create nodes with.
type engine struct {
	name   string
	option cluster.ProviderOption
}

// detectEngine finds a running container engine the way kind does: the
// KIND_EXPERIMENTAL_PROVIDER override, else the first of docker, nerdctl
// (or finch) and podman. kind only checks that the command exists; a
// command whose daemon does not answer `info` is passed over here, so a
// stopped Docker Desktop next to a running Podman still works. Without
// one it returns nil and why.
func detectEngine() (*engine, string) {
	candidates := []struct {
		binary, versionPrefix string
		option                func() cluster.ProviderOption
	}{
		{"docker", "Docker version", cluster.ProviderWithDocker},
		{"nerdctl", "nerdctl version", func() cluster.ProviderOption { return cluster.ProviderWithNerdctl("nerdctl") }},
		{"finch", "finch version", func() cluster.ProviderOption { return cluster.ProviderWithNerdctl("finch") }},
		{"podman", "podman version", cluster.ProviderWithPodman},
	}
	switch p := os.Getenv("KIND_EXPERIMENTAL_PROVIDER"); p {
	case "docker", "podman", "nerdctl", "finch", "nerdctl.lima":
		var option cluster.ProviderOption
		switch p {
		case "docker":
			option = cluster.ProviderWithDocker()
		case "podman":
			option = cluster.ProviderWithPodman()
		default:
			option = cluster.ProviderWithNerdctl(p)
		}
		if err := engineInfo(p); err != nil {
			return nil, fmt.Sprintf("KIND_EXPERIMENTAL_PROVIDER=%s, but `%s info` failed: %v", p, p, err)
		}
		return &engine{name: p + " (KIND_EXPERIMENTAL_PROVIDER)", option: option}, ""
	}
	if _, err := cluster.DetectNodeProvider(); err != nil {
		return nil, "kind found no docker, podman or nerdctl command: " + err.Error()
	}
	var why []string
	for _, c := range candidates {
		out, err := exec.Command(c.binary, "-v").Output()
		if err != nil || !strings.HasPrefix(string(out), c.versionPrefix) {
			continue
		}
		if err := engineInfo(c.binary); err != nil {
			why = append(why, fmt.Sprintf("`%s info` failed: %v", c.binary, err))
			continue
		}
		return &engine{name: c.binary, option: c.option()}, ""
	}
	return nil, strings.Join(why, "; ")
}

// engineInfo runs `binary info`, which fails unless the engine's daemon
// (or Podman's machine) answers.
func engineInfo(binary string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "info").CombinedOutput()
	if err == nil {
		return nil
	}
	if msg := lastLine(string(out)); msg != "" {
		return fmt.Errorf("%w: %s", err, msg)
	}
	return err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// resolveImage returns the image tag to deploy: flagImage, which the archive
// must hold, or else the archive's only tag.
func resolveImage(t *testing.T, archive, flagImage string) string {
	t.Helper()
	tags, err := archiveTags(archive)
	if err != nil {
		t.Fatalf("reading the image archive (run make image, or set -image-archive): %v", err)
	}
	if flagImage == "" {
		if len(tags) != 1 {
			t.Fatalf("%s holds the tags %q: pick one with -image", archive, tags)
		}
		return tags[0]
	}
	if !slices.Contains(tags, flagImage) {
		t.Fatalf("-image %s is not in %s, which holds %q", flagImage, archive, tags)
	}
	return flagImage
}

// archiveTags reads the RepoTags of a docker-save archive's manifest.json.
func archiveTags(archive string) ([]string, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s has no manifest.json: is it a docker-loadable archive?", archive)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", archive, err)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var manifest []struct{ RepoTags []string }
		if err := json.NewDecoder(tr).Decode(&manifest); err != nil {
			return nil, fmt.Errorf("%s: manifest.json: %w", archive, err)
		}
		var tags []string
		for _, m := range manifest {
			tags = append(tags, m.RepoTags...)
		}
		if len(tags) == 0 {
			return nil, fmt.Errorf("%s: manifest.json names no tag", archive)
		}
		return tags, nil
	}
}

// loadArchive loads an image archive into a node's containerd, as
// `kind load image-archive` does.
func loadArchive(node nodes.Node, archive string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	return nodeutils.LoadImageArchive(node, f)
}

// pluginDir returns a directory that holds kubectl-krm, for PATH: arg is
// that directory, or the binary, which is linked into a temporary one under
// the name kubectl's plugin dispatch looks for.
func pluginDir(t *testing.T, arg string) string {
	t.Helper()
	path, err := filepath.Abs(arg)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("-plugin: %v (run make build, or set -plugin)", err)
	}
	if fi.IsDir() {
		if _, err := os.Stat(filepath.Join(path, "kubectl-krm")); err != nil {
			t.Fatalf("-plugin %s has no kubectl-krm: %v (run make build)", arg, err)
		}
		return path
	}
	dir := t.TempDir()
	if err := os.Symlink(path, filepath.Join(dir, "kubectl-krm")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeOverlay writes a kustomization into dir that installs manifests with
// the agent's image replaced by image. kustomize takes no absolute path to a
// kustomization, so it names manifests relative to dir.
func writeOverlay(dir, manifests, image string) error {
	rel, err := filepath.Rel(dir, manifests)
	if err != nil {
		return fmt.Errorf("manifests %s from the overlay in %s: %w", manifests, dir, err)
	}
	name, tag, digest := splitImage(image)
	entry := fmt.Sprintf("- name: %s\n  newName: %s\n", agentImageName, name)
	if digest != "" {
		entry += fmt.Sprintf("  digest: %s\n", digest)
	} else {
		entry += fmt.Sprintf("  newTag: %q\n", tag)
	}
	k := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- %s
images:
%s`, filepath.ToSlash(rel), entry)
	return os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644)
}

// splitImage splits name[:tag][@digest]; the tag's colon is the last one
// after the last slash, so a registry's port stays in the name.
func splitImage(image string) (name, tag, digest string) {
	name = image
	if i := strings.Index(name, "@"); i >= 0 {
		name, digest = name[:i], name[i+1:]
	}
	slash := strings.LastIndex(name, "/")
	if i := strings.LastIndex(name, ":"); i > slash {
		name, tag = name[:i], name[i+1:]
	}
	if tag == "" && digest == "" {
		tag = "latest"
	}
	return name, tag, digest
}

func randomSuffix(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// kube runs kubectl against the kind cluster, with kubectl-krm on PATH.
type kube struct {
	t       *testing.T
	kubectl string
	env     []string
}

// run runs kubectl args and returns its stdout and stderr.
func (k *kube) run(timeout time.Duration, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.kubectl, args...)
	cmd.Env = k.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w after %s", ctx.Err(), timeout)
	}
	return out.String(), errOut.String(), err
}

// dumpNamespace logs what helps to see why krm did not come up.
func (k *kube) dumpNamespace() {
	for _, args := range [][]string{
		{"-n", namespace, "get", "pods", "-o", "wide"},
		{"-n", namespace, "describe", "pods"},
		{"-n", namespace, "logs", "deployment/krm-agent", "--all-containers", "--tail=200"},
	} {
		out, stderr, err := k.run(time.Minute, args...)
		msg := fmt.Sprintf("kubectl %s:\n%s%s", strings.Join(args, " "), out, stderr)
		if err != nil {
			msg += fmt.Sprintf("(%v)\n", err)
		}
		k.t.Log(msg)
	}
}

// environ returns the environment with set's variables replaced.
func environ(set map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		key, _, _ := strings.Cut(kv, "=")
		if _, ok := set[key]; !ok {
			env = append(env, kv)
		}
	}
	for key, value := range set {
		env = append(env, key+"="+value)
	}
	return env
}

// testLogger is kind's logger, writing to the test's log.
type testLogger struct {
	t         *testing.T
	verbosity kindlog.Level
}

var _ kindlog.Logger = (*testLogger)(nil)

func (l *testLogger) Warn(message string) { l.t.Log("kind: WARNING: " + message) }
func (l *testLogger) Warnf(format string, args ...any) {
	l.Warn(fmt.Sprintf(format, args...))
}
func (l *testLogger) Error(message string) { l.t.Log("kind: ERROR: " + message) }
func (l *testLogger) Errorf(format string, args ...any) {
	l.Error(fmt.Sprintf(format, args...))
}
func (l *testLogger) V(level kindlog.Level) kindlog.InfoLogger {
	return infoLogger{t: l.t, enabled: level <= l.verbosity}
}

type infoLogger struct {
	t       *testing.T
	enabled bool
}

func (l infoLogger) Info(message string) {
	if l.enabled {
		l.t.Log("kind: " + message)
	}
}
func (l infoLogger) Infof(format string, args ...any) {
	if l.enabled {
		l.t.Log("kind: " + fmt.Sprintf(format, args...))
	}
}
func (l infoLogger) Enabled() bool { return l.enabled }
