package render

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

// DelayPrinter prints stream-delay statistics as a table or, with Chart, as
// a text chart of the time series that fits 80 columns.
type DelayPrinter struct {
	Chart     bool
	NoHeaders bool
	// Location is the time zone times are shown in (the chart's rows, the
	// start of the range); nil is time.Local.
	Location *time.Location
}

// chartWidth is the widest line a chart prints.
const chartWidth = 80

// PrintObj prints the reports of list, one per resource asked for.
func (p *DelayPrinter) PrintObj(list *krmv1alpha1.DelayReportList, w io.Writer) error {
	if len(list.Items) == 0 {
		return nil
	}
	reports := make([]*krmv1alpha1.DelayState, len(list.Items))
	for i := range list.Items {
		reports[i] = &list.Items[i].Status
	}
	loc := p.Location
	if loc == nil {
		loc = time.Local
	}
	if p.Chart {
		for i, r := range reports {
			if i > 0 {
				if _, err := fmt.Fprintln(w); err != nil {
					return err
				}
			}
			if err := printDelayChart(w, r, loc); err != nil {
				return err
			}
		}
	} else {
		var rows [][]any
		for _, r := range reports {
			for _, s := range r.Stats {
				count := strconv.FormatInt(s.Count, 10)
				if s.Truncated {
					count += "+"
				}
				rows = append(rows, []any{s.Resource, s.Event, count, strconv.FormatInt(s.Unmeasured, 10),
					seconds(s.Min, s.Count), seconds(s.P50, s.Count), seconds(s.P90, s.Count), seconds(s.P99, s.Count), seconds(s.Max, s.Count)})
			}
		}
		if len(rows) == 0 {
			if _, err := fmt.Fprintln(w, "No stream-delay samples in this range."); err != nil {
				return err
			}
		} else if err := printRows(w, []string{"RESOURCE", "EVENT", "COUNT", "UNMEASURED", "MIN", "P50", "P90", "P99", "MAX"}, rows, p.NoHeaders); err != nil {
			return err
		}
	}
	return printDelayNote(w, reports, loc)
}

// printDelayNote says where the numbers come from and what they are worth.
func printDelayNote(w io.Writer, reports []*krmv1alpha1.DelayState, loc *time.Location) error {
	r := reports[0]
	resolution := r.Resolution
	if resolution == "" {
		// An agent that did not say; the caveat holds all the same.
		resolution = "object timestamps have 1-second resolution"
	}
	note := fmt.Sprintf("\nSource: %s, since %s. Delay is receive time minus the object's creation (ADDED) or deletion (DELETED) timestamp; %s, and DELETED delays are negative while the grace period runs.",
		r.Source, r.Since.In(loc).Format(time.RFC3339), resolution)
	var probe bool
	for _, r := range reports {
		for _, s := range r.Stats {
			probe = probe || s.Resource == krmv1alpha1.ProbeName
		}
	}
	if probe {
		note += " The probe rows time the agent's own ConfigMap from each API call's response to its watch event, to the microsecond; they are negative when the event comes first."
	}
	var warnings []string
	for _, r := range reports {
		if r.Warning != "" && !slices.Contains(warnings, r.Warning) {
			warnings = append(warnings, r.Warning)
		}
	}
	for _, warning := range warnings {
		note += "\nWarning: " + warning
	}
	_, err := fmt.Fprintln(w, wrap(note, chartWidth))
	return err
}

// seconds formats a delay in seconds: to the millisecond, or to the
// microsecond below 10ms (the probe measures that finely).
func seconds(s float64, count int64) string {
	if count == 0 {
		return "<none>"
	}
	d := time.Duration(math.Round(s * float64(time.Second)))
	if d.Abs() < 10*time.Millisecond {
		return d.Round(time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// printDelayChart draws one line per time bucket: the time (in loc), the
// count, the median and the maximum, and a bar of the median against the
// largest. Every line fits chartWidth columns.
func printDelayChart(w io.Writer, r *krmv1alpha1.DelayState, loc *time.Location) error {
	title := "stream delay"
	if len(r.Stats) > 0 {
		title = fmt.Sprintf("stream delay of %s", describeStats(r.Stats))
	}
	// Over a day, a time of day alone is ambiguous.
	layout := "15:04:05"
	if n := len(r.Series); n > 0 && (r.Series[n-1].At.Sub(r.Since) >= 24*time.Hour || r.Series[n-1].At.Sub(r.Series[0].At) >= 24*time.Hour) {
		layout = "Jan 2 15:04"
	}
	var b strings.Builder
	zone := r.Since.In(loc).Format("MST")
	if len(r.Series) > 0 {
		zone = r.Series[0].At.In(loc).Format("MST")
	}
	b.WriteString(wrap(fmt.Sprintf("%s, p50 per %s (█) up to max (░), times in %s", title, r.Step, zone), chartWidth))
	b.WriteString("\n")
	if len(r.Series) == 0 {
		b.WriteString("  no samples\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	type line struct{ at, count, p50, max string }
	lines := make([]line, 0, len(r.Series))
	var wAt, wCount, wP50, wMax int
	top := 0.0
	for _, p := range r.Series {
		top = max(top, p.Max, p.P50)
		l := line{p.At.In(loc).Format(layout), strconv.Itoa(p.Count), seconds(p.P50, 1), seconds(p.Max, 1)}
		wAt, wCount = max(wAt, runes(l.at)), max(wCount, runes(l.count))
		wP50, wMax = max(wP50, runes(l.p50)), max(wMax, runes(l.max))
		lines = append(lines, l)
	}
	// The columns are as wide as their widest cell; the bar gets the rest,
	// and at least a few columns.
	barWidth := max(chartWidth-(wAt+1+wCount+1+wP50+1+wMax+1), 10)
	for i, p := range r.Series {
		l := lines[i]
		cells := fmt.Sprintf("%s %s %s %s ", pad(l.at, wAt, false), pad(l.count, wCount, true), pad(l.p50, wP50, true), pad(l.max, wMax, true))
		b.WriteString(strings.TrimRight(cells+bar(p.P50, p.Max, top, barWidth), " "))
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func runes(s string) int { return utf8.RuneCountInString(s) }

// pad pads s with spaces to width runes, on the left when right-aligned.
func pad(s string, width int, right bool) string {
	fill := strings.Repeat(" ", max(0, width-runes(s)))
	if right {
		return fill + s
	}
	return s + fill
}

// bar draws the median as full blocks and the rest up to the maximum as
// light shade, scaled so top fills width. Negative delays draw nothing.
func bar(p50, mx, top float64, width int) string {
	if top <= 0 {
		return ""
	}
	scale := func(v float64) int {
		if v <= 0 {
			return 0
		}
		return min(width, int(math.Round(v/top*float64(width))))
	}
	a, z := scale(p50), scale(mx)
	return strings.Repeat("█", a) + strings.Repeat("░", max(0, z-a))
}

func describeStats(stats []krmv1alpha1.DelayStats) string {
	seen := map[string]bool{}
	var parts []string
	for _, s := range stats {
		k := s.Resource + " " + s.Event
		if !seen[k] {
			seen[k] = true
			parts = append(parts, k)
		}
	}
	if len(parts) > 3 {
		return fmt.Sprintf("%d series", len(parts))
	}
	return strings.Join(parts, ", ")
}

// wrap breaks text at spaces so no line is longer than width runes; a word
// longer than that (a URL in a warning) is broken where the line ends.
func wrap(text string, width int) string {
	var out []string
	for _, para := range strings.Split(text, "\n") {
		line := ""
		for _, word := range strings.Fields(para) {
			for runes(word) > width {
				if line != "" {
					out = append(out, line)
					line = ""
				}
				r := []rune(word)
				out = append(out, string(r[:width]))
				word = string(r[width:])
			}
			if line != "" && runes(line)+1+runes(word) > width {
				out = append(out, line)
				line = word
				continue
			}
			if line != "" {
				line += " "
			}
			line += word
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}
