package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Versions of everything the local cluster runs. The binary cache is keyed by
// these, so changing one rebuilds only that component.
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.6.16"
	KwokVersion       = "v0.8.0"
	InfluxDBVersion   = "v1.8.10"
)

// Binaries holds the absolute paths of the programs the cluster runs.
type Binaries struct {
	KubeAPIServer         string
	KubeControllerManager string
	KubeScheduler         string
	Kubectl               string
	Etcd                  string
	Kwok                  string
	Influxd               string
	RedisServer           string

	// KwokStages is the concatenated stage configuration kwok plays.
	KwokStages string
	// KwokPortForwardCRD is the PortForward CRD manifest from kwok's module.
	KwokPortForwardCRD string
}

// component is one cached build: a directory named <name>-<version> under
// $KRM_CACHE/bin that holds its binaries once complete.
type component struct {
	name    string
	version string
	files   []string
	build   func(ctx context.Context, b *builder, out string) error
}

func (c component) dir(cache string) string {
	return filepath.Join(cache, "bin", c.name+"-"+c.version)
}

var components = []component{
	{
		name:    "kubernetes",
		version: KubernetesVersion,
		files:   []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"},
		build:   buildKubernetes,
	},
	{name: "etcd", version: EtcdVersion, files: []string{"etcd"}, build: buildEtcd},
	{name: "kwok", version: KwokVersion, files: []string{"kwok", "stages.yaml", "portforwards-crd.yaml"}, build: buildKwok},
	{name: "influxdb", version: InfluxDBVersion, files: []string{"influxd"}, build: buildInfluxd},
}

type builder struct {
	toolsDir string
	log      io.Writer
}

// EnsureBinaries builds every missing component into the cache and returns
// their paths. A component is built into a temporary directory and renamed
// into place, so an interrupted build is never mistaken for a finished one.
func EnsureBinaries(ctx context.Context, cache string, log io.Writer) (*Binaries, error) {
	b := &builder{log: log}
	// Test packages run in parallel and each may find the cache cold: one
	// builds while the others wait, instead of all building into the same
	// directories at once.
	unlock, err := lockCache(ctx, cache, log)
	if err != nil {
		return nil, err
	}
	defer unlock()
	for _, c := range components {
		if err := b.ensure(ctx, c, cache); err != nil {
			return nil, err
		}
	}
	redis, err := ensureRedis(ctx, log)
	if err != nil {
		return nil, err
	}
	kube := components[0].dir(cache)
	kwok := components[2].dir(cache)
	return &Binaries{
		KubeAPIServer:         filepath.Join(kube, "kube-apiserver"),
		KubeControllerManager: filepath.Join(kube, "kube-controller-manager"),
		KubeScheduler:         filepath.Join(kube, "kube-scheduler"),
		Kubectl:               filepath.Join(kube, "kubectl"),
		Etcd:                  filepath.Join(components[1].dir(cache), "etcd"),
		Kwok:                  filepath.Join(kwok, "kwok"),
		KwokStages:            filepath.Join(kwok, "stages.yaml"),
		KwokPortForwardCRD:    filepath.Join(kwok, "portforwards-crd.yaml"),
		Influxd:               filepath.Join(components[3].dir(cache), "influxd"),
		RedisServer:           redis,
	}, nil
}

// ensure builds c into the cache unless it is complete there. It builds
// into <dir>.partial and renames that into place, so an interrupted build is
// never mistaken for a finished one.
func (b *builder) ensure(ctx context.Context, c component, cache string) error {
	dir := c.dir(cache)
	if complete(dir, c.files) {
		return nil
	}
	if b.toolsDir == "" {
		d, err := toolsDir()
		if err != nil {
			return err
		}
		b.toolsDir = d
	}
	fmt.Fprintf(b.log, "building %s %s into %s (cold builds take minutes; the result is cached)\n", c.name, c.version, dir)
	tmp := dir + ".partial"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	if err := c.build(ctx, b, tmp); err != nil {
		return fmt.Errorf("building %s %s: %w", c.name, c.version, err)
	}
	if !complete(tmp, c.files) {
		return fmt.Errorf("building %s %s: expected files %v in %s", c.name, c.version, c.files, tmp)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// lockCache takes an exclusive lock on the cache's build lock file,
// waiting while another process builds.
func lockCache(ctx context.Context, cache string, log io.Writer) (func(), error) {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(cache, ".build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	said := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
		}
		if !said {
			fmt.Fprintf(log, "another process is building into %s; waiting for it\n", cache)
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// KubectlPath is where the kubectl matching the cluster lives in the cache.
func KubectlPath(cache string) string {
	return filepath.Join(components[0].dir(cache), "kubectl")
}

func complete(dir string, files []string) bool {
	for _, f := range files {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			return false
		}
	}
	return true
}

// toolsDir finds test/tools, which holds the modules that pin the control
// plane. It looks upwards from the working directory first, then next to this
// source file, so both `go run` from the repo and `go test` in any package work.
func toolsDir() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			candidate := filepath.Join(dir, "test", "tools")
			if _, err := os.Stat(filepath.Join(candidate, "kube", "go.mod")); err == nil {
				return candidate, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("cannot find test/tools/kube/go.mod: run the harness from inside the krm repository")
}

func (b *builder) goCmd(ctx context.Context, dir string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = b.log
	cmd.Stderr = b.log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s (in %s): %w", strings.Join(args, " "), dir, err)
	}
	return nil
}

func buildKubernetes(ctx context.Context, b *builder, out string) error {
	// Unstamped binaries report v0.0.0-master, which kubectl version rejects.
	minor := strings.Split(strings.TrimPrefix(KubernetesVersion, "v"), ".")[1]
	var ld []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		ld = append(ld,
			"-X", pkg+".gitVersion="+KubernetesVersion,
			"-X", pkg+".gitMajor=1",
			"-X", pkg+".gitMinor="+minor,
			"-X", pkg+".gitTreeState=clean",
			"-X", pkg+".buildDate=2026-01-01T00:00:00Z")
	}
	args := []string{"build", "-ldflags", "-s -w " + strings.Join(ld, " "), "-o", out + string(filepath.Separator)}
	for _, cmd := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"} {
		args = append(args, "k8s.io/kubernetes/cmd/"+cmd)
	}
	return b.goCmd(ctx, filepath.Join(b.toolsDir, "kube"), nil, args...)
}

func buildEtcd(ctx context.Context, b *builder, out string) error {
	return b.goCmd(ctx, filepath.Join(b.toolsDir, "etcd"), nil, "build", "-ldflags", "-s -w", "-o", filepath.Join(out, "etcd"), ".")
}

func buildKwok(ctx context.Context, b *builder, out string) error {
	mod := "sigs.k8s.io/kwok@" + KwokVersion
	if err := b.goCmd(ctx, os.TempDir(), []string{"GOBIN=" + out}, "install", "-ldflags", "-s -w", "sigs.k8s.io/kwok/cmd/kwok@"+KwokVersion); err != nil {
		return err
	}
	// The kwok binary has no built-in stages; its module ships them as YAML.
	src, err := moduleDir(ctx, mod)
	if err != nil {
		return err
	}
	var stages []string
	for _, f := range []string{
		"kustomize/stage/node/fast/node-initialize.yaml",
		"kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
		"kustomize/stage/pod/fast/pod-ready.yaml",
		"kustomize/stage/pod/fast/pod-complete.yaml",
		"kustomize/stage/pod/fast/pod-delete.yaml",
	} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return err
		}
		stages = append(stages, strings.TrimSpace(string(data)))
	}
	if err := os.WriteFile(filepath.Join(out, "stages.yaml"), []byte(strings.Join(stages, "\n---\n")+"\n"), 0o644); err != nil {
		return err
	}
	crd, err := os.ReadFile(filepath.Join(src, "kustomize/crd/bases/kwok.x-k8s.io_portforwards.yaml"))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "portforwards-crd.yaml"), crd, 0o644)
}

func buildInfluxd(ctx context.Context, b *builder, out string) error {
	// InfluxDB 1.8 predates module-aware tidiness; -mod=mod lets go install
	// resolve its go.mod as written.
	return b.goCmd(ctx, os.TempDir(), []string{"GOBIN=" + out, "GOFLAGS=-mod=mod"},
		"install", "-ldflags", "-s -w", "github.com/influxdata/influxdb/cmd/influxd@"+InfluxDBVersion)
}

func moduleDir(ctx context.Context, mod string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", mod)
	cmd.Dir = os.TempDir()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %w", mod, err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("go mod download %s: %w", mod, err)
	}
	if info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %s", mod, info.Error)
	}
	return info.Dir, nil
}

// ensureRedis returns redis-server from PATH, installing Debian's package when
// it is missing. Debian blocks services from starting on install, which suits
// us: the harness starts its own server.
func ensureRedis(ctx context.Context, log io.Writer) (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", errors.New("redis-server is not installed and installing it needs root: run `apt-get install redis-server` and retry")
	}
	fmt.Fprintln(log, "installing redis-server from Debian")
	for _, args := range [][]string{{"update"}, {"install", "-y", "--no-install-recommends", "redis-server"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout = log
		cmd.Stderr = log
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("apt-get %s: %w", strings.Join(args, " "), err)
		}
	}
	return exec.LookPath("redis-server")
}
