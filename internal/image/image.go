// Package image builds krm-agent's container image without Docker: one
// layer on an empty base holding the statically linked binary, a CA bundle
// and a non-root user, the same image as the Dockerfile at the repository's
// root. WriteTarball writes it in the format that `docker load` and
// `kind load image-archive` read.
//
// The image is reproducible: every time in it (the config's, the history's
// and each file's) is Options.Created, so the same inputs give the same
// digest.
//
// The image keeps the agent's default --listen, 127.0.0.1:8080: its Cmd is
// empty. kubectl-krm reaches the agent through a port-forward, so RBAC on
// pods/portforward decides who reads; serving the pod network takes an
// explicit --listen=:8080 in the container's args. Port 8080 is exposed as
// documentation of where the agent listens.
package image

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Defaults for Options fields left empty.
const (
	DefaultTag      = "krm-project/krm-agent:dev"
	DefaultCABundle = "/etc/ssl/certs/ca-certificates.crt"
	DefaultVersion  = "dev"
)

// What the image runs, and as whom: uid and gid 65532, named nonroot in the
// image's /etc/passwd and /etc/group. Tar entries name the files without
// the leading slash.
const (
	entrypoint   = "/krm-agent"
	user         = "65532:65532"
	port         = "8080/tcp"
	caBundlePath = "/etc/ssl/certs/ca-certificates.crt"
)

// Options say what goes into the image.
type Options struct {
	// Binary is krm-agent built for linux/Arch with CGO_ENABLED=0: the
	// image has no libc.
	Binary string
	// CABundle is the PEM file installed as the image's CA bundle.
	// Default: DefaultCABundle, the host's.
	CABundle string
	// Tag names the image in the tarball; Build ignores it. Default:
	// DefaultTag.
	Tag string
	// Arch is the GOARCH Binary was built for; the image's platform is
	// linux/Arch. Default: runtime.GOARCH.
	Arch string
	// Version is the image's org.opencontainers.image.version label.
	// Default: DefaultVersion.
	Version string
	// Created is the image's creation time and every file's modification
	// time, truncated to the second. Default: the Unix epoch.
	Created time.Time
}

func (o Options) complete() Options {
	if o.CABundle == "" {
		o.CABundle = DefaultCABundle
	}
	if o.Tag == "" {
		o.Tag = DefaultTag
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	if o.Version == "" {
		o.Version = DefaultVersion
	}
	if o.Created.IsZero() {
		o.Created = time.Unix(0, 0)
	}
	o.Created = o.Created.UTC().Truncate(time.Second)
	return o
}

// platforms are the GOARCHes the image can be built for, with the ELF
// machine and byte order their binaries have.
var platforms = map[string]struct {
	machine elf.Machine
	data    elf.Data
}{
	"amd64":   {elf.EM_X86_64, elf.ELFDATA2LSB},
	"arm64":   {elf.EM_AARCH64, elf.ELFDATA2LSB},
	"ppc64le": {elf.EM_PPC64, elf.ELFDATA2LSB},
	"riscv64": {elf.EM_RISCV, elf.ELFDATA2LSB},
	"s390x":   {elf.EM_S390, elf.ELFDATA2MSB},
}

// checkBinary returns an error unless binary, read from path, is a
// statically linked linux executable for arch: the only kind that runs on
// an empty base image.
func checkBinary(path string, binary []byte, arch string) error {
	want, ok := platforms[arch]
	if !ok {
		return fmt.Errorf("architecture %q is not supported: use amd64, arm64, ppc64le, riscv64 or s390x", arch)
	}
	f, err := elf.NewFile(bytes.NewReader(binary))
	if err != nil {
		return fmt.Errorf("%s is not a linux executable: %w", path, err)
	}
	switch {
	case f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX:
		return fmt.Errorf("%s is built for %s, not linux", path, f.OSABI)
	case f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN:
		return fmt.Errorf("%s is not an executable but %s", path, f.Type)
	case f.Machine != want.machine || f.Data != want.data:
		return fmt.Errorf("%s is built for %s, not %s: build it with GOARCH=%[3]s, or build the image for %[2]s", path, goarch(f), arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: build it with CGO_ENABLED=0, the image has no libc", path)
		}
	}
	return nil
}

// goarch names f's architecture as GOARCH does, where platforms has it.
func goarch(f *elf.File) string {
	for arch, p := range platforms {
		if p.machine == f.Machine && p.data == f.Data {
			return arch
		}
	}
	return fmt.Sprintf("%s (%s)", f.Machine, f.Data)
}

// readCABundle reads path and checks that it holds PEM certificates.
func readCABundle(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w (install the ca-certificates package or pass another bundle)", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", path)
	}
	return b, nil
}

// The user the image runs as, with root, for tools that look uids up.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group  = "root:x:0:\nnonroot:x:65532:\n"
)

// layer returns the image's only layer, an uncompressed tar: everything is
// owned by root and read-only to the agent but its home directory.
func layer(binary, caBundle []byte, mtime time.Time) ([]byte, error) {
	entries := []struct {
		name     string
		mode     int64
		uid      int
		owner    string
		contents []byte // nil for a directory
	}{
		{"etc/", 0o755, 0, "root", nil},
		{"etc/group", 0o644, 0, "root", []byte(group)},
		{"etc/passwd", 0o644, 0, "root", []byte(passwd)},
		{"etc/ssl/", 0o755, 0, "root", nil},
		{"etc/ssl/certs/", 0o755, 0, "root", nil},
		{strings.TrimPrefix(caBundlePath, "/"), 0o644, 0, "root", caBundle},
		{"home/", 0o755, 0, "root", nil},
		{"home/nonroot/", 0o700, 65532, "nonroot", nil},
		{strings.TrimPrefix(entrypoint, "/"), 0o755, 0, "root", binary},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     e.name,
			Mode:     e.mode,
			Uid:      e.uid,
			Gid:      e.uid,
			Uname:    e.owner,
			Gname:    e.owner,
			Size:     int64(len(e.contents)),
			ModTime:  mtime,
		}
		if e.contents == nil {
			hdr.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.contents); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Build returns the image for opts, once it has checked that opts.Binary
// runs on it.
func Build(opts Options) (v1.Image, error) {
	o := opts.complete()
	binary, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("krm-agent binary: %w", err)
	}
	if err := checkBinary(o.Binary, binary, o.Arch); err != nil {
		return nil, err
	}
	caBundle, err := readCABundle(o.CABundle)
	if err != nil {
		return nil, err
	}
	tarBytes, err := layer(binary, caBundle, o.Created)
	if err != nil {
		return nil, fmt.Errorf("writing the layer: %w", err)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes)), nil
	})
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: o.Created}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: o.Arch,
		OS:           "linux",
		Created:      created,
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			User:         user,
			Entrypoint:   []string{entrypoint},
			ExposedPorts: map[string]struct{}{port: {}},
			WorkingDir:   "/",
			Env:          []string{"SSL_CERT_FILE=" + caBundlePath},
			Labels: map[string]string{
				"org.opencontainers.image.title":       "krm-agent",
				"org.opencontainers.image.description": "krm's agent: caches a cluster's resources and serves them over krm's HTTP API",
				"org.opencontainers.image.version":     o.Version,
				"org.opencontainers.image.licenses":    "Apache-2.0",
			},
		},
	})
	if err != nil {
		return nil, err
	}
	return mutate.Append(img, mutate.Addendum{
		Layer:   l,
		History: v1.History{Created: created, CreatedBy: "krm-image", Comment: "krm-agent, CA bundle, nonroot user"},
	})
}

// WriteTarball builds the image and writes it to path as a tarball tagged
// opts.Tag, and returns the image.
func WriteTarball(path string, opts Options) (v1.Image, error) {
	o := opts.complete()
	tag, err := name.NewTag(o.Tag)
	if err != nil {
		return nil, fmt.Errorf("tag %q: %w", o.Tag, err)
	}
	img, err := Build(o)
	if err != nil {
		return nil, err
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		_ = os.Remove(path) // what the failed write left
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return img, nil
}
