package agent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/rest"

	"github.com/krm-project/krm/pkg/agent"
	krmclient "github.com/krm-project/krm/pkg/client"
	"github.com/krm-project/krm/pkg/server"
	"github.com/krm-project/krm/pkg/store"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// discoveryOnly forwards kube-apiserver's discovery requests and fails every
// other one with 503: an agent behind it completes, but none of its LISTs
// or watches lands, so what it serves comes from its store.
func discoveryOnly(b *testing.B, cfg *rest.Config) *rest.Config {
	b.Helper()
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	upstream, err := url.Parse(cfg.Host)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		discovery := (parts[0] == "api" && len(parts) <= 2) || (parts[0] == "apis" && len(parts) <= 3)
		if !discovery {
			http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"held by the benchmark","code":503}`, http.StatusServiceUnavailable)
			return
		}
		out := r.Clone(r.Context())
		out.RequestURI, out.Host = "", ""
		u := *upstream
		u.Path, u.RawQuery = r.URL.Path, r.URL.RawQuery
		out.URL = &u
		resp, err := rt.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	b.Cleanup(srv.Close)
	return &rest.Config{Host: srv.URL}
}

// BenchmarkWarmRestart is the time from an agent's start to its first
// answer with the 10,000 pods it finds in Redis: it reads the verified and
// the aggregated frame, loads them and serves, before any LIST (they are
// all held). One op is one restart; discovery (Complete) is not timed.
func BenchmarkWarmRestart(b *testing.B) {
	const pods = 10000
	c := clustertest.Get(b)
	restCfg, err := c.RESTConfig()
	if err != nil {
		b.Fatal(err)
	}
	held := discoveryOnly(b, restCfg)
	opts, err := redis.ParseURL(c.RedisURL)
	if err != nil {
		b.Fatal(err)
	}
	client := redis.NewClient(opts)
	cluster := "b-" + rand.String(8)
	b.Cleanup(func() {
		ctx := context.Background()
		iter := client.Scan(ctx, 0, "krm:{"+cluster+"/*", 1000).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
		client.Close()
	})
	st := store.NewRedis(client, store.RedisOptions{})
	pad := strings.Repeat("x", 1700)
	f := &store.Frame{Header: store.Header{Cluster: cluster, Resource: "pods", ResourceVersion: pods, VerifiedAt: time.Now()}}
	for i := range pods {
		f.Rows = append(f.Rows, &store.Row{
			UID: fmt.Sprintf("uid-%06d", i), Namespace: "bench", Name: fmt.Sprintf("pod-%06d", i), ResourceVersion: uint64(i + 1),
			Source: store.Verified, ObservedAt: time.Now(), Labels: map[string]string{"app": "bench"},
			Object: fmt.Appendf(nil, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"pod-%06d","namespace":"bench","uid":"uid-%06d","resourceVersion":"%d","annotations":{"pad":%q}}}`, i, i, i+1, pad),
		})
	}
	f.Header.Source = store.Verified
	agg := &store.Frame{Header: f.Header, Rows: f.Rows}
	agg.Header.Source = store.Aggregated
	if err := st.PutFrames(b.Context(), f, agg); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		b.StopTimer()
		reg := prometheus.NewRegistry()
		a, err := agent.Config{RESTConfig: held, Resources: []string{"pods"}, VerifyInterval: time.Hour,
			ClusterName: cluster, Store: st, Registry: reg, Logger: slog.New(slog.DiscardHandler)}.Complete()
		if err != nil {
			b.Fatal(err)
		}
		srv, ac, err := serve(a, reg, server.Options{})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(b.Context())
		done := make(chan error, 1)
		b.StartTimer()

		go func() { done <- a.Start(ctx) }()
		for {
			l, err := ac.List(ctx, "pods", krmclient.ListOptions{Limit: 1})
			if err == nil && l.RemainingItemCount != nil && int(*l.RemainingItemCount)+len(l.Items) == pods {
				break
			}
			time.Sleep(time.Millisecond)
		}

		b.StopTimer()
		cancel()
		<-done
		srv.Close()
		b.StartTimer()
	}
}
