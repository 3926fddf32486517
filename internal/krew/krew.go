// Package krew renders krm's krew plugin manifest from the repository's
// .krew.yaml, a template in krew-release-bot's format, so that a release can
// be checked and installed locally exactly as the bot will publish it.
//
// The template is Go text/template with the bot's data and functions:
//
//   - .TagName is the release tag, e.g. v0.1.0.
//   - {{addURIAndSha "URL" .TagName }} executes URL as a template of its own
//     (with .TagName and .Version, the tag's dotted numbers) and becomes two
//     lines, "uri: URL" and "    sha256: HEX": the function is written at
//     a platform's indentation, four spaces.
//   - {{indent N TEXT}} indents TEXT's lines by N spaces.
//
// The bot downloads each URL to hash it. Here the archives are local: the
// sha256 comes from the archive whose file name ends the URL, and the URL
// stays the release's, which `kubectl krew install --archive` never fetches.
package krew

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"sigs.k8s.io/yaml"
)

// Release is what a manifest is rendered for.
type Release struct {
	// Tag is the release tag, the plugin's version: krew wants a semantic
	// version with a leading v.
	Tag string
	// Sums maps an archive's file name to its sha256, in hex.
	Sums map[string]string
	// Partial leaves out the platforms whose archive has no sum, for a
	// release built for some platforms only. Without it a missing archive
	// fails the render.
	Partial bool
}

// urlData is what an addURIAndSha URL is executed with, as by the bot.
type urlData struct {
	TagName string
	Version string
}

// missingSum stands for the sha256 of an archive that a partial release
// lacks; the platforms that carry it are removed after rendering.
const missingSum = `""`

// Render executes the template text for r and returns the manifest.
func (r Release) Render(text []byte) ([]byte, error) {
	var used, missing int
	funcs := template.FuncMap{
		"indent": indent,
		"addURIAndSha": func(rawURL, tag string) (string, error) {
			u, err := template.New("url").Parse(rawURL)
			if err != nil {
				return "", err
			}
			var buf bytes.Buffer
			if err := u.Execute(&buf, urlData{TagName: tag, Version: versionOf(tag)}); err != nil {
				return "", err
			}
			uri := buf.String()
			name := path.Base(uri)
			sum, ok := r.Sums[name]
			switch {
			case ok:
				used++
			case r.Partial:
				sum = missingSum
				missing++
			default:
				return "", fmt.Errorf("no archive %s for %s (have %s)", name, uri, strings.Join(r.names(), ", "))
			}
			return fmt.Sprintf("uri: %s\n    sha256: %s", uri, sum), nil
		},
	}
	t, err := template.New(".krew.yaml").Funcs(funcs).Parse(string(text))
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := t.Execute(&out, struct{ TagName string }{r.Tag}); err != nil {
		return nil, err
	}
	if used == 0 {
		return nil, fmt.Errorf("no platform has an archive among %s", strings.Join(r.names(), ", "))
	}
	manifest := out.Bytes()
	if missing > 0 {
		if manifest, err = dropMissing(manifest); err != nil {
			return nil, err
		}
	}
	var m struct {
		Metadata struct{ Name string }
	}
	if err := yaml.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("the rendered manifest is not YAML: %w", err)
	}
	if m.Metadata.Name == "" {
		return nil, errors.New("the rendered manifest has no metadata.name")
	}
	return manifest, nil
}

func (r Release) names() []string {
	names := make([]string, 0, len(r.Sums))
	for n := range r.Sums {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return []string{"none"}
	}
	return names
}

// dropMissing removes the platforms whose sha256 is missingSum. It re-encodes
// the manifest, so a partial manifest loses the template's layout.
func dropMissing(manifest []byte) ([]byte, error) {
	var m map[string]any
	if err := yaml.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("the rendered manifest is not YAML: %w", err)
	}
	spec, _ := m["spec"].(map[string]any)
	platforms, _ := spec["platforms"].([]any)
	var kept []any
	for _, p := range platforms {
		if pm, ok := p.(map[string]any); ok && pm["sha256"] == "" {
			continue
		}
		kept = append(kept, p)
	}
	spec["platforms"] = kept
	return yaml.Marshal(m)
}

// versionTag finds a tag's dotted version numbers, as the bot does.
var versionTag = regexp.MustCompile(`\d+(\.\d+)+`)

func versionOf(tag string) string {
	if v := versionTag.FindString(tag); v != "" {
		return v
	}
	return tag
}

// indent is the bot's indent: it prefixes every line of v with spaces and
// trims the result, so the first line goes where the call stands.
func indent(spaces int, v string) string {
	v = strings.ReplaceAll(v, "    sha256:", "sha256:")
	pad := strings.Repeat(" ", spaces)
	return strings.TrimSpace(pad + strings.ReplaceAll(v, "\n", "\n"+pad))
}

// Sums returns the sha256 of each archive, keyed by its file name.
func Sums(archives ...string) (map[string]string, error) {
	sums := make(map[string]string, len(archives))
	for _, a := range archives {
		sum, err := FileSHA256(a)
		if err != nil {
			return nil, err
		}
		name := filepath.Base(a)
		if _, dup := sums[name]; dup {
			return nil, fmt.Errorf("two archives named %s", name)
		}
		sums[name] = sum
	}
	return sums, nil
}

// FileSHA256 returns the sha256 of the file at path, in hex.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
