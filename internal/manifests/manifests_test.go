package manifests_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/krm-project/krm/internal/manifests"
)

// copyTree copies the repo's manifests directory into a temporary one.
func copyTree(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "manifests")
	if err := os.CopyFS(dst, os.DirFS("../../manifests")); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestCommittedRendersAreCurrent(t *testing.T) {
	if err := manifests.Check("../../manifests"); err != nil {
		t.Fatal(err)
	}
}

// TestCheckFindsStaleRenders is what makes `make verify` fail: after an
// edit to the base, every install that includes it is reported, and the
// command exits 1 with the fix in its message.
func TestCheckFindsStaleRenders(t *testing.T) {
	dir := copyTree(t)
	agent := filepath.Join(dir, "base", "agent.yaml")
	data, err := os.ReadFile(agent)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(data), "memory: 256Mi", "memory: 300Mi", 1)
	if edited == string(data) {
		t.Fatal("base/agent.yaml no longer requests 256Mi; update this test's edit")
	}
	if err := os.WriteFile(agent, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}

	err = manifests.Check(dir)
	if !errors.Is(err, manifests.ErrStale) {
		t.Fatalf("Check after editing base/agent.yaml: got %v, want ErrStale", err)
	}
	for _, tg := range manifests.Targets {
		if !strings.Contains(err.Error(), tg.File) {
			t.Errorf("Check's error does not name %s: %v", tg.File, err)
		}
	}

	out, err := exec.Command("go", "run", "../cmd/krm-manifests", "-check", "-dir", dir).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("krm-manifests -check: got %v, want exit status 1; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "make manifests") {
		t.Errorf("krm-manifests -check does not say how to fix it:\n%s", out)
	}

	if err := manifests.Write(dir); err != nil {
		t.Fatal(err)
	}
	if err := manifests.Check(dir); err != nil {
		t.Fatalf("Check after Write: %v", err)
	}
	rendered, err := os.ReadFile(filepath.Join(dir, "install", "krm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rendered), "memory: 300Mi") {
		t.Error("install/krm.yaml does not carry the edit after Write")
	}
}

func TestCheckReportsMissingFile(t *testing.T) {
	dir := copyTree(t)
	if err := os.Remove(filepath.Join(dir, "install", "krm-ha.yaml")); err != nil {
		t.Fatal(err)
	}
	err := manifests.Check(dir)
	if !errors.Is(err, manifests.ErrStale) || !strings.Contains(err.Error(), "install/krm-ha.yaml (missing)") {
		t.Fatalf("got %v, want ErrStale naming install/krm-ha.yaml (missing)", err)
	}
}

func TestRenderReportsBrokenKustomization(t *testing.T) {
	dir := copyTree(t)
	if err := os.WriteFile(filepath.Join(dir, "base", "kustomization.yaml"), []byte("resources: [nothere.yaml]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := manifests.Check(dir)
	if err == nil || errors.Is(err, manifests.ErrStale) || !strings.Contains(err.Error(), "nothere.yaml") {
		t.Fatalf("got %v, want a build error naming nothere.yaml", err)
	}
}
