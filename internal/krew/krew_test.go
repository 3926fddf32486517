package krew

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// manifest is the part of a krew plugin manifest the tests look at.
type manifest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string     `json:"version"`
		Homepage         string     `json:"homepage"`
		ShortDescription string     `json:"shortDescription"`
		Caveats          string     `json:"caveats"`
		Platforms        []platform `json:"platforms"`
	} `json:"spec"`
}

type platform struct {
	Selector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	URI    string `json:"uri"`
	Sha256 string `json:"sha256"`
	Bin    string `json:"bin"`
	Files  []struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"files"`
}

var allPlatforms = []string{"linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64", "windows/amd64", "windows/arm64"}

// fakeArchives writes an archive for each os/arch with made-up contents and
// returns their paths and the sha256 each must get.
func fakeArchives(t *testing.T, tag string, platforms ...string) ([]string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	want := map[string]string{}
	for _, p := range platforms {
		goos, goarch, _ := strings.Cut(p, "/")
		name := fmt.Sprintf("kubectl-krm_%s_%s_%s.tar.gz", tag, goos, goarch)
		data := []byte("not really an archive for " + p)
		writeFile(t, filepath.Join(dir, name), data)
		sum := sha256.Sum256(data)
		want[p] = hex.EncodeToString(sum[:])
		paths = append(paths, filepath.Join(dir, name))
	}
	return paths, want
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readTemplate(t *testing.T) []byte {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("..", "..", ".krew.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return text
}

func render(t *testing.T, r Release) manifest {
	t.Helper()
	out, err := r.Render(readTemplate(t))
	if err != nil {
		t.Fatalf("rendering .krew.yaml: %v", err)
	}
	var m manifest
	if err := yaml.Unmarshal(out, &m); err != nil {
		t.Fatalf("the manifest is not YAML: %v\n%s", err, out)
	}
	return m
}

// TestRenderRepoTemplate renders the repository's .krew.yaml with an archive
// for each of the six platforms.
func TestRenderRepoTemplate(t *testing.T) {
	const tag = "v1.2.3"
	archives, want := fakeArchives(t, tag, allPlatforms...)
	sums, err := Sums(archives...)
	if err != nil {
		t.Fatal(err)
	}
	m := render(t, Release{Tag: tag, Sums: sums})

	if m.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || m.Kind != "Plugin" || m.Metadata.Name != "krm" {
		t.Errorf("apiVersion, kind, name = %q, %q, %q", m.APIVersion, m.Kind, m.Metadata.Name)
	}
	if m.Spec.Version != tag {
		t.Errorf("version %q, want %q", m.Spec.Version, tag)
	}
	if m.Spec.Homepage != "https://github.com/krm-project/krm" || m.Spec.ShortDescription == "" {
		t.Errorf("homepage %q, shortDescription %q", m.Spec.Homepage, m.Spec.ShortDescription)
	}
	for _, s := range []string{"kubectl apply -k", "manifests?ref=" + tag, "--agent-url"} {
		if !strings.Contains(m.Spec.Caveats, s) {
			t.Errorf("caveats lack %q:\n%s", s, m.Spec.Caveats)
		}
	}
	var got []string
	for _, p := range m.Spec.Platforms {
		goos, goarch := p.Selector.MatchLabels["os"], p.Selector.MatchLabels["arch"]
		key := goos + "/" + goarch
		got = append(got, key)
		if len(p.Selector.MatchLabels) != 2 {
			t.Errorf("%s: selector %v, want os and arch only", key, p.Selector.MatchLabels)
		}
		wantURI := fmt.Sprintf("https://github.com/krm-project/krm/releases/download/%s/kubectl-krm_%s_%s_%s.tar.gz", tag, tag, goos, goarch)
		if p.URI != wantURI {
			t.Errorf("%s: uri %q, want %q", key, p.URI, wantURI)
		}
		if p.Sha256 != want[key] {
			t.Errorf("%s: sha256 %q, want %q", key, p.Sha256, want[key])
		}
		bin, files := "kubectl-krm", []string{"kubectl-krm", "LICENSE", "kubectl_complete-krm"}
		if goos == "windows" {
			bin, files = "kubectl-krm.exe", []string{"kubectl-krm.exe", "LICENSE"}
		}
		if p.Bin != bin {
			t.Errorf("%s: bin %q, want %q", key, p.Bin, bin)
		}
		var from []string
		for _, f := range p.Files {
			from = append(from, f.From)
			if f.To != "." {
				t.Errorf("%s: file %s goes to %q, want .", key, f.From, f.To)
			}
		}
		if d := cmp.Diff(files, from); d != "" {
			t.Errorf("%s: files (-want +got):\n%s", key, d)
		}
	}
	if d := cmp.Diff(allPlatforms, got); d != "" {
		t.Errorf("platforms (-want +got):\n%s", d)
	}
}

func TestRenderMissingArchive(t *testing.T) {
	archives, _ := fakeArchives(t, "v1.2.3", "linux/amd64", "darwin/arm64")
	sums, err := Sums(archives...)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Release{Tag: "v1.2.3", Sums: sums}.Render(readTemplate(t))
	if err == nil || !strings.Contains(err.Error(), "no archive kubectl-krm_v1.2.3_linux_arm64.tar.gz") {
		t.Errorf("error %v, want one naming the missing linux/arm64 archive", err)
	}
}

// TestRenderPartial keeps only the platforms that have an archive.
func TestRenderPartial(t *testing.T) {
	archives, want := fakeArchives(t, "v0.0.0-gabc1234", "linux/amd64", "windows/arm64")
	sums, err := Sums(archives...)
	if err != nil {
		t.Fatal(err)
	}
	m := render(t, Release{Tag: "v0.0.0-gabc1234", Sums: sums, Partial: true})
	if m.Metadata.Name != "krm" || m.Spec.Version != "v0.0.0-gabc1234" || !strings.Contains(m.Spec.Caveats, "--agent-url") {
		t.Errorf("a partial manifest lost its header: %+v", m)
	}
	got := map[string]string{}
	for _, p := range m.Spec.Platforms {
		got[p.Selector.MatchLabels["os"]+"/"+p.Selector.MatchLabels["arch"]] = p.Sha256
		if p.Bin == "" || len(p.Files) == 0 {
			t.Errorf("platform %v lost its bin or files", p.Selector.MatchLabels)
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("platforms and sums (-want +got):\n%s", d)
	}

	if _, err := (Release{Tag: "v1.0.0", Sums: map[string]string{"other.tar.gz": want["linux/amd64"]}, Partial: true}).Render(readTemplate(t)); err == nil {
		t.Error("a partial render with no platform's archive succeeded")
	}
}

// TestRenderBotFunctions checks the template language against what
// krew-release-bot does with the same input.
func TestRenderBotFunctions(t *testing.T) {
	const text = `spec:
  version: {{ .TagName }}
  platforms:
  - {{addURIAndSha "https://example.invalid/{{ .TagName }}/x_{{ .Version }}.tar.gz" .TagName }}
    bin: x
  note: {{ indent 4 "a\nb" }}
`
	sum := strings.Repeat("ab", 32)
	out, err := Release{Tag: "v2.10.0-rc.1", Sums: map[string]string{"x_2.10.0.tar.gz": sum}}.Render([]byte("metadata:\n  name: x\n" + text))
	if err != nil {
		t.Fatal(err)
	}
	want := `metadata:
  name: x
spec:
  version: v2.10.0-rc.1
  platforms:
  - uri: https://example.invalid/v2.10.0-rc.1/x_2.10.0.tar.gz
    sha256: ` + sum + `
    bin: x
  note: a
    b
`
	if d := cmp.Diff(want, string(out)); d != "" {
		t.Errorf("rendered (-want +got):\n%s", d)
	}
}

func TestSumsRejectsTwoArchivesOfOneName(t *testing.T) {
	a, b := filepath.Join(t.TempDir(), "x.tar.gz"), filepath.Join(t.TempDir(), "x.tar.gz")
	writeFile(t, a, []byte("a"))
	writeFile(t, b, []byte("b"))
	if _, err := Sums(a, b); err == nil {
		t.Error("Sums of two archives named x.tar.gz succeeded")
	}
}
