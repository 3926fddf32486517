package render

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

// readDelayFixture decodes testdata/<name>.json: the reports `kubectl krm
// delay` got, one per resource asked for.
func readDelayFixture(t *testing.T, name string) *krmv1alpha1.DelayReportList {
	t.Helper()
	var reports krmv1alpha1.DelayReportList
	readJSON(t, name, &reports)
	return &reports
}

func printDelay(t *testing.T, p DelayPrinter, reports *krmv1alpha1.DelayReportList) string {
	t.Helper()
	var buf bytes.Buffer
	if err := p.PrintObj(reports, &buf); err != nil {
		t.Fatalf("PrintObj: %v", err)
	}
	return buf.String()
}

// The fixtures' times are UTC and the printer is told to show UTC, so the
// chart's times do not depend on the zone the tests run in.
var delayVariants = []struct {
	suffix string
	p      DelayPrinter
}{
	{"", DelayPrinter{Location: time.UTC}},
	{"-no-headers", DelayPrinter{NoHeaders: true, Location: time.UTC}},
	{"-chart", DelayPrinter{Chart: true, Location: time.UTC}},
}

// TestDelayGolden prints each testdata/delay-*.json as `kubectl krm delay`
// does: a table of several resources (a truncated count, unmeasured-only
// rows, probe rows, negative DELETED delays), reports from memory after
// InfluxDB failed, and a range without samples; each as a table, without
// headers, and as a chart.
func TestDelayGolden(t *testing.T) {
	for _, fixture := range []string{"delay-all", "delay-influx-failed", "delay-none"} {
		reports := readDelayFixture(t, fixture)
		for _, v := range delayVariants {
			t.Run(fixture+v.suffix, func(t *testing.T) {
				got := printDelay(t, v.p, reports)
				checkGolden(t, fixture+v.suffix, got)
				checkResolutionNote(t, got)
				checkWidth(t, got, v.p.Chart)
			})
		}
	}
}

// checkResolutionNote checks the output says what the delays are worth,
// wherever the note's lines are broken.
func checkResolutionNote(t *testing.T, out string) {
	t.Helper()
	if flat := strings.Join(strings.Fields(out), " "); !strings.Contains(flat, "object timestamps have 1-second resolution") {
		t.Errorf("the output does not say that object timestamps have 1-second resolution:\n%s", out)
	}
}

// checkWidth checks that every line of a chart, and every line of the note
// under a table, fits 80 columns. Table rows are as wide as kubectl makes
// them.
func checkWidth(t *testing.T, out string, chart bool) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if !chart {
		// The note starts after the blank line that ends the table.
		for i, l := range lines {
			if l == "" {
				lines = lines[i:]
				break
			}
		}
	}
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > 80 {
			t.Errorf("line of %d columns, more than 80:\n%s", n, l)
		}
	}
}

func TestDelayTableCells(t *testing.T) {
	out := printDelay(t, DelayPrinter{Location: time.UTC}, readDelayFixture(t, "delay-all"))
	rows := map[string][]string{}
	table, _, _ := strings.Cut(out, "\n\n")
	for _, l := range strings.Split(table, "\n") {
		if f := strings.Fields(l); len(f) == 9 {
			rows[f[0]+" "+f[1]] = f[2:]
		}
	}
	want := map[string][]string{
		"RESOURCE EVENT": {"COUNT", "UNMEASURED", "MIN", "P50", "P90", "P99", "MAX"},
		// Some samples fell out of the window: the count is a lower bound.
		"pods ADDED": {"4096+", "0", "12ms", "402ms", "981ms", "2.5s", "4.2s"},
		// Negative: received before the grace period ended.
		"pods DELETED": {"611", "2", "-29.871s", "-29.1s", "-3.2s", "400ms", "1.7s"},
		// Nothing measured: no figures, only the count of the unmeasured.
		"persistentvolumeclaims ADDED": {"0", "3", "<none>", "<none>", "<none>", "<none>", "<none>"},
		// The probe's delays are finer than a millisecond.
		"probe ADDED":    {"17", "0", "-46µs", "98µs", "522µs", "1.881ms", "1.881ms"},
		"probe DELETED":  {"17", "0", "-247µs", "23µs", "155µs", "696µs", "696µs"},
		"services ADDED": {"12", "0", "101ms", "500ms", "900ms", "950ms", "950ms"},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("table cells (-want +got):\n%s", diff)
	}
}

// The chart shows its times in the printer's Location, and says which.
func TestDelayChartTimesInLocation(t *testing.T) {
	reports := &krmv1alpha1.DelayReportList{Items: []krmv1alpha1.DelayReport{{Status: krmv1alpha1.DelayState{
		Source: "memory", Since: time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC), Step: "1m0s", Resolution: "object timestamps have 1-second resolution",
		Stats:  []krmv1alpha1.DelayStats{{Resource: "pods", Event: "ADDED", Count: 1, Min: 0.5, P50: 0.5, P90: 0.5, P99: 0.5, Max: 0.5, Mean: 0.5}},
		Series: []krmv1alpha1.DelayPoint{{At: time.Date(2026, 3, 1, 11, 30, 0, 0, time.UTC), Count: 1, P50: 0.5, Max: 0.5}},
	}}}}
	for _, tc := range []struct {
		loc         *time.Location
		title, line string
	}{
		{time.UTC, "times in UTC", "11:30:00 1 500ms 500ms"},
		{time.FixedZone("CET", 3600), "times in CET", "12:30:00 1 500ms 500ms"},
	} {
		out := printDelay(t, DelayPrinter{Chart: true, Location: tc.loc}, reports)
		lines := strings.Split(out, "\n")
		if !strings.HasSuffix(lines[0], tc.title) {
			t.Errorf("in %s, the chart's title is %q, want it to end %q", tc.loc, lines[0], tc.title)
		}
		if got := strings.Join(strings.Fields(strings.Trim(lines[1], "█░")), " "); got != tc.line {
			t.Errorf("in %s, the chart's line is %q, want %q", tc.loc, lines[1], tc.line)
		}
	}
}

func TestWrap(t *testing.T) {
	long := strings.Repeat("é", 25)
	got := wrap("one two three "+long+" four", 10)
	want := "one two\nthree\néééééééééé\néééééééééé\nééééé four"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("wrap (-want +got):\n%s", diff)
	}
}
