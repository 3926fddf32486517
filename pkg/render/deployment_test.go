package render

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDeploymentGolden(t *testing.T) { testGolden(t, "deployment-states") }

func TestDeploymentColumns(t *testing.T) {
	tests := map[string][]string{
		// name: READY, UP-TO-DATE, AVAILABLE, AGE, CONTAINERS, IMAGES, SELECTOR
		"web":            {"3/3", "3", "3", "2d3h", "nginx", "nginx:1.27", "app=web"},
		"scaled-to-zero": {"0/0", "0", "0", "40d", "app", "busybox:1.36", "app=scaled-to-zero"},
		// READY is ready of desired, not of the pods that exist.
		"rolling":     {"8/10", "5", "7", "4m5s", "app,sidecar", "registry.example.com/app:v2,envoyproxy/envoy:v1.31", "app=rolling"},
		"unavailable": {"0/2", "2", "0", "7h30m", "app", "registry.example.com/missing:latest", "app=unavailable"},
		"expressions": {"1/1", "1", "1", "5s", "app", "busybox:1.36", "app=expressions,!canary,tier in (backend,cache)"},
	}
	got := rows(t, "deployment-states", TableOptions{Wide: true})
	for name, want := range tests {
		if diff := cmp.Diff(want, got[name][1:]); diff != "" {
			t.Errorf("deployment %s (-want +got):\n%s", name, diff)
		}
	}
}
