package render

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/krm-project/krm/pkg/api"
)

// DelayPrinter prints stream-delay statistics as a table or, with Chart, as
// a text chart of the time series that fits 80 columns.
type DelayPrinter struct {
	Chart     bool
	NoHeaders bool
}

// chartWidth is the widest line a chart prints.
const chartWidth = 80

// PrintObj prints reports, one per resource asked for (or one for all).
func (p *DelayPrinter) PrintObj(reports []*api.DelayReport, w io.Writer) error {
	if len(reports) == 0 {
		return nil
	}
	if p.Chart {
		for _, r := range reports {
			if err := printDelayChart(w, r); err != nil {
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
	return printDelayNote(w, reports[0])
}

// printDelayNote says where the numbers come from and what they are worth.
func printDelayNote(w io.Writer, r *api.DelayReport) error {
	note := fmt.Sprintf("\nSource: %s, since %s. Delay is receive time minus the object's creation (ADDED) or deletion (DELETED) timestamp; %s, and DELETED delays are negative while the grace period runs.",
		r.Source, r.Since.Format(time.RFC3339), r.Resolution)
	if r.Warning != "" {
		note += "\nWarning: " + r.Warning
	}
	_, err := fmt.Fprintln(w, wrap(note, chartWidth))
	return err
}

// seconds formats a delay in seconds, to the millisecond.
func seconds(s float64, count int64) string {
	if count == 0 {
		return "<none>"
	}
	return (time.Duration(math.Round(s*1000)) * time.Millisecond).String()
}

// printDelayChart draws one line per time bucket: the time, the count, the
// median and the maximum, and a bar of the median against the largest.
func printDelayChart(w io.Writer, r *api.DelayReport) error {
	title := "stream delay"
	if len(r.Stats) > 0 {
		title = fmt.Sprintf("stream delay of %s", describeStats(r.Stats))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s, p50 per %s (█) up to max (░)\n", title, r.Step)
	if len(r.Series) == 0 {
		b.WriteString("  no samples\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	top := 0.0
	for _, p := range r.Series {
		top = max(top, p.Max, p.P50)
	}
	const label = "15:04:05 "
	// time, count (6), p50 and max (9 each) take this much of each line.
	fixed := len(label) + 6 + 1 + 9 + 1 + 9 + 1
	barWidth := chartWidth - fixed
	for _, p := range r.Series {
		p50, mx := p.P50, p.Max
		fmt.Fprintf(&b, "%s%6d %9s %9s ", p.At.Local().Format(label), p.Count, seconds(p50, 1), seconds(mx, 1))
		b.WriteString(bar(p50, mx, top, barWidth))
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
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
	return strings.TrimRight(strings.Repeat("█", a)+strings.Repeat("░", max(0, z-a)), " ")
}

func describeStats(stats []api.DelayStats) string {
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

// wrap breaks text at spaces so no line is longer than width.
func wrap(text string, width int) string {
	var out []string
	for _, para := range strings.Split(text, "\n") {
		line := ""
		for _, word := range strings.Fields(para) {
			if line != "" && len(line)+1+len(word) > width {
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
