package render

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGenericGolden(t *testing.T) { testGolden(t, "generic-widgets") }

func TestGenericColumns(t *testing.T) {
	// Cluster-scoped objects get no NAMESPACE column, even with -A.
	list := readFixture(t, "generic-widgets")
	for i := range list.Items {
		list.Items[i].SetNamespace("")
	}
	want := "" +
		"NAME           AGE\n" +
		"doohickey      2m\n" +
		"gizmo          24h\n" +
		"no-timestamp   <unknown>\n"
	if diff := cmp.Diff(want, render(t, list, TableOptions{WithNamespace: true})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
