package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/krm-project/krm/test/benchenv"
)

// verifierVerifications is how many verifications of each kind are
// measured; verifierInterval is the agents' interval meanwhile.
const (
	verifierVerifications = 3
	verifierInterval      = 10 * time.Second
)

// verifierCost is what one way of verifying cost, medians over
// verifierVerifications verifications of the same pods.
type verifierCost struct {
	mode string
	// took is the verification's duration (krm_list_duration_seconds).
	took time.Duration
	// apiserverCPU is kube-apiserver's CPU time (user + system) over the
	// verification's span (sampled every 20 ms); other clients' requests
	// of that time add to it.
	apiserverCPU time.Duration
	// apiserverPeak is kube-apiserver's peak RSS during the verification
	// above its RSS before it; agentPeak the same for the agent.
	apiserverPeak, agentPeak int64
	runs                     int
}

// compareVerifiers runs an agent verifying with paginated LISTs, then one
// verifying with WatchList, on the bench's pods, and measures what each
// verification costs kube-apiserver and the agent (issue 15: keep WatchList
// where it costs both less).
func (b *bench) compareVerifiers(ctx context.Context, bin string) ([]verifierCost, error) {
	apiserver := -1
	for _, p := range b.S.Processes {
		if p.Name == "kube-apiserver" {
			apiserver = p.PID
		}
	}
	if apiserver < 0 {
		return nil, errors.New("the cluster state names no kube-apiserver process")
	}
	var out []verifierCost
	for _, mode := range []string{"list", "watchlist"} {
		progress(fmt.Sprintf("measuring %d verifications with --verify-with=%s", verifierVerifications, mode))
		if err := b.startAgent(ctx, bin, "--verify-with", mode, "--verify-interval", verifierInterval.String()); err != nil {
			return nil, err
		}
		c, err := b.measureVerifications(ctx, mode, apiserver)
		stopErr := b.stopAgent()
		if err != nil {
			return nil, err
		}
		if stopErr != nil {
			return nil, stopErr
		}
		out = append(out, c)
	}
	return out, nil
}

func (b *bench) measureVerifications(ctx context.Context, mode string, apiserver int) (verifierCost, error) {
	if err := b.WaitAgentHasAll(ctx, b.agent, 5*time.Minute); err != nil {
		return verifierCost{}, err
	}
	agentPID := b.agent.Pid()
	var took, cpu []time.Duration
	var apiPeak, agentPeak []int64
	for range verifierVerifications {
		before, err := b.agentListSeconds(ctx)
		if err != nil {
			return verifierCost{}, err
		}
		apiRSS, err := benchenv.ProcStatus(apiserver, "VmRSS")
		if err != nil {
			return verifierCost{}, err
		}
		agRSS, err := benchenv.ProcStatus(agentPID, "VmRSS")
		if err != nil {
			return verifierCost{}, err
		}
		for _, pid := range []int{apiserver, agentPID} {
			if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
				return verifierCost{}, fmt.Errorf("resetting the peak RSS of pid %d: %w", pid, err)
			}
		}
		// kube-apiserver's CPU time is sampled every 20 ms while waiting, so
		// that only the verification's span is counted: it ends when the
		// agent counts it and began its duration before.
		type sample struct {
			at  time.Time
			cpu time.Duration
		}
		var samples []sample
		deadline := time.Now().Add(3 * verifierInterval)
		var after listSeconds
		for {
			c, err := procCPU(apiserver)
			if err != nil {
				return verifierCost{}, err
			}
			samples = append(samples, sample{time.Now(), c})
			if after, err = b.agentListSeconds(ctx); err != nil {
				return verifierCost{}, err
			}
			if after.count > before.count {
				break
			}
			if time.Now().After(deadline) {
				return verifierCost{}, fmt.Errorf("--verify-with=%s: no verification within %s", mode, 3*verifierInterval)
			}
			select {
			case <-ctx.Done():
				return verifierCost{}, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
		d := time.Duration((after.sum - before.sum) / float64(after.count-before.count) * float64(time.Second))
		end := samples[len(samples)-1]
		start := samples[0]
		for _, smp := range samples {
			if smp.at.After(end.at.Add(-d - 20*time.Millisecond)) {
				break
			}
			start = smp
		}
		apiHWM, err := benchenv.ProcStatus(apiserver, "VmHWM")
		if err != nil {
			return verifierCost{}, err
		}
		agHWM, err := benchenv.ProcStatus(agentPID, "VmHWM")
		if err != nil {
			return verifierCost{}, err
		}
		took = append(took, d)
		cpu = append(cpu, end.cpu-start.cpu)
		apiPeak = append(apiPeak, max(0, apiHWM-apiRSS))
		agentPeak = append(agentPeak, max(0, agHWM-agRSS))
	}
	return verifierCost{mode: mode, took: medianOf(took), apiserverCPU: medianOf(cpu),
		apiserverPeak: medianOf(apiPeak), agentPeak: medianOf(agentPeak), runs: verifierVerifications}, nil
}

// listSeconds is the agent's krm_list_duration_seconds for pods.
type listSeconds struct {
	sum   float64
	count int64
}

func (b *bench) agentListSeconds(ctx context.Context) (listSeconds, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.agent.URL+"/metrics", nil)
	if err != nil {
		return listSeconds{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return listSeconds{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return listSeconds{}, fmt.Errorf("the agent's /metrics: %s %v", resp.Status, err)
	}
	var l listSeconds
	for line := range strings.SplitSeq(string(body), "\n") {
		if !strings.Contains(line, `resource="pods"`) {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		switch {
		case strings.HasPrefix(line, "krm_list_duration_seconds_sum"):
			l.sum, err = strconv.ParseFloat(f[1], 64)
		case strings.HasPrefix(line, "krm_list_duration_seconds_count"):
			l.count, err = strconv.ParseInt(f[1], 10, 64)
		}
		if err != nil {
			return listSeconds{}, fmt.Errorf("the agent's metrics: %q: %w", line, err)
		}
	}
	return l, nil
}

// procCPU is a process's user + system CPU time, from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command (which may hold spaces) start after ')'.
	i := strings.LastIndexByte(string(data), ')')
	f := strings.Fields(string(data)[i+1:])
	// utime and stime are fields 14 and 15 of stat, 12 and 13 here.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat has %d fields after the command", pid, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	// USER_HZ is 100 on Linux.
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

func medianOf[T int64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
