package render

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPodGolden(t *testing.T) {
	testGolden(t, "pod-states")
	testGolden(t, "pod-init-containers")
}

// TestPodStatus pins the READY, STATUS and RESTARTS kubectl shows for each
// state it tells apart, so that a wrong golden written by -update is caught.
func TestPodStatus(t *testing.T) {
	tests := map[string][]string{
		// name: READY, STATUS, RESTARTS
		"web-6d4cf56db6-abcde":           {"1/1", "Running", "0"},
		"web-6d4cf56db6-fghij":           {"0/1", "ContainerCreating", "0"},
		"unschedulable":                  {"0/1", "Pending", "0"},
		"nominated":                      {"0/1", "Pending", "0"},
		"gated":                          {"0/1", "SchedulingGated", "0"},
		"two-containers-one-ready":       {"1/2", "Running", "0"},
		"completed-job-x7k2p":            {"0/1", "Completed", "0"},
		"failed-job-q9w8e":               {"0/1", "Error", "0"},
		"crashloop":                      {"0/1", "CrashLoopBackOff", "5 (5m ago)"},
		"restarted-running":              {"1/1", "Running", "12 (150m ago)"},
		"terminating":                    {"1/1", "Terminating", "0"},
		"node-lost":                      {"1/1", "Unknown", "0"},
		"evicted":                        {"0/1", "ContainerStatusUnknown", "0"},
		"evicted-no-statuses":            {"0/1", "Evicted", "0"},
		"gates-half":                     {"1/1", "Running", "0"},
		"completed-with-sidecar-running": {"1/2", "NotReady", "0"},
		"exit-code-no-reason":            {"0/1", "ExitCode:3", "0"},
		"killed-by-signal":               {"0/1", "Signal:9", "0"},
		"api-7f9c8d7b5-zzzzz":            {"1/1", "Running", "1 (29d ago)"},

		"init-running":       {"0/1", "Init:0/1", "0"},
		"init-second-of-two": {"0/1", "Init:1/2", "0"},
		"init-crashloop":     {"0/1", "Init:CrashLoopBackOff", "3 (2m ago)"},
		"init-error":         {"0/1", "Init:Error", "0"},
		"init-exit-code":     {"0/1", "Init:ExitCode:2", "0"},
		"init-signal":        {"0/1", "Init:Signal:15", "0"},
		"pod-initializing":   {"0/1", "PodInitializing", "0"},
		// Restarts of init containers that finished are not counted once
		// the pod is initialized.
		"init-done-running": {"1/1", "Running", "0"},
		// A sidecar is a container: it counts in READY and its restarts
		// count in RESTARTS.
		"sidecar-running":    {"2/2", "Running", "4 (44m ago)"},
		"sidecar-starting":   {"0/2", "Init:0/1", "0"},
		"init-waiting-image": {"0/1", "Init:ImagePullBackOff", "0"},
	}
	got := rows(t, "pod-states", TableOptions{})
	for name, cells := range rows(t, "pod-init-containers", TableOptions{}) {
		got[name] = cells
	}
	for name, want := range tests {
		cells, ok := got[name]
		if !ok {
			t.Errorf("no row for pod %s", name)
			continue
		}
		if diff := cmp.Diff(want, cells[1:4]); diff != "" {
			t.Errorf("pod %s: READY, STATUS, RESTARTS (-want +got):\n%s", name, diff)
		}
	}
}

func TestPodWideColumns(t *testing.T) {
	tests := map[string][]string{
		// name: IP, NODE, NOMINATED NODE, READINESS GATES
		"web-6d4cf56db6-abcde": {"10.244.1.5", "worker-1", "<none>", "<none>"},
		"nominated":            {"<none>", "<none>", "worker-3", "<none>"},
		"gates-half":           {"10.244.2.9", "worker-2", "<none>", "1/2"},
	}
	got := rows(t, "pod-states", TableOptions{Wide: true})
	for name, want := range tests {
		if diff := cmp.Diff(want, got[name][5:]); diff != "" {
			t.Errorf("pod %s: wide columns (-want +got):\n%s", name, diff)
		}
	}
}
