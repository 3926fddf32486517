package render

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNodeGolden(t *testing.T) { testGolden(t, "node-roles") }

func TestNodeColumns(t *testing.T) {
	tests := map[string][]string{
		// name: STATUS, ROLES, AGE, VERSION, INTERNAL-IP, EXTERNAL-IP, OS-IMAGE, KERNEL-VERSION, CONTAINER-RUNTIME
		"control-plane": {"Ready", "control-plane", "90d", "v1.37.2", "172.18.0.2", "<none>", "Ubuntu 24.04.1 LTS", "6.8.0-45-generic (amd64)", "containerd://2.0.2"},
		"worker-1":      {"Ready", "ingress,worker", "90d", "v1.37.2", "172.18.0.3", "198.51.100.21", "Ubuntu 24.04.1 LTS", "6.8.0-45-generic (amd64)", "containerd://2.0.2"},
		"worker-2":      {"NotReady", "gpu", "3d4h", "v1.37.2", "172.18.0.4", "<none>", "Debian GNU/Linux 12 (bookworm)", "6.1.0-28-cloud-arm64 (arm64)", "containerd://2.0.2"},
		"worker-3":      {"NotReady,SchedulingDisabled", "worker", "5h", "v1.36.4", "172.18.0.5", "<none>", "Ubuntu 24.04.1 LTS", "6.8.0-45-generic (amd64)", "containerd://2.0.2"},
		"virtual":       {"Ready", "<none>", "24h", "v1.37.2-vk", "10.0.0.9", "<none>", "<unknown>", "<unknown> (amd64)", "<unknown>"},
	}
	got := rows(t, "node-roles", TableOptions{Wide: true})
	for name, want := range tests {
		if diff := cmp.Diff(want, got[name][1:]); diff != "" {
			t.Errorf("node %s (-want +got):\n%s", name, diff)
		}
	}
	// worker-4 has no Ready condition and no version.
	if diff := cmp.Diff([]string{"Unknown,SchedulingDisabled", "<none>", "2m", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"}, got["worker-4"][1:]); diff != "" {
		t.Errorf("node worker-4 (-want +got):\n%s", diff)
	}
}
