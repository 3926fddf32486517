// Package dist builds kubectl-krm's release: for each platform a tar.gz
// holding the plugin, LICENSE and (except on Windows) the kubectl completion
// helper at its root; checksums.txt over the archives, in sha256sum's format;
// and krm.yaml, the krew manifest rendered from the repository's .krew.yaml
// with the archives' sums. `make dist` runs it through internal/cmd/krm-dist.
package dist

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/version"

	"github.com/krm-project/krm/internal/krew"
)

// Platform is a GOOS/GOARCH pair.
type Platform struct {
	OS, Arch string
}

func (p Platform) String() string { return p.OS + "/" + p.Arch }

// exe is the plugin's file name on p.
func (p Platform) exe() string {
	if p.OS == "windows" {
		return "kubectl-krm.exe"
	}
	return "kubectl-krm"
}

// All is every platform a release is built for, in the order of .krew.yaml.
var All = []Platform{
	{"linux", "amd64"}, {"linux", "arm64"},
	{"darwin", "amd64"}, {"darwin", "arm64"},
	{"windows", "amd64"}, {"windows", "arm64"},
}

// Host is the platform this program runs on.
func Host() Platform { return Platform{runtime.GOOS, runtime.GOARCH} }

// ParsePlatforms reads a comma-separated list such as
// "linux/amd64,darwin/arm64"; "host" stands for Host.
func ParsePlatforms(s string) ([]Platform, error) {
	var out []Platform
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		p := Host()
		if f != "host" {
			goos, goarch, _ := strings.Cut(f, "/")
			p = Platform{goos, goarch}
		}
		if !slices.Contains(All, p) {
			return nil, fmt.Errorf("unknown platform %q: want a comma-separated list of %s, or host (%s)", f, joinPlatforms(All), Host())
		}
		if slices.Contains(out, p) {
			return nil, fmt.Errorf("platform %s given twice", p)
		}
		out = append(out, p)
	}
	return out, nil
}

func joinPlatforms(ps []Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// CheckVersion accepts what krew accepts as a plugin version: a semantic
// version with a leading v, such as v0.1.0 or v0.0.0-g1a2b3c4.
func CheckVersion(v string) error {
	if !strings.HasPrefix(v, "v") {
		return fmt.Errorf("version %q: krew wants a semantic version with a leading v, e.g. v0.1.0", v)
	}
	if _, err := version.ParseSemantic(v); err != nil {
		return fmt.Errorf("version %q: krew wants a semantic version with a leading v, e.g. v0.1.0: %w", v, err)
	}
	return nil
}

// ArchiveName is the file name of the release archive for p, the name that
// .krew.yaml's URLs end in.
func ArchiveName(version string, p Platform) string {
	return fmt.Sprintf("kubectl-krm_%s_%s_%s.tar.gz", version, p.OS, p.Arch)
}

const (
	// ManifestFile is the rendered krew manifest; krew wants it named after
	// the plugin.
	ManifestFile = "krm.yaml"
	// ChecksumsFile lists the archives' sha256 sums.
	ChecksumsFile = "checksums.txt"

	templateFile = ".krew.yaml"
	pluginPkg    = "./cmd/kubectl-krm"
	completion   = "kubectl_complete-krm"
	versionVar   = "github.com/krm-project/krm/pkg/version.Version"
)

// fallbackModTime stamps archive entries when the repository's HEAD has no
// commit time to give (not a git checkout).
var fallbackModTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Config says what to build.
type Config struct {
	// Repo is the krm repository's root: the build's source, and where
	// LICENSE, the completion helper and .krew.yaml are read. Default: ".".
	Repo string
	// Version is stamped into the plugin and is the release tag and krew
	// version; see CheckVersion.
	Version string
	// Out receives the archives, checksums.txt and krm.yaml. Default: dist.
	Out string
	// Platforms to build. Default: All. With fewer, krm.yaml lists only
	// these.
	Platforms []Platform
	// Jobs is how many builds run at a time. Default: 2.
	Jobs int
	// ModTime stamps every archive entry, so that an archive depends on its
	// contents only. Default: the commit time of Repo's HEAD.
	ModTime time.Time
	// Log receives progress lines. Default: io.Discard.
	Log io.Writer
}

func (c *Config) complete() error {
	if c.Repo == "" {
		c.Repo = "."
	}
	if c.Out == "" {
		c.Out = "dist"
	}
	if len(c.Platforms) == 0 {
		c.Platforms = All
	}
	if c.Jobs <= 0 {
		c.Jobs = 2
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	if _, err := os.Stat(filepath.Join(c.Repo, templateFile)); err != nil {
		return fmt.Errorf("%s has no %s: run from the root of the krm repository (%w)", c.Repo, templateFile, err)
	}
	for i, p := range c.Platforms {
		if !slices.Contains(All, p) {
			return fmt.Errorf("unknown platform %s: want one of %s", p, joinPlatforms(All))
		}
		if slices.Contains(c.Platforms[:i], p) {
			return fmt.Errorf("platform %s given twice", p)
		}
	}
	return CheckVersion(c.Version)
}

// partial says whether c leaves out some of All.
func (c *Config) partial() bool {
	for _, p := range All {
		if !slices.Contains(c.Platforms, p) {
			return true
		}
	}
	return false
}

// Release is what Build wrote.
type Release struct {
	// Archives are the archives' paths, in the order of Config.Platforms.
	Archives []string
	// Checksums and Manifest are the paths of checksums.txt and krm.yaml.
	Checksums string
	Manifest  string
}

// Build cross-compiles kubectl-krm for each platform, Jobs at a time, packs
// the archives and writes checksums.txt and krm.yaml into Out.
func Build(ctx context.Context, cfg Config) (*Release, error) {
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	if cfg.ModTime.IsZero() {
		cfg.ModTime = headTime(ctx, cfg.Repo)
	}
	license, err := os.ReadFile(filepath.Join(cfg.Repo, "LICENSE"))
	if err != nil {
		return nil, err
	}
	script, err := os.ReadFile(filepath.Join(cfg.Repo, "cmd", "kubectl-krm", completion))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "krm-dist-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rel := &Release{Archives: make([]string, len(cfg.Platforms))}
	jobs := make(chan struct{}, cfg.Jobs)
	var wg sync.WaitGroup
	for i, p := range cfg.Platforms {
		wg.Go(func() {
			select {
			case jobs <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-jobs }()
			bin := filepath.Join(tmp, p.OS+"_"+p.Arch, p.exe())
			fmt.Fprintf(cfg.Log, "building kubectl-krm %s for %s\n", cfg.Version, p)
			if err := build(ctx, cfg, p, bin); err != nil {
				cancel(err)
				return
			}
			archive := filepath.Join(cfg.Out, ArchiveName(cfg.Version, p))
			if err := writeArchive(archive, entries(p, bin, license, script), cfg.ModTime); err != nil {
				cancel(err)
				return
			}
			rel.Archives[i] = archive
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}

	sums := map[string]string{}
	var list strings.Builder
	for _, a := range rel.Archives {
		sum, err := krew.FileSHA256(a)
		if err != nil {
			return nil, err
		}
		sums[filepath.Base(a)] = sum
		fmt.Fprintf(&list, "%s  %s\n", sum, filepath.Base(a))
	}
	rel.Checksums = filepath.Join(cfg.Out, ChecksumsFile)
	if err := os.WriteFile(rel.Checksums, []byte(list.String()), 0o644); err != nil {
		return nil, err
	}
	if rel.Manifest, err = writeManifest(cfg, sums); err != nil {
		return nil, err
	}
	for _, f := range append(append([]string{}, rel.Archives...), rel.Checksums, rel.Manifest) {
		fmt.Fprintf(cfg.Log, "wrote %s\n", f)
	}
	return rel, nil
}

// ManifestOnly writes Out/krm.yaml for cfg without building anything, each
// archive's sha256 standing in as the sha256 of its name. It checks that
// .krew.yaml renders into a manifest krew accepts, nothing more.
func ManifestOnly(cfg Config) (string, error) {
	if err := cfg.complete(); err != nil {
		return "", err
	}
	sums := map[string]string{}
	for _, p := range cfg.Platforms {
		name := ArchiveName(cfg.Version, p)
		sum := sha256.Sum256([]byte(name))
		sums[name] = hex.EncodeToString(sum[:])
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return "", err
	}
	return writeManifest(cfg, sums)
}

func writeManifest(cfg Config, sums map[string]string) (string, error) {
	text, err := os.ReadFile(filepath.Join(cfg.Repo, templateFile))
	if err != nil {
		return "", err
	}
	manifest, err := krew.Release{Tag: cfg.Version, Sums: sums, Partial: cfg.partial()}.Render(text)
	if err != nil {
		return "", fmt.Errorf("rendering %s: %w", templateFile, err)
	}
	path := filepath.Join(cfg.Out, ManifestFile)
	return path, os.WriteFile(path, manifest, 0o644)
}

// build cross-compiles the plugin for p into bin.
func build(ctx context.Context, cfg Config, p Platform, bin string) error {
	args := []string{"build", "-trimpath", "-ldflags", "-s -w -X " + versionVar + "=" + cfg.Version, "-o", bin, pluginPkg}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = cfg.Repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("GOOS=%s GOARCH=%s go %s: %w\n%s", p.OS, p.Arch, strings.Join(args, " "), err, out)
	}
	return nil
}

// entry is one file of an archive.
type entry struct {
	name string
	mode int64
	path string // read from here, or
	data []byte // these bytes
}

func entries(p Platform, bin string, license, script []byte) []entry {
	es := []entry{
		{name: p.exe(), mode: 0o755, path: bin},
		{name: "LICENSE", mode: 0o644, data: license},
	}
	if p.OS != "windows" {
		es = append(es, entry{name: completion, mode: 0o755, data: script})
	}
	return es
}

// writeArchive writes a tar.gz of es at path, every entry owned by root and
// stamped with mtime, so that the same files give the same bytes. It writes
// a temporary file and renames it into place.
func writeArchive(path string, es []entry, mtime time.Time) (err error) {
	tmp := path + ".partial"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	for _, e := range es {
		if err := addEntry(tw, e, mtime); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func addEntry(tw *tar.Writer, e entry, mtime time.Time) error {
	var r io.Reader = bytes.NewReader(e.data)
	size := int64(len(e.data))
	if e.path != "" {
		f, err := os.Open(e.path)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		r, size = f, st.Size()
	}
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     e.name,
		Mode:     e.mode,
		Size:     size,
		ModTime:  mtime.UTC().Truncate(time.Second),
		Format:   tar.FormatUSTAR,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := io.Copy(tw, r)
	return err
}

// headTime is the commit time of repo's HEAD, or fallbackModTime.
func headTime(ctx context.Context, repo string) time.Time {
	cmd := exec.CommandContext(ctx, "git", "log", "-1", "--format=%ct")
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		return fallbackModTime
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return fallbackModTime
	}
	return time.Unix(sec, 0).UTC()
}
