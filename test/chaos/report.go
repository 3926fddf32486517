package chaos

import (
	"fmt"
	"strings"
	"time"
)

// Markdown renders results as the table docs/reliability.md carries.
func Markdown(results []Result, o Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Agents: `--resources pods,deployments --verify-interval %s` (`--watch-stall-timeout %s` in watch-stall); workload: %g changes/s, up to %d bare pods and %d deployments; each timed fault lasts %s, RBAC `list` is revoked for %s.\n\n",
		o.VerifyInterval, o.StallTimeout, o.Rate, o.Pods, deployments, o.Fault, o.RBACRevoked)
	b.WriteString("| fault | converged after the fault | reader errors | peak RSS | goroutines before → after | objects lost | changes (refused) |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		conv := "**no**"
		if r.Converged {
			conv = r.ConvergedIn.Round(100 * time.Millisecond).String()
		}
		lost := fmt.Sprintf("%d", r.Lost)
		if r.Stale > 0 {
			lost += fmt.Sprintf(" (%d stale)", r.Stale)
		}
		if r.Err != nil {
			conv = "**error**"
		}
		fmt.Fprintf(&b, "| %s: %s | %s | %d of %d | %.0f MiB | %d → %d | %s | %d (%d) |\n",
			r.Name, r.Fault, conv, r.ReadErrors, r.ReadRequests, float64(r.PeakRSS)/(1<<20),
			r.GoroutinesBefore, r.GoroutinesAfter, lost, r.Changes, r.ChangesFailed)
	}
	var notes []string
	for _, r := range results {
		if r.Err != nil {
			notes = append(notes, fmt.Sprintf("- %s: error: %v", r.Name, r.Err))
		}
		for _, n := range r.Notes {
			notes = append(notes, fmt.Sprintf("- %s: %s", r.Name, n))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n\n" + strings.Join(notes, "\n") + "\n")
	}
	return b.String()
}
