package benchenv

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/krm-project/krm/test/cluster"
)

// Machine describes this machine for a report: CPUs, their model, memory,
// platform and Go version.
func Machine() string {
	model, mem := "unknown", "unknown"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb int64
				if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err == nil {
					mem = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
				}
			}
		}
	}
	return fmt.Sprintf("%d × %s, %s RAM, %s/%s; %s", runtime.NumCPU(), model, mem, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

// CommandLine is how the report says it was made: the command, and the make
// target when make ran it.
func CommandLine(target string) string {
	cmd := strings.Join(os.Args, " ")
	if os.Getenv("MAKELEVEL") != "" {
		cmd = "make " + target + "  # ran: " + cmd
	}
	return cmd
}

// ServerVersion is kube-apiserver's version, "unknown" when it does not say.
func ServerVersion(s *cluster.State) string {
	cs, err := s.Clientset()
	if err != nil {
		return "unknown"
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		return "unknown"
	}
	return v.GitVersion
}
