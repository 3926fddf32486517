package main

import (
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	a := newFakeAgent(t)
	r := runKrm(t, a, "version")
	if want := "Plugin Version: dev\nAgent Version: v1.2.3\nAPI Version: krm.io/v1alpha1\n"; r.err != nil || r.stdout != want {
		t.Errorf("version: %v, stdout %q; want %q", r.err, r.stdout, want)
	}
	// --client asks nobody.
	a.srv.Close()
	r = runKrm(t, a, "version", "--client")
	if want := "Plugin Version: dev\nAgent Version: (not asked: --client)\nAPI Version: krm.io/v1alpha1\n"; r.err != nil || r.stdout != want {
		t.Errorf("version --client: %v, stdout %q; want %q", r.err, r.stdout, want)
	}
	// Without an agent the plugin's version is still printed, and the
	// error follows.
	r = runKrm(t, a, "version")
	if want := "Plugin Version: dev\nAgent Version: unknown (see the error below)\nAPI Version: krm.io/v1alpha1\n"; r.err == nil || !strings.Contains(r.err.Error(), "unreachable") || r.stdout != want {
		t.Errorf("version without an agent: %v, stdout %q; want an unreachable agent and %q", r.err, r.stdout, want)
	}
}
