package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/krm-project/krm/pkg/ui"
)

func TestUIPrintsTheViewsURLAndProxiesIt(t *testing.T) {
	agent := proxyAgent(t, "", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == uiPath {
			_, _ = io.WriteString(w, "the view")
			return
		}
		http.NotFound(w, r)
	}))
	stdout, stderr := &lockedBuffer{}, &lockedBuffer{}
	ctx, cancel := context.WithCancel(t.Context())
	cmd := NewCmdKrm(genericiooptions.IOStreams{In: strings.NewReader(""), Out: stdout, ErrOut: stderr})
	cmd.SetArgs([]string{"ui", "--agent-url", agent.URL})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("kubectl krm ui: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("kubectl krm ui still running 10s after its context ended")
		}
	}()

	serving := regexp.MustCompile(`^Serving the krm web view at (http://127\.0\.0\.1:\d+/ui/) \(press Ctrl-C to stop\)\n$`)
	var url string
	for url == "" {
		if m := serving.FindStringSubmatch(stdout.String()); m != nil {
			url = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("kubectl krm ui ended before serving: %v\nstdout: %s\nstderr: %s", err, stdout, stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "the view" {
		t.Errorf("GET %s = %d %q, want the agent's %s", url, resp.StatusCode, b, uiPath)
	}
}

func TestUIServingLine(t *testing.T) {
	if uiPath != ui.Prefix {
		t.Fatalf("the plugin opens the view at %s, the agent serves it at %s", uiPath, ui.Prefix)
	}
	for addr, want := range map[string]string{
		"127.0.0.1:8002": "http://127.0.0.1:8002/ui/",
		"0.0.0.0:8002":   "http://127.0.0.1:8002/ui/",
		"[::1]:8002":     "http://[::1]:8002/ui/",
		"[::]:8002":      "http://127.0.0.1:8002/ui/",
	} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := uiServing(a); !strings.Contains(got, " at "+want+" ") {
			t.Errorf("listening on %s: %q, want the URL %s", addr, got, want)
		}
	}
}
