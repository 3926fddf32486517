package render

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

func printDrift(t *testing.T, p DriftPrinter, reports *krmv1alpha1.DriftReportList) string {
	t.Helper()
	p.Now = fixtureClock
	var buf bytes.Buffer
	if err := p.PrintObj(reports, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// TestDriftGolden prints testdata/drift-*.json, drift reports as GET
// /apis/krm.io/v1alpha1/driftreports/{resource} returns them, listed, as
// `kubectl krm diff verified` does with each flag set.
func TestDriftGolden(t *testing.T) {
	variants := []struct {
		suffix string
		p      DriftPrinter
	}{
		{"", DriftPrinter{}},
		{"-no-headers", DriftPrinter{NoHeaders: true}},
		{"-history", DriftPrinter{History: true}},
		{"-diff", DriftPrinter{Diff: true}},
		{"-history-diff", DriftPrinter{History: true, Diff: true}},
	}
	var reports krmv1alpha1.DriftReportList
	readJSON(t, "drift-changes", &reports)
	for _, v := range variants {
		t.Run("drift-changes"+v.suffix, func(t *testing.T) {
			checkGolden(t, "drift-changes"+v.suffix, printDrift(t, v.p, &reports))
		})
	}
	var none krmv1alpha1.DriftReportList
	readJSON(t, "drift-none", &none)
	t.Run("drift-none-history", func(t *testing.T) {
		checkGolden(t, "drift-none-history", printDrift(t, DriftPrinter{History: true}, &none))
	})
}

// TestDriftItems checks what each kind of difference compares: an unverified
// change shows the verified copy against the streamed one, a missed event
// what the LIST had (or, for a missed DELETED, what the stream held).
func TestDriftItems(t *testing.T) {
	var reports krmv1alpha1.DriftReportList
	readJSON(t, "drift-changes", &reports)
	type item struct {
		Resource, Key, Change, StreamedRV, VerifiedRV, Kind string
		Before, After                                       string // resourceVersion of the object, "" for none
	}
	rvOf := func(obj []byte) string {
		if len(obj) == 0 {
			return ""
		}
		var m struct {
			Metadata struct{ ResourceVersion string } `json:"metadata"`
		}
		if err := json.Unmarshal(obj, &m); err != nil {
			t.Fatal(err)
		}
		return m.Metadata.ResourceVersion
	}
	summarize := func(items []DriftItem) []item {
		var out []item
		for _, it := range items {
			out = append(out, item{it.Resource, keyOf(it.Namespace, it.Name), it.Change, it.StreamedRV, it.VerifiedRV, it.Kind, rvOf(it.Before), rvOf(it.After)})
		}
		return out
	}
	lastList := []item{
		{"deployments", "shop/web", krmv1alpha1.ChangeModified, "5003", "4990", "apps.v1.Deployment", "4990", "5003"},
		{"nodes", "node-1", krmv1alpha1.ChangeModified, "5095", "5001", "v1.Node", "5001", "5095"},
		{"pods", "shop/gone", krmv1alpha1.ChangeDeleted, "5104", "5000", "v1.Pod", "5000", ""},
		{"pods", "shop/new-pod", krmv1alpha1.ChangeAdded, "5105", "", "v1.Pod", "", "5105"},
		{"pods", "shop/cache-0", krmv1alpha1.MissedAdded, "", "5090", "v1.Pod", "", "5090"},
		{"pods", "shop/old-1", krmv1alpha1.MissedDeleted, "4800", "", "v1.Pod", "4800", ""},
		{"pods", "shop/web-1", krmv1alpha1.MissedModified, "5010", "5050", "v1.Pod", "", "5050"},
	}
	if diff := cmp.Diff(lastList, summarize((&DriftPrinter{}).Items(&reports))); diff != "" {
		t.Errorf("items of the last LIST (-want +got):\n%s", diff)
	}
	// The history adds the findings of earlier LISTs, where the ledger has
	// them.
	history := []item{
		lastList[0],
		{"deployments", "shop/api", krmv1alpha1.MissedModified, "3900", "3950", "apps.v1.Deployment", "", "3950"},
		lastList[1], lastList[2], lastList[3],
		{"pods", "shop/ancient", krmv1alpha1.MissedAdded, "", "2990", "v1.Pod", "", "2990"},
		lastList[4], lastList[5], lastList[6],
	}
	if diff := cmp.Diff(history, summarize((&DriftPrinter{History: true}).Items(&reports))); diff != "" {
		t.Errorf("items of the history (-want +got):\n%s", diff)
	}
}

// No differences print nothing at all, not even a header: `diff verified`
// then exits 0 with empty output, as kubectl diff does.
func TestDriftNoDifferences(t *testing.T) {
	var none krmv1alpha1.DriftReportList
	readJSON(t, "drift-none", &none)
	for name, reports := range map[string]*krmv1alpha1.DriftReportList{
		"no reports":                   {},
		"earlier LISTs' findings only": &none,
		"a report with nothing": {Items: []krmv1alpha1.DriftReport{{Status: krmv1alpha1.DriftState{
			Resource: "pods", Ledger: []krmv1alpha1.DriftEntry{}, Unverified: []krmv1alpha1.UnverifiedChange{},
		}}}},
	} {
		for _, p := range []DriftPrinter{{}, {Diff: true}, {NoHeaders: true}} {
			if items := p.Items(reports); len(items) != 0 {
				t.Errorf("%s, %+v: %d items, want none", name, p, len(items))
			}
			if got := printDrift(t, p, reports); got != "" {
				t.Errorf("%s, %+v: printed %q, want nothing", name, p, got)
			}
		}
	}
	if got := printDrift(t, DriftPrinter{History: true}, &none); !strings.Contains(got, "old-1") {
		t.Errorf("--history on drift-none: %q, want the earlier LIST's finding", got)
	}
}

// An added-and-deleted object or one without a kind still gets a diff whose
// file names say what they can.
func TestDriftDiffWithoutKind(t *testing.T) {
	reports := &krmv1alpha1.DriftReportList{Items: []krmv1alpha1.DriftReport{{Status: krmv1alpha1.DriftState{
		Resource: "widgets.example.com",
		Unverified: []krmv1alpha1.UnverifiedChange{{
			Type: krmv1alpha1.ChangeAdded, Name: "w", ResourceVersion: "9",
			Object: []byte(`{"metadata":{"name":"w"}}`),
		}},
	}}}}
	want := "" +
		"diff -u -N verified/unknown.w streamed/unknown.w\n" +
		"# widgets.example.com Added: w (streamed resourceVersion 9, verified <none>)\n" +
		"--- verified/unknown.w\n" +
		"+++ streamed/unknown.w\n" +
		"@@ -0,0 +1,2 @@\n" +
		"+metadata:\n" +
		"+  name: w\n"
	if diff := cmp.Diff(want, printDrift(t, DriftPrinter{Diff: true}, reports)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
