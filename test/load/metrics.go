package load

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// metrics is one scrape of the agent's /metrics: each series, as
// `name{labels}`, with its value.
type metrics map[string]float64

func (r *run) scrape(ctx context.Context) (metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.metricsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping the agent's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping the agent's metrics: %s", resp.Status)
	}
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("the agent's metrics: %q: %w", line, err)
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// value is a series without labels.
func (m metrics) value(name string) float64 { return m[name] }

// sumWhere sums the series of name whose labels contain match.
func (m metrics) sumWhere(name, match string) float64 {
	var sum float64
	for k, v := range m {
		if rest, ok := strings.CutPrefix(k, name+"{"); ok && strings.Contains(rest, match) {
			sum += v
		}
	}
	return sum
}

// diff returns the growth of each series of name since before, by its
// labels, leaving out those that did not grow.
func (m metrics) diff(before metrics, name string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if labels, ok := strings.CutPrefix(k, name+"{"); ok {
			if d := v - before[k]; d > 0 {
				out["{"+labels] = d
			}
		}
	}
	return out
}

// Sample is the agent's goroutines and heap over a window: the least seen
// of each. The heap in use drops to the live heap at each garbage
// collection and grows with garbage between them; the agent collects
// at least once a verify interval (each verifying LIST allocates the
// whole list), so the least of one-second samples over a window of two
// verify intervals is the live heap plus at most about a second's
// garbage, without forcing a collection.
type Sample struct {
	Goroutines float64
	HeapAlloc  float64
	Samples    int
}

func (r *run) sampleWindow(ctx context.Context, window time.Duration) (Sample, error) {
	var s Sample
	end := time.Now().Add(window)
	for {
		m, err := r.scrape(ctx)
		if err != nil {
			return s, err
		}
		g, h := m.value("go_goroutines"), m.value("go_memstats_heap_alloc_bytes")
		if g == 0 || h == 0 {
			return s, fmt.Errorf("the agent's metrics have no go_goroutines or go_memstats_heap_alloc_bytes")
		}
		if s.Samples == 0 || g < s.Goroutines {
			s.Goroutines = g
		}
		if s.Samples == 0 || h < s.HeapAlloc {
			s.HeapAlloc = h
		}
		s.Samples++
		if time.Now().After(end) {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// Peak is the most seen of each while the clients ran.
type Peak struct {
	Goroutines, HeapAlloc, Watches float64
}

type sampler struct {
	mu   sync.Mutex
	peak Peak
	rss  []int64
}

// sample scrapes the agent every second until ctx ends.
func (r *run) sample(ctx context.Context, wg *sync.WaitGroup) *sampler {
	s := &sampler{}
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			m, err := r.scrape(ctx)
			if err != nil {
				continue // ctx ended, or the agent is too busy to answer in time: the next one counts
			}
			rss, _ := r.agent.RSS()
			s.mu.Lock()
			s.peak.Goroutines = max(s.peak.Goroutines, m.value("go_goroutines"))
			s.peak.HeapAlloc = max(s.peak.HeapAlloc, m.value("go_memstats_heap_alloc_bytes"))
			s.peak.Watches = max(s.peak.Watches, m.value("krm_watches"))
			if rss > 0 {
				s.rss = append(s.rss, rss)
			}
			s.mu.Unlock()
		}
	})
	return s
}

// medianRSS is the agent's median RSS while the clients ran: its steady
// state under load, where the peak is its worst moment.
func (s *sampler) medianRSS() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rss) == 0 {
		return 0
	}
	v := slices.Clone(s.rss)
	slices.Sort(v)
	return v[len(v)/2]
}
