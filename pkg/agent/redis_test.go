package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/krm-project/krm/pkg/agent"
	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/server"
	"github.com/krm-project/krm/pkg/store"
	"github.com/krm-project/krm/test/cluster/clustertest"
	"github.com/krm-project/krm/test/watchproxy"
)

// redisStore returns a store on the Redis at url. Every key under cluster
// is deleted when the test ends.
func redisStore(t *testing.T, url, cluster string) (*store.Redis, redis.UniversalClient) {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	// A killed server must fail calls fast, not after go-redis's default
	// retries.
	opts.MaxRetries, opts.DialTimeout = 1, time.Second
	client := redis.NewClient(opts)
	t.Cleanup(func() {
		ctx := context.Background()
		iter := client.Scan(ctx, 0, "krm:{"+cluster+"/*", 1000).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
		client.Close()
	})
	return store.NewRedis(client, store.RedisOptions{}), client
}

// logBuffer keeps what an agent logs, for tests that check a log line.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// storeAgent is an agent with a Redis store, served over HTTP, that a test
// may stop and replace by another on the same store.
type storeAgent struct {
	*agent.Agent
	client agentClient
	url    string
	reg    *prometheus.Registry
	logs   *logBuffer
	// start runs the agent in the background; stop ends it and waits.
	start, stop func()
	// exited closes when the agent's Start returns, with runErr. A test
	// that expects the error clears runErr, so stop does not report it.
	exited chan struct{}
	runErr error
}

// completeStoreAgent completes cfg as startAgent does, but keeps the
// cluster name cfg gives: a restarted agent must find its frames.
func completeStoreAgent(t *testing.T, cfg agent.Config) *storeAgent {
	t.Helper()
	sa := &storeAgent{reg: prometheus.NewRegistry(), logs: &logBuffer{}, exited: make(chan struct{})}
	cfg.Registry = sa.reg
	cfg.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), sa.logs), &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := cfg.Complete()
	if err != nil {
		t.Fatalf("completing the agent's configuration: %v", err)
	}
	sa.Agent = a
	srv, ac, err := serve(a, sa.reg, server.Options{Logger: cfg.Logger})
	if err != nil {
		t.Fatal(err)
	}
	sa.url, sa.client = srv.URL, ac
	ctx, cancel := context.WithCancel(t.Context())
	var once sync.Once
	started := false
	sa.stop = func() {
		once.Do(func() {
			srv.Close()
			cancel()
			if !started {
				return
			}
			select {
			case <-sa.exited:
				if sa.runErr != nil {
					t.Errorf("agent: %v", sa.runErr)
				}
			case <-time.After(30 * time.Second):
				t.Error("the agent did not stop within 30s of its context's end")
			}
		})
	}
	t.Cleanup(sa.stop)
	sa.start = func() {
		started = true
		go func() {
			sa.runErr = a.Start(ctx)
			close(sa.exited)
		}()
	}
	return sa
}

// readyz returns /readyz's status and sentence.
func (sa *storeAgent) readyz(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Get(sa.url + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func (sa *storeAgent) storeStatus(t *testing.T) api.StoreStatus {
	t.Helper()
	l, err := sa.client.Resources(t.Context())
	if err != nil {
		t.Fatalf("reading the agent's status: %v", err)
	}
	return l.Store
}

// gaugeValue is the value of an unlabelled gauge; -1 when it is missing.
func gaugeValue(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// frameVersions is a stored frame's rows as servedVersions gives a view's.
func frameVersions(f *store.Frame) map[string]objectVersion {
	out := map[string]objectVersion{}
	for _, r := range f.Rows {
		out[r.UID] = objectVersion{Name: r.Name, ResourceVersion: store.FormatResourceVersion(r.ResourceVersion)}
	}
	return out
}

func createConfigMaps(t *testing.T, w *configMapWriter, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := w.create(t.Context(), n); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRedisWarmRestart stops an agent and starts another on the same Redis
// whose LISTs all fail, as when kube-apiserver is overloaded: it must serve
// the first agent's last state at once, marked stale (status, X-Krm-Stale,
// /readyz), including the events streamed after the stored frame; and be
// fresh once its LIST lands.
func TestRedisWarmRestart(t *testing.T) {
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	restCfg, cs, ri := configMapClients(t, c, ns)
	cluster := "t-" + rand.String(8)
	st, _ := redisStore(t, c.RedisURL, cluster)
	w := newConfigMapWriter(cs, ns)
	createConfigMaps(t, w, "cm-0", "cm-1", "cm-2", "cm-3")

	// No second LIST: after the first, only the event stream carries
	// changes to Redis.
	cfg := agent.Config{RESTConfig: restCfg, Resources: []string{"configmaps"}, Namespace: ns,
		VerifyInterval: time.Hour, ClusterName: cluster, Store: st}
	first := completeStoreAgent(t, cfg)
	first.start()
	eventually(t, 30*time.Second, "the first agent to be ready", func(ctx context.Context) (string, error) {
		if err := first.client.Readyz(ctx); err != nil {
			return err.Error(), nil
		}
		return "", nil
	})
	var stored *store.Frame
	eventually(t, 10*time.Second, "the first agent's frames in Redis", func(ctx context.Context) (string, error) {
		var err error
		if stored, err = st.GetFrame(ctx, cluster, "configmaps", store.Verified); err != nil {
			return err.Error(), nil
		}
		return "", nil
	})
	createConfigMaps(t, w, "cm-4")
	if err := w.update(t.Context(), "cm-1"); err != nil {
		t.Fatal(err)
	}
	if err := w.remove(t.Context(), "cm-2"); err != nil {
		t.Fatal(err)
	}
	waitMatchesList(t, 30*time.Second, first.client, "configmaps", ri, "", "aggregated")
	eventually(t, 10*time.Second, "the three events in Redis", func(ctx context.Context) (string, error) {
		evs, err := st.Events(ctx, cluster, "configmaps", stored.Header.ResourceVersion, 100)
		if err != nil {
			return "", err
		}
		if len(evs) < 3 {
			return fmt.Sprintf("%d events stored", len(evs)), nil
		}
		return "", nil
	})
	before, _, err := servedVersions(t.Context(), first.client, "configmaps", "aggregated")
	if err != nil {
		t.Fatal(err)
	}
	verifiedBefore, _, err := servedVersions(t.Context(), first.client, "configmaps", "verified")
	if err != nil {
		t.Fatal(err)
	}
	first.stop()

	proxy := watchproxy.New(t, restCfg, nil)
	cfg.RESTConfig = proxy.RESTConfig()
	second := completeStoreAgent(t, cfg) // discovery goes through
	proxy.FailLists(1 << 30)
	started := time.Now()
	second.start()
	eventually(t, 2*time.Second, "the restarted agent to be ready", func(ctx context.Context) (string, error) {
		if err := second.client.Readyz(ctx); err != nil {
			return err.Error(), nil
		}
		return "", nil
	})
	t.Logf("the restarted agent answered %s after its start, before any LIST", time.Since(started).Round(time.Millisecond))

	got, list, err := servedVersions(t.Context(), second.client, "configmaps", "aggregated")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, got); diff != "" {
		t.Errorf("the restarted agent's aggregated view (-the first agent's +the restarted one's):\n%s", diff)
	}
	if !list.Freshness.Stale {
		t.Error("the stale list has no X-Krm-Stale header")
	}
	if got, _, _ := servedVersions(t.Context(), second.client, "configmaps", "verified"); !cmp.Equal(verifiedBefore, got) {
		t.Errorf("the restarted agent's verified view (-the first agent's +the restarted one's):\n%s", cmp.Diff(verifiedBefore, got))
	}
	if st := resourceStatus(t, second.client, "configmaps"); !st.Stale || st.Verifications != 0 || st.Events != 0 {
		t.Errorf("status while serving stored frames: stale %v, %d verifications, %d events; want stale, none, none",
			st.Stale, st.Verifications, st.Events)
	}
	if code, why := second.readyz(t); code != http.StatusOK || !strings.Contains(why, "serving stored frames of configmaps (stale)") {
		t.Errorf("/readyz while stale: %d %q, want 200 saying it serves stale frames", code, why)
	}

	// A change the restarted agent cannot see until its LIST lands.
	createConfigMaps(t, w, "cm-5")
	proxy.FailLists(0)
	waitMatchesList(t, 30*time.Second, second.client, "configmaps", ri, "", "aggregated", "verified")
	if st := resourceStatus(t, second.client, "configmaps"); st.Stale {
		t.Error("status still stale after the first LIST")
	}
	_, list, err = servedVersions(t.Context(), second.client, "configmaps", "aggregated")
	if err != nil {
		t.Fatal(err)
	}
	if list.Freshness.Stale {
		t.Error("X-Krm-Stale is still set after the first LIST")
	}
	if code, why := second.readyz(t); code != http.StatusOK || why != "ok" {
		t.Errorf("/readyz after the first LIST: %d %q, want 200 ok", code, why)
	}
}

// TestRedisKilledAndRestarted kills the agent's Redis mid-run and starts it
// again, empty: the agent keeps serving everything from memory meanwhile,
// says it is degraded (status, /readyz, krm_store_healthy) and, once Redis
// is back, writes its current frames again, changes made during the outage
// included, and appends events again.
func TestRedisKilledAndRestarted(t *testing.T) {
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	restCfg, cs, ri := configMapClients(t, c, ns)
	srv := clustertest.StartRedis(t)
	cluster := "t-" + rand.String(8)
	st, _ := redisStore(t, srv.URL(), cluster)
	w := newConfigMapWriter(cs, ns)
	createConfigMaps(t, w, "cm-0", "cm-1")

	// No LIST after the first: what reaches the restarted Redis is the
	// agent writing its frames again.
	a := completeStoreAgent(t, agent.Config{RESTConfig: restCfg, Resources: []string{"configmaps"}, Namespace: ns,
		VerifyInterval: time.Hour, ClusterName: cluster, Store: st})
	a.start()
	eventually(t, 30*time.Second, "the agent to be ready", func(ctx context.Context) (string, error) {
		if err := a.client.Readyz(ctx); err != nil {
			return err.Error(), nil
		}
		return "", nil
	})
	if s := a.storeStatus(t); s != (api.StoreStatus{Kind: "redis", Healthy: true}) {
		t.Fatalf("store status before the outage: %+v", s)
	}
	if got := gaugeValue(t, a.reg, "krm_store_healthy"); got != 1 {
		t.Errorf("krm_store_healthy = %v before the outage, want 1", got)
	}

	srv.Kill()
	createConfigMaps(t, w, "cm-2")
	if err := w.update(t.Context(), "cm-0"); err != nil {
		t.Fatal(err)
	}
	if err := w.remove(t.Context(), "cm-1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the agent to say its store is degraded", func(ctx context.Context) (string, error) {
		if s := a.storeStatus(t); s.Healthy || s.Message == "" || s.Kind != "redis" {
			return fmt.Sprintf("store status %+v", s), nil
		}
		return "", nil
	})
	if got := gaugeValue(t, a.reg, "krm_store_healthy"); got != 0 {
		t.Errorf("krm_store_healthy = %v while Redis is down, want 0", got)
	}
	if code, why := a.readyz(t); code != http.StatusOK || !strings.Contains(why, "store redis degraded") {
		t.Errorf("/readyz while Redis is down: %d %q, want 200 saying the store is degraded", code, why)
	}
	// Serving goes on from memory, changes during the outage included.
	waitMatchesList(t, 30*time.Second, a.client, "configmaps", ri, "", "aggregated")
	if dropped := counterValue(t, a.reg, "krm_store_events_dropped_total", map[string]string{"resource": "configmaps"}); dropped < 1 {
		t.Errorf("krm_store_events_dropped_total = %v after events during the outage, want them counted", dropped)
	}

	srv.Start()
	eventually(t, 60*time.Second, "the agent to say its store is healthy again", func(ctx context.Context) (string, error) {
		if s := a.storeStatus(t); !s.Healthy {
			return fmt.Sprintf("store status %+v", s), nil
		}
		return "", nil
	})
	if got := gaugeValue(t, a.reg, "krm_store_healthy"); got != 1 {
		t.Errorf("krm_store_healthy = %v after Redis returned, want 1", got)
	}
	if code, why := a.readyz(t); code != http.StatusOK || why != "ok" {
		t.Errorf("/readyz after Redis returned: %d %q, want 200 ok", code, why)
	}
	// The restarted Redis was empty: what it holds now, the agent wrote
	// again, and nothing of the outage is missing.
	for _, view := range []store.Source{store.Aggregated, store.Verified} {
		f, err := st.GetFrame(t.Context(), cluster, "configmaps", view)
		if err != nil {
			t.Fatalf("the %s frame after Redis returned: %v", view, err)
		}
		served, _, err := servedVersions(t.Context(), a.client, "configmaps", string(view))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(served, frameVersions(f)); diff != "" {
			t.Errorf("the %s frame written again (-served +stored):\n%s", view, diff)
		}
	}
	want, err := listVersions(t.Context(), ri, "")
	if err != nil {
		t.Fatal(err)
	}
	f, _ := st.GetFrame(t.Context(), cluster, "configmaps", store.Aggregated)
	if diff := cmp.Diff(want, frameVersions(f)); diff != "" {
		t.Errorf("the aggregated frame in Redis against kube-apiserver (-listed +stored):\n%s", diff)
	}
	for _, name := range []string{"cm-0", "cm-2"} {
		if got := frameVersions(f)[w.log.uid[name]]; got.ResourceVersion != w.log.at(name, -1) {
			t.Errorf("%s is stored at resourceVersion %q, its last write during the outage made %s", name, got.ResourceVersion, w.log.at(name, -1))
		}
	}

	// Events flow to Redis again.
	createConfigMaps(t, w, "cm-3")
	eventually(t, 10*time.Second, "the event of cm-3 in Redis", func(ctx context.Context) (string, error) {
		evs, err := st.Events(ctx, cluster, "configmaps", 0, 100)
		if err != nil {
			return "", err
		}
		for _, ev := range evs {
			if ev.Row.Name == "cm-3" && ev.Type == "ADDED" {
				return "", nil
			}
		}
		return fmt.Sprintf("%d events stored, none adds cm-3", len(evs)), nil
	})
}

// TestRedisCorruptFrameIsRebuilt: a stored frame that does not read back is
// logged with its key, counted and discarded; the agent starts cold and its
// first LIST writes a good frame over it. Chunks are compressed: a chunk
// that is not zstd at all and a compressed one with a byte flipped are both
// corrupt.
func TestRedisCorruptFrameIsRebuilt(t *testing.T) {
	for name, corrupt := range map[string]func(chunk string) string{
		"not a chunk": func(string) string { return "not a chunk" },
		"a compressed chunk with a byte flipped": func(chunk string) string {
			b := []byte(chunk)
			b[len(b)/2] ^= 0xff
			return string(b)
		},
	} {
		t.Run(name, func(t *testing.T) { corruptFrameIsRebuilt(t, corrupt) })
	}
}

func corruptFrameIsRebuilt(t *testing.T, corrupt func(chunk string) string) {
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	restCfg, cs, ri := configMapClients(t, c, ns)
	cluster := "t-" + rand.String(8)
	st, rdb := redisStore(t, c.RedisURL, cluster)
	createConfigMaps(t, newConfigMapWriter(cs, ns), "cm-0")
	bad := &store.Frame{Header: store.Header{Cluster: cluster, Resource: "configmaps", Source: store.Verified, ResourceVersion: 1}}
	bad.Rows = []*store.Row{{UID: "u", Name: "ghost", ResourceVersion: 1, Object: []byte(`{"kind":"ConfigMap","metadata":{"name":"ghost"},"data":{"a":"some data to compress"}}`)}}
	if err := st.PutFrame(t.Context(), bad); err != nil {
		t.Fatal(err)
	}
	head := store.HeadKey(cluster, "configmaps", store.Verified)
	genKey := head + ":" + rdb.HGet(t.Context(), head, "gen").Val()
	rdb.HSet(t.Context(), genKey, "0", corrupt(rdb.HGet(t.Context(), genKey, "0").Val()))

	a := completeStoreAgent(t, agent.Config{RESTConfig: restCfg, Resources: []string{"configmaps"}, Namespace: ns,
		VerifyInterval: time.Hour, ClusterName: cluster, Store: st})
	a.start()
	waitMatchesList(t, 30*time.Second, a.client, "configmaps", ri, "", "aggregated", "verified")
	if logs := a.logs.String(); !strings.Contains(logs, "discarding a stored frame") || !strings.Contains(logs, genKey) {
		t.Errorf("the agent's log does not say it discarded %s:\n%s", genKey, logs)
	}
	if n := counterValue(t, a.reg, "krm_store_frames_unreadable_total", map[string]string{"reason": "corrupt"}); n != 1 {
		t.Errorf("krm_store_frames_unreadable_total{reason=corrupt} = %v, want 1", n)
	}
	if st := resourceStatus(t, a.client, "configmaps"); st.Stale {
		t.Error("an agent that discarded its stored frame says it serves a stale one")
	}
	eventually(t, 10*time.Second, "a good frame in Redis", func(ctx context.Context) (string, error) {
		f, err := st.GetFrame(ctx, cluster, "configmaps", store.Verified)
		if err != nil {
			return err.Error(), nil
		}
		served, _, err := servedVersions(ctx, a.client, "configmaps", "verified")
		if err != nil {
			return "", err
		}
		return cmp.Diff(served, frameVersions(f)), nil
	})
}

// TestRedisStartsWhileAPIServerIsDown: an agent started while kube-apiserver
// does not answer at all takes the resources the last run discovered from
// Redis, serves the frames stored there (stale) instead of exiting, and
// lists once the API server is back. Before, discovery ran first and the
// agent exited: in a pod, a crash loop.
func TestRedisStartsWhileAPIServerIsDown(t *testing.T) {
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	restCfg, cs, ri := configMapClients(t, c, ns)
	cluster := "t-" + rand.String(8)
	st, _ := redisStore(t, c.RedisURL, cluster)
	w := newConfigMapWriter(cs, ns)
	createConfigMaps(t, w, "cm-0", "cm-1")

	cfg := agent.Config{RESTConfig: restCfg, Resources: []string{"configmaps"}, Namespace: ns,
		VerifyInterval: time.Hour, ClusterName: cluster, Store: st}
	first := completeStoreAgent(t, cfg)
	first.start()
	waitMatchesList(t, 30*time.Second, first.client, "configmaps", ri, "", "aggregated")
	eventually(t, 10*time.Second, "the first agent's frames in Redis", func(ctx context.Context) (string, error) {
		if _, err := st.GetFrame(ctx, cluster, "configmaps", store.Verified); err != nil {
			return err.Error(), nil
		}
		return "", nil
	})
	before, _, err := servedVersions(t.Context(), first.client, "configmaps", "aggregated")
	if err != nil {
		t.Fatal(err)
	}
	first.stop()

	// An API server that refuses every connection, then answers again.
	proxy := watchproxy.New(t, restCfg, nil)
	proxy.Refuse(true)
	cfg.RESTConfig = proxy.RESTConfig()
	second := completeStoreAgent(t, cfg)
	if !strings.Contains(second.logs.String(), "the API server does not answer: starting from the resources the last run discovered") {
		t.Errorf("no log line says the agent starts from the stored discovery:\n%s", second.logs.String())
	}
	second.start()
	eventually(t, 5*time.Second, "the agent started offline to be ready", func(ctx context.Context) (string, error) {
		if err := second.client.Readyz(ctx); err != nil {
			return err.Error(), nil
		}
		return "", nil
	})
	got, list, err := servedVersions(t.Context(), second.client, "configmaps", "aggregated")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, got); diff != "" || !list.Freshness.Stale {
		t.Errorf("served offline (stale %v; -before +offline):\n%s", list.Freshness.Stale, diff)
	}
	proxy.Refuse(false)
	createConfigMaps(t, w, "cm-2")
	waitMatchesList(t, 60*time.Second, second.client, "configmaps", ri, "", "aggregated", "verified")

	// Without a stored discovery there is nothing to start from: an error
	// that says both.
	cfg.ClusterName = "t-" + rand.String(8)
	cfg.Store, _ = redisStore(t, c.RedisURL, cfg.ClusterName)
	proxy.Refuse(true)
	if _, err := cfg.Complete(); err == nil || !strings.Contains(err.Error(), "no stored discovery to start from") {
		t.Errorf("offline with an empty store: %v, want an error saying there is no stored discovery", err)
	}
}
