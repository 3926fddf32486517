package image

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// testVersion is stamped into the test's agent and given to the image.
const testVersion = "v0.0.0-image-test"

// buildAgent builds cmd/krm-agent as `make image` does: static, for
// linux/runtime.GOARCH, with version.Version set to testVersion.
func buildAgent(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("the image's binary is built for linux and run by this test, which runs on %s", runtime.GOOS)
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building krm-agent needs the go command on PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "krm-agent")
	cmd := exec.Command(gobin, "build", "-trimpath",
		"-ldflags", "-s -w -X github.com/krm-project/krm/pkg/version.Version="+testVersion,
		"-o", bin, "github.com/krm-project/krm/cmd/krm-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build krm-agent: %v\n%s", err, out)
	}
	return bin
}

// outerFile returns the file called name in the tarball at path.
func outerFile(t *testing.T, path, name string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("%s has no %s", path, name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// entry is what the test checks of a file in the layer.
type entry struct {
	Type     byte
	Mode     int64
	Uid, Gid int
	ModTime  time.Time
}

// layerFiles returns the entries of img's only layer and the contents of
// its regular files.
func layerFiles(t *testing.T, img v1.Image) (map[string]entry, map[string][]byte) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("the image has %d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	entries, contents := map[string]entry{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return entries, contents
		}
		if err != nil {
			t.Fatal(err)
		}
		entries[hdr.Name] = entry{hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid, hdr.ModTime.UTC()}
		if hdr.Typeflag == tar.TypeReg {
			if contents[hdr.Name], err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestImage(t *testing.T) {
	if _, err := os.Stat(DefaultCABundle); err != nil {
		t.Skipf("this host has no CA bundle for the image: %v", err)
	}
	bin := buildAgent(t)
	created := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	opts := Options{Binary: bin, Tag: "krm-project/krm-agent:" + testVersion, Version: testVersion, Created: created}

	t.Run("tarball", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "image.tar")
		written, err := WriteTarball(path, opts)
		if err != nil {
			t.Fatal(err)
		}

		// docker load and kind load image-archive read the tag from
		// manifest.json; it must be the short name, as given.
		var manifest []struct{ RepoTags []string }
		if err := json.Unmarshal(outerFile(t, path, "manifest.json"), &manifest); err != nil {
			t.Fatal(err)
		}
		if len(manifest) != 1 {
			t.Fatalf("manifest.json has %d images, want 1", len(manifest))
		}
		if diff := cmp.Diff([]string{"krm-project/krm-agent:" + testVersion}, manifest[0].RepoTags); diff != "" {
			t.Errorf("RepoTags (-want +got):\n%s", diff)
		}

		img, err := tarball.ImageFromPath(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		wantDigest, err := written.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if got, err := img.Digest(); err != nil || got != wantDigest {
			t.Errorf("the tarball's image has digest %v (%v), want the written image's %v", got, err, wantDigest)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		wantConfig := v1.Config{
			User:         "65532:65532",
			Entrypoint:   []string{"/krm-agent"},
			ExposedPorts: map[string]struct{}{"8080/tcp": {}},
			WorkingDir:   "/",
			Env:          []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
			Labels: map[string]string{
				"org.opencontainers.image.title":       "krm-agent",
				"org.opencontainers.image.description": "krm's agent: caches a cluster's resources and serves them over krm's HTTP API",
				"org.opencontainers.image.version":     testVersion,
				"org.opencontainers.image.licenses":    "Apache-2.0",
			},
		}
		if diff := cmp.Diff(wantConfig, cfg.Config); diff != "" {
			t.Errorf("config (-want +got):\n%s", diff)
		}
		if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH || !cfg.Created.Equal(created) {
			t.Errorf("platform %s/%s created %v, want linux/%s created %v", cfg.OS, cfg.Architecture, cfg.Created, runtime.GOARCH, created)
		}

		entries, contents := layerFiles(t, img)
		dir := func(mode int64, id int) entry { return entry{tar.TypeDir, mode, id, id, created} }
		file := func(mode int64) entry { return entry{tar.TypeReg, mode, 0, 0, created} }
		wantEntries := map[string]entry{
			"etc/":                              dir(0o755, 0),
			"etc/group":                         file(0o644),
			"etc/passwd":                        file(0o644),
			"etc/ssl/":                          dir(0o755, 0),
			"etc/ssl/certs/":                    dir(0o755, 0),
			"etc/ssl/certs/ca-certificates.crt": file(0o644),
			"home/":                             dir(0o755, 0),
			"home/nonroot/":                     dir(0o700, 65532),
			"krm-agent":                         file(0o755),
		}
		if diff := cmp.Diff(wantEntries, entries); diff != "" {
			t.Errorf("layer entries (-want +got):\n%s", diff)
		}
		hostCA, err := os.ReadFile(DefaultCABundle)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(contents["etc/ssl/certs/ca-certificates.crt"], hostCA) {
			t.Errorf("the image's CA bundle is not the host's %s", DefaultCABundle)
		}
		if !strings.Contains(string(contents["etc/passwd"]), "\nnonroot:x:65532:65532:") ||
			!strings.Contains(string(contents["etc/group"]), "\nnonroot:x:65532:") {
			t.Errorf("uid and gid 65532 are not named nonroot:\n%s%s", contents["etc/passwd"], contents["etc/group"])
		}

		// The binary in the image is the one built, and it runs.
		agent := filepath.Join(t.TempDir(), "krm-agent")
		if err := os.WriteFile(agent, contents["krm-agent"], 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(agent, "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("krm-agent --version: %v\n%s", err, out)
		}
		if diff := cmp.Diff("krm-agent "+testVersion+"\n", string(out)); diff != "" {
			t.Errorf("krm-agent --version (-want +got):\n%s", diff)
		}
		out, err = exec.Command(agent, "--help").CombinedOutput()
		if err != nil {
			t.Fatalf("krm-agent --help: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "--listen") {
			t.Errorf("krm-agent --help does not mention --listen:\n%s", out)
		}
	})

	t.Run("reproducible", func(t *testing.T) {
		digest := func(opts Options) v1.Hash {
			t.Helper()
			img, err := Build(opts)
			if err != nil {
				t.Fatal(err)
			}
			d, err := img.Digest()
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		first := digest(opts)
		if again := digest(opts); again != first {
			t.Errorf("the same inputs gave digests %v and %v", first, again)
		}
		later := opts
		later.Created = created.Add(time.Hour)
		if d := digest(later); d == first {
			t.Errorf("another creation time gave the same digest %v", d)
		}
	})

	t.Run("CA bundle errors", func(t *testing.T) {
		notPEM := filepath.Join(t.TempDir(), "not-pem.crt")
		if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		missing := filepath.Join(t.TempDir(), "missing.crt")
		for path, want := range map[string]string{
			missing: missing + ": no such file or directory",
			notPEM:  notPEM + " holds no PEM certificate",
		} {
			o := opts
			o.CABundle = path
			if _, err := Build(o); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("CA bundle %s: Build() = %v, want an error saying %q", path, err, want)
			}
		}
	})
}

// dynamicBinary returns the host's sh if it is a dynamically linked linux
// executable for runtime.GOARCH, else "".
func dynamicBinary() string {
	sh, err := exec.LookPath("sh")
	if err != nil || runtime.GOOS != "linux" {
		return ""
	}
	f, err := elf.Open(sh)
	if err != nil {
		return ""
	}
	defer f.Close()
	if f.Machine != platforms[runtime.GOARCH].machine {
		return ""
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return sh
		}
	}
	return ""
}

func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	script := filepath.Join(dir, "krm-agent.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The test binary is an ELF executable for runtime.GOARCH on linux.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	otherArch := "s390x"
	if runtime.GOARCH == otherArch {
		otherArch = "amd64"
	}
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"missing binary", Options{Binary: missing}, missing + ": no such file or directory"},
		{"not an ELF file", Options{Binary: script}, script + " is not a linux executable"},
		{"unsupported architecture", Options{Binary: script, Arch: "mips"}, `architecture "mips" is not supported`},
		{"another architecture", Options{Binary: self, Arch: otherArch}, "is built for " + runtime.GOARCH + ", not " + otherArch},
		{"dynamically linked", Options{Binary: dynamicBinary()}, "is dynamically linked: build it with CGO_ENABLED=0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.Binary == "" || tc.opts.Binary == self && runtime.GOOS != "linux" {
				t.Skip("no linux ELF file of this kind here")
			}
			_, err := Build(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build() = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

func TestWriteTarballBadTag(t *testing.T) {
	path := filepath.Join(t.TempDir(), "image.tar")
	_, err := WriteTarball(path, Options{Binary: "unused", Tag: "Not A Tag"})
	if err == nil || !strings.Contains(err.Error(), `tag "Not A Tag"`) {
		t.Errorf("WriteTarball() = %v, want an error naming the tag", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed WriteTarball left %s: %v", path, err)
	}
}
