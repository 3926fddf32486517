package render

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPersistentVolumeClaimGolden(t *testing.T) { testGolden(t, "persistentvolumeclaim-states") }

func TestPersistentVolumeClaimColumns(t *testing.T) {
	tests := map[string][]string{
		// name: STATUS, VOLUME, CAPACITY, ACCESS MODES, STORAGECLASS, VOLUMEATTRIBUTESCLASS, AGE, VOLUMEMODE
		"data-bound": {"Bound", "pvc-0a1b2c3d-1111-2222-3333-444455556666", "10Gi", "RWO", "standard", "<unset>", "12d", "Filesystem"},
		// An unbound claim shows neither the size nor the modes it asked for.
		"pending-no-class": {"Pending", "", "", "", "", "<unset>", "3m", "<unset>"},
		// Modes come in a fixed order, once each.
		"block-many-modes": {"Bound", "pv-block", "1536Mi", "RWO,ROX,RWX", "fast", "<unset>", "120m", "Block"},
		"empty-class":      {"Pending", "", "", "", "", "<unset>", "24h", "Filesystem"},
		"beta-annotation":  {"Pending", "", "", "", "legacy", "<unset>", "24h", "Filesystem"},
		"with-vac":         {"Bound", "pv-vac", "2Gi", "RWOP", "standard", "gold", "60m", "Filesystem"},
		"lost":             {"Lost", "pv-gone", "0", "", "standard", "<unset>", "5d", "Filesystem"},
		"terminating":      {"Terminating", "pv-prom", "20Gi", "RWO", "standard", "<unset>", "3d", "Filesystem"},
	}
	got := rows(t, "persistentvolumeclaim-states", TableOptions{Wide: true})
	for name, want := range tests {
		if diff := cmp.Diff(want, got[name][1:]); diff != "" {
			t.Errorf("claim %s (-want +got):\n%s", name, diff)
		}
	}
}
