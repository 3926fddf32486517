package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// redisEvents is how many pods the Redis phase changes once, to measure
// what an event costs in the stream.
const redisEvents = 1000

// redisBytes is what Redis holds for the run's pods: the frames after the
// agent's first LIST, then the event stream after redisEvents changes.
type redisBytes struct {
	objects int
	// json is the compact JSON of the pods the agent serves, summed.
	json int64
	// usedDelta is INFO memory's used_memory after the frames were
	// written less before the agent started; usage sums MEMORY USAGE and
	// payload the values' lengths (HSTRLEN, STRLEN) over krm's keys.
	usedDelta, usage, payload int64
	// historyUsage and historyPayload are the same over history's keys
	// (krm:{…}:history…), which usage and payload leave out.
	historyUsage, historyPayload int64
	// events is how many the stream held, eventUsage its MEMORY USAGE and
	// eventPayload the sum of its entries' row fields.
	events                   int64
	eventUsage, eventPayload int64
}

// measureRedis starts a redis-server of the run's own and a krm-agent with
// --store=redis on it, waits until the agent wrote its frames of every pod,
// and measures Redis; then changes redisEvents pods and measures the event
// stream. The agent and the server are stopped before it returns.
func (b *bench) measureRedis(ctx context.Context, bin, dir string) (_ *redisBytes, err error) {
	srv, addr, err := startRedisServer(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
	}()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	before, err := usedMemory(ctx, rdb)
	if err != nil {
		return nil, err
	}
	// A long verify interval: no LIST trims the stream while it is measured.
	if err := b.startAgent(ctx, bin, "--store", "redis", "--redis-url", "redis://"+addr+"/0", "--verify-interval", "1h"); err != nil {
		return nil, err
	}
	defer func() {
		if serr := b.stopAgent(); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	if err := b.waitAgentHasAll(ctx, 10*time.Minute); err != nil {
		return nil, err
	}
	if err := waitKey(ctx, rdb, "krm:*/pods}:verified"); err != nil {
		return nil, err
	}
	// Layout 1 wrote the aggregated frame after the verified one.
	time.Sleep(3 * time.Second)
	res := &redisBytes{objects: b.o.pods}
	if res.json, err = b.agentJSON(ctx); err != nil {
		return nil, err
	}
	after, err := usedMemory(ctx, rdb)
	if err != nil {
		return nil, err
	}
	res.usedDelta = after - before
	isHistory := func(k string) bool { return strings.Contains(k, "}:history") }
	if res.usage, res.payload, err = keyBytes(ctx, rdb, "krm:*", func(k string) bool { return !isHistory(k) }); err != nil {
		return nil, err
	}
	if res.historyUsage, res.historyPayload, err = keyBytes(ctx, rdb, "krm:*", isHistory); err != nil {
		return nil, err
	}

	progress(fmt.Sprintf("changing %d pods to measure the event stream in Redis", redisEvents))
	for i := range redisEvents {
		// A value of this measurement's own: a patch that changes
		// nothing makes no event.
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"krm.example/redis":"%s-%d"}}}`, addr, i)
		if _, err := b.CS.CoreV1().Pods(b.NS).Patch(ctx, fmt.Sprintf("bench-%05d", i%b.o.pods), types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return nil, err
		}
	}
	stream := ""
	deadline := time.Now().Add(2 * time.Minute)
	for {
		keys, err := rdb.Keys(ctx, "krm:*/pods}:events").Result()
		if err != nil {
			return nil, err
		}
		if len(keys) == 1 {
			stream = keys[0]
			if res.events, err = rdb.XLen(ctx, stream).Result(); err != nil {
				return nil, err
			}
			if res.events >= redisEvents {
				break
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the agent's event stream holds %d of the %d events after 2 minutes; the agent's log ends:\n%s", res.events, redisEvents, b.agent.Tail())
		}
		time.Sleep(500 * time.Millisecond)
	}
	if res.eventUsage, err = rdb.MemoryUsage(ctx, stream, 0).Result(); err != nil {
		return nil, err
	}
	msgs, err := rdb.XRange(ctx, stream, "-", "+").Result()
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		if row, ok := m.Values["row"].(string); ok {
			res.eventPayload += int64(len(row))
		}
	}
	return res, nil
}

// startRedisServer starts redis-server without persistence on a free port.
func startRedisServer(ctx context.Context, dir string) (*exec.Cmd, string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, "", fmt.Errorf("redis-server, for Redis's bytes per object: %w (the local cluster installs it; or pass -skip-redis)", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no", "--loglevel", "warning")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("starting redis-server: %w", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := rdb.Ping(ctx).Err(); err == nil {
			return cmd, addr, nil
		} else if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, "", fmt.Errorf("redis-server on %s does not answer: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func usedMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("INFO memory has no used_memory")
}

// waitKey waits until a key matches pattern.
func waitKey(ctx context.Context, rdb *redis.Client, pattern string) error {
	for deadline := time.Now().Add(2 * time.Minute); ; {
		keys, err := rdb.Keys(ctx, pattern).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no key %s in Redis after 2 minutes: the agent wrote no frame", pattern)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// keyBytes sums MEMORY USAGE and the values' lengths of the keys matching
// pattern that keep accepts: every field of a hash, a string's length; a
// stream's entries are counted by MEMORY USAGE alone.
func keyBytes(ctx context.Context, rdb *redis.Client, pattern string, keep func(string) bool) (usage, payload int64, err error) {
	keys, err := rdb.Keys(ctx, pattern).Result()
	if err != nil {
		return 0, 0, err
	}
	for _, k := range keys {
		if !keep(k) {
			continue
		}
		n, err := rdb.MemoryUsage(ctx, k, 0).Result()
		if err != nil {
			return 0, 0, err
		}
		usage += n
		switch typ, _ := rdb.Type(ctx, k).Result(); typ {
		case "hash":
			m, err := rdb.HGetAll(ctx, k).Result()
			if err != nil {
				return 0, 0, err
			}
			for f, v := range m {
				payload += int64(len(f) + len(v))
			}
		case "string":
			n, err := rdb.StrLen(ctx, k).Result()
			if err != nil {
				return 0, 0, err
			}
			payload += n
		}
	}
	return usage, payload, nil
}

// agentJSON is the summed compact JSON of the pods the agent serves.
func (b *bench) agentJSON(ctx context.Context) (int64, error) {
	u := b.agent.URL + "/api/v1/namespaces/" + url.PathEscape(b.NS) + "/pods"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return 0, fmt.Errorf("GET %s: %s: %s", u, resp.Status, body)
	}
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return 0, fmt.Errorf("decoding the agent's pods: %w", err)
	}
	var total int64
	var buf bytes.Buffer
	for _, it := range list.Items {
		buf.Reset()
		if err := json.Compact(&buf, it); err != nil {
			return 0, err
		}
		total += int64(buf.Len())
	}
	if len(list.Items) != b.o.pods {
		return 0, fmt.Errorf("the agent serves %d pods, want %d", len(list.Items), b.o.pods)
	}
	return total, nil
}

// markdown writes the table; with cmp (measured with the agent binary
// cmpBin on the same pods), its figures beside and the ratio.
func (r *redisBytes) markdown(p func(string, ...any), cmp *redisBytes, cmpBin string) {
	jsonPer := float64(r.json) / float64(r.objects)
	p("### Redis bytes per object\n\n")
	p("A redis-server of the run's own (no persistence) and a second krm-agent with `--store=redis --verify-interval 1h` on the same %d pods: the frames its first LIST wrote, then the event stream after %d pods were changed once. JSON is the pods' compact JSON as the agent serves them, %.0f bytes a pod.", r.objects, redisEvents, jsonPer)
	if cmp != nil {
		p(" Beside it, the same with `%s` (`-redis-compare`), in a redis-server of its own.", cmpBin)
	}
	p("\n\n")
	if cmp != nil {
		p("| what | per object | / compact JSON | %s: per object | / compact JSON | this / that |\n|---|---:|---:|---:|---:|---:|\n", cmpBin)
	} else {
		p("| what | total | per object | / compact JSON |\n|---|---:|---:|---:|\n")
	}
	row := func(what string, total, n, cmpTotal, cmpN int64) {
		per := float64(total) / float64(n)
		if cmp == nil {
			p("| %s | %s | %.0f B | %.2f× |\n", what, mib(total), per, per/jsonPer)
			return
		}
		cmpJSON := float64(cmp.json) / float64(cmp.objects)
		cper := float64(cmpTotal) / float64(cmpN)
		p("| %s | %.0f B | %.3f× | %.0f B | %.3f× | %.3f× |\n", what, per, per/jsonPer, cper, cper/cmpJSON, per/cper)
	}
	var c redisBytes
	if cmp != nil {
		c = *cmp
	}
	n, cn := int64(r.objects), max(int64(c.objects), 1)
	row("everything the agent wrote (frames, history): INFO used_memory, after less before the agent", r.usedDelta, n, c.usedDelta, cn)
	row("frames: MEMORY USAGE summed over krm's keys but history's", r.usage, n, c.usage, cn)
	row("frames: the values' bytes (HSTRLEN, STRLEN) over those keys", r.payload, n, c.payload, cn)
	row("history's base (each object's newest revision, compressed, and its entry): MEMORY USAGE", r.historyUsage, n, c.historyUsage, cn)
	row("history's base: the values' bytes", r.historyPayload, n, c.historyPayload, cn)
	if r.events > 0 {
		row(fmt.Sprintf("event stream, %d events: MEMORY USAGE", r.events), r.eventUsage, r.events, c.eventUsage, max(c.events, 1))
		row("event stream: the entries' row bytes", r.eventPayload, r.events, c.eventPayload, max(c.events, 1))
	}
	p("\n")
}
