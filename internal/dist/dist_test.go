package dist

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/krm-project/krm/internal/krew"
)

// repo is the repository's root, seen from this package's directory.
const repo = "../.."

func TestParsePlatforms(t *testing.T) {
	got, err := ParsePlatforms("linux/amd64, darwin/arm64,windows/arm64")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]Platform{{"linux", "amd64"}, {"darwin", "arm64"}, {"windows", "arm64"}}, got); d != "" {
		t.Errorf("platforms (-want +got):\n%s", d)
	}
	if slices.Contains(All, Host()) {
		if got, err := ParsePlatforms("host"); err != nil || len(got) != 1 || got[0] != Host() {
			t.Errorf("host = %v, %v; want %v", got, err, Host())
		}
	}
	for _, bad := range []string{"linux/386", "linux", "", "linux/amd64,", "plan9/amd64"} {
		_, err := ParsePlatforms(bad)
		if err == nil || !strings.Contains(err.Error(), "linux/amd64, linux/arm64, darwin/amd64, darwin/arm64, windows/amd64, windows/arm64") {
			t.Errorf("ParsePlatforms(%q) = %v, want an error listing the valid platforms", bad, err)
		}
	}
	if _, err := ParsePlatforms("linux/amd64,linux/amd64"); err == nil {
		t.Error("a platform given twice was accepted")
	}
}

func TestCheckVersion(t *testing.T) {
	for _, v := range []string{"v0.1.0", "v1.2.3-rc.1", "v0.0.0-g4f025a1", "v0.0.0-g0123456", "v0.1.0-3-g4f025a1"} {
		if err := CheckVersion(v); err != nil {
			t.Errorf("CheckVersion(%q): %v", v, err)
		}
	}
	// A bare short hash can be all digits with a leading zero, which
	// semver forbids: hence the Makefile's g before the hash.
	for _, v := range []string{"", "dev", "0.1.0", "v0.1", "4f025a1", "v0.0.0-0123456"} {
		if err := CheckVersion(v); err == nil {
			t.Errorf("CheckVersion(%q) accepted it", v)
		}
	}
}

// member is one file of an archive.
type member struct {
	Name     string
	Mode     int64
	Uid, Gid int
	ModTime  time.Time
	data     []byte
}

func readArchive(t *testing.T, path string) []member {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	tr := tar.NewReader(zr)
	var ms []member
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return ms
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			t.Errorf("%s: %s has type %q, want a regular file", path, hdr.Name, hdr.Typeflag)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, member{hdr.Name, hdr.Mode, hdr.Uid, hdr.Gid, hdr.ModTime, data})
	}
}

// TestBuildHost builds the release for this machine's platform only and
// checks the archive, checksums.txt and krm.yaml. It runs the go command, and
// also under -short: it needs no cluster.
func TestBuildHost(t *testing.T) {
	if !slices.Contains(All, Host()) {
		t.Skipf("no release is built for %s", Host())
	}
	const version = "v0.1.0-test.1"
	out := t.TempDir()
	mtime := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	rel, err := Build(context.Background(), Config{Repo: repo, Version: version, Out: out, Platforms: []Platform{Host()}, ModTime: mtime})
	if err != nil {
		t.Fatal(err)
	}
	name := ArchiveName(version, Host())
	if d := cmp.Diff([]string{filepath.Join(out, name)}, rel.Archives); d != "" {
		t.Fatalf("archives (-want +got):\n%s", d)
	}

	license, err := os.ReadFile(filepath.Join(repo, "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile(filepath.Join(repo, "cmd", "kubectl-krm", "kubectl_complete-krm"))
	if err != nil {
		t.Fatal(err)
	}
	ms := readArchive(t, rel.Archives[0])
	exe := Host().exe()
	want := []member{
		{Name: exe, Mode: 0o755, ModTime: mtime},
		{Name: "LICENSE", Mode: 0o644, ModTime: mtime},
	}
	if Host().OS != "windows" {
		want = append(want, member{Name: "kubectl_complete-krm", Mode: 0o755, ModTime: mtime})
	}
	if d := cmp.Diff(want, ms, cmp.Comparer(func(a, b member) bool {
		return a.Name == b.Name && a.Mode == b.Mode && a.Uid == b.Uid && a.Gid == b.Gid && a.ModTime.Equal(b.ModTime)
	})); d != "" {
		t.Fatalf("archive members (-want +got):\n%s", d)
	}
	if !bytes.Equal(ms[1].data, license) {
		t.Error("the archive's LICENSE differs from the repository's")
	}
	if len(ms) > 2 && !bytes.Equal(ms[2].data, script) {
		t.Error("the archive's kubectl_complete-krm differs from the repository's")
	}

	// The plugin runs and reports the release version.
	bin := filepath.Join(t.TempDir(), exe)
	if err := os.WriteFile(bin, ms[0].data, 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := exec.Command(bin, "version", "--client").CombinedOutput()
	if err != nil || !strings.Contains(string(got), "Plugin Version: "+version+"\n") {
		t.Errorf("%s version --client: %v\n%s", exe, err, got)
	}

	// checksums.txt is sha256sum's format: the hex sum, two spaces, the name.
	sum, err := krew.FileSHA256(rel.Archives[0])
	if err != nil {
		t.Fatal(err)
	}
	checksums, err := os.ReadFile(rel.Checksums)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^([0-9a-f]{64}  \S+\n)+$`).Match(checksums) {
		t.Errorf("checksums.txt is not in sha256sum's format:\n%s", checksums)
	}
	if want := sum + "  " + name + "\n"; string(checksums) != want {
		t.Errorf("checksums.txt = %q, want %q", checksums, want)
	}

	// krm.yaml lists the one platform built, with the archive's sum.
	data, err := os.ReadFile(rel.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Spec struct {
			Version   string
			Platforms []struct {
				Selector struct{ MatchLabels map[string]string }
				URI      string
				Sha256   string
				Bin      string
			}
		}
	}
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("krm.yaml: %v\n%s", err, data)
	}
	if m.Spec.Version != version || len(m.Spec.Platforms) != 1 {
		t.Fatalf("krm.yaml has version %q and %d platforms, want %s and 1:\n%s", m.Spec.Version, len(m.Spec.Platforms), version, data)
	}
	p := m.Spec.Platforms[0]
	if p.Selector.MatchLabels["os"] != Host().OS || p.Selector.MatchLabels["arch"] != Host().Arch || p.Sha256 != sum || p.Bin != exe || !strings.HasSuffix(p.URI, "/"+version+"/"+name) {
		t.Errorf("krm.yaml's platform is %+v, want %s with sha256 %s, bin %s and uri ending /%s/%s", p, Host(), sum, exe, version, name)
	}
}

// TestArchiveIsReproducible packs the same files twice at different times.
func TestArchiveIsReproducible(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "kubectl-krm")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	es := entries(Platform{"linux", "arm64"}, bin, []byte("license"), []byte("script"))
	mtime := time.Unix(1_700_000_000, 0)
	a, b := filepath.Join(dir, "a.tar.gz"), filepath.Join(dir, "b.tar.gz")
	if err := writeArchive(a, es, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(bin, time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := writeArchive(b, es, mtime); err != nil {
		t.Fatal(err)
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !bytes.Equal(da, db) {
		t.Error("the same files packed twice gave different archives")
	}
	if _, err := os.Stat(a + ".partial"); !os.IsNotExist(err) {
		t.Errorf("the temporary file is left behind: %v", err)
	}
}

// TestManifestOnly renders .krew.yaml for every platform: each of its URLs
// must end in the name ArchiveName gives, or the render fails.
func TestManifestOnly(t *testing.T) {
	path, err := ManifestOnly(Config{Repo: repo, Version: "v0.0.0-g4f025a1", Out: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "krm.yaml" || strings.Count(string(data), "sha256: ") != len(All) {
		t.Errorf("%s has %d sums, want %d:\n%s", path, strings.Count(string(data), "sha256: "), len(All), data)
	}
	if _, err := ManifestOnly(Config{Repo: repo, Version: "dev", Out: t.TempDir()}); err == nil {
		t.Error("version dev was accepted")
	}
}
