package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// runningKrm is `kubectl krm` running in the background against a fake
// agent.
type runningKrm struct {
	stdout, stderr *lockedBuffer
	// stop ends the command as a signal would, and returns its error.
	stop func() error
	// ended is closed when the command has ended, with err.
	ended <-chan struct{}
	err   error
}

// startKrm runs `kubectl krm args…` until stop or the end of the test.
func startKrm(t *testing.T, a *fakeAgent, args ...string) *runningKrm {
	t.Helper()
	r := &runningKrm{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
	ctx, cancel := context.WithCancel(t.Context())
	ended := make(chan struct{})
	r.ended = ended
	go func() {
		defer close(ended)
		r.err = executeKrm(ctx, t, a, r.stdout, r.stderr, args...)
	}()
	r.stop = func() error {
		cancel()
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatalf("kubectl krm %s still running 10s after its context ended", strings.Join(args, " "))
		}
		return r.err
	}
	t.Cleanup(func() { _ = r.stop() })
	return r
}

// waitFor polls cond for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// firstFields are the first field of each line of out.
func firstFields(out string) []string {
	var fields []string
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			fields = append(fields, f[0])
		}
	}
	return fields
}

// TestGetWatch checks `get -w` against kubectl's rules: a list is printed,
// then watched from its resourceVersion, each event a row under the same
// header; a named object is watched by name from now, and its first event,
// the state printed, is not printed again; --watch-only prints the header
// with the first event.
func TestGetWatch(t *testing.T) {
	pods := fakeResources[0]
	tests := []struct {
		name string
		args []string
		// printed is what is printed before any change, as first fields.
		printed []string
		// watch is the watch request.
		watch string
		// then is what the changes print, as first fields.
		then []string
	}{
		{
			name: "list", args: []string{"get", "pods", "-w"},
			printed: []string{"NAME", "a", "b"},
			watch:   teamAPods + "?resourceVersion=10&view=aggregated&watch=true",
			then:    []string{"a", "c", "b"},
		},
		{
			name: "name", args: []string{"get", "pod/a", "-w"},
			printed: []string{"NAME", "a"},
			watch:   teamAPods + "?fieldSelector=metadata.name%3Da&view=aggregated&watch=true",
			then:    []string{"a"},
		},
		{
			name: "watch-only", args: []string{"get", "pods", "--watch-only"},
			watch: teamAPods + "?resourceVersion=10&view=aggregated&watch=true",
			then:  []string{"NAME", "a", "c", "b"},
		},
		{
			name: "name, watch-only", args: []string{"get", "pods", "a", "--watch-only"},
			watch: teamAPods + "?fieldSelector=metadata.name%3Da&view=aggregated&watch=true",
			then:  []string{"NAME", "a"},
		},
		{
			name: "-o name", args: []string{"get", "pods", "-w", "-o", "name"},
			printed: []string{"pod/a", "pod/b"},
			watch:   teamAPods + "?resourceVersion=10&view=aggregated&watch=true",
			then:    []string{"pod/a", "pod/c", "pod/b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newFakeAgent(t)
			r := startKrm(t, a, tt.args...)
			waitFor(t, "the watch", func() bool {
				reads := a.Reads()
				return len(reads) > 0 && reads[len(reads)-1] == tt.watch
			})
			if diff := cmp.Diff(tt.printed, firstFields(r.stdout.String())); diff != "" {
				t.Errorf("printed before any change (-want +got):\n%s", diff)
			}
			res := a.resources["pods"]
			res.apply("MODIFIED", row(pods, "team-a", "a", 11, map[string]string{"step": "1"}))
			res.apply("ADDED", row(pods, "team-a", "c", 12, nil))
			res.apply("ADDED", row(pods, "other", "elsewhere", 13, nil))
			res.apply("DELETED", row(pods, "team-a", "b", 14, nil))
			want := append(append([]string(nil), tt.printed...), tt.then...)
			waitFor(t, "the changes", func() bool { return len(firstFields(r.stdout.String())) >= len(want) })
			// Anything printed late would be a bug too.
			time.Sleep(50 * time.Millisecond)
			if err := r.stop(); err != nil {
				t.Errorf("stopping: %v", err)
			}
			if diff := cmp.Diff(want, firstFields(r.stdout.String())); diff != "" {
				t.Errorf("printed (-want +got):\n%s\n%s", diff, r.stdout)
			}
			if r.stderr.String() != "" {
				t.Errorf("stderr %q", r.stderr)
			}
		})
	}
}

// Rows of watch events say where they come from: an event newer than the
// last verifying LIST is streamed.
func TestGetWatchShowSource(t *testing.T) {
	a := newFakeAgent(t)
	r := startKrm(t, a, "get", "pods", "-w", "--show-source")
	waitFor(t, "the watch", func() bool { return len(a.Reads()) == 2 })
	a.resources["pods"].apply("MODIFIED", row(fakeResources[0], "team-a", "a", 11, nil))
	waitFor(t, "the change", func() bool { return strings.Count(r.stdout.String(), "\n") == 4 })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout.String(), "\n"), "\n")
	var sources []string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		sources = append(sources, f[0]+" "+strings.Join(f[len(f)-2:], " "))
	}
	if diff := cmp.Diff([]string{"a verified 30m", "b verified 30m", "a streamed 30m"}, sources); diff != "" {
		t.Errorf("NAME SOURCE VERIFIED (-want +got):\n%s\n%s", diff, r.stdout)
	}
}

// A watch cut off ends the command with an error that says so.
func TestGetWatchBroken(t *testing.T) {
	a := newFakeAgent(t)
	r := startKrm(t, a, "get", "pods", "-w")
	waitFor(t, "the watch", func() bool { return len(a.Reads()) == 2 })
	// The watch is recorded when its request arrives, before its response
	// begins; a connection cut in between is one client-go retries (it
	// retries a watch on a reset connection or EOF). So the connections are
	// cut until the command ends, as when the agent goes away.
	cut := time.NewTicker(200 * time.Millisecond)
	defer cut.Stop()
	giveUp := time.After(10 * time.Second)
	for {
		a.srv.CloseClientConnections()
		select {
		case <-r.ended:
			if err := r.err; err == nil || !strings.HasPrefix(err.Error(), "the watch of pods ended") && !strings.HasPrefix(err.Error(), "watching pods: ") {
				t.Errorf("error %v, want the watch's end", err)
			}
			return
		case <-giveUp:
			t.Fatal("still running 10s after the agent cut the watch off")
		case <-cut.C:
		}
	}
}
