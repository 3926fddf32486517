package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
)

const secret = "s3cr3t-pa55"

func validOptions(store string, r RedisOptions) *Options {
	return &Options{Resources: []string{"pods"}, VerifyInterval: time.Minute, Listen: "127.0.0.1:8080", Store: store,
		LogFormat: "text", LogLevel: "info", Redis: r}
}

func TestValidateStore(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store string
		redis RedisOptions
		err   string
	}{
		{"memory", "memory", RedisOptions{}, ""},
		{"redis url", "redis", RedisOptions{URL: "redis://127.0.0.1:6379/2"}, ""},
		{"rediss url with a password", "redis", RedisOptions{URL: "rediss://:" + secret + "@redis.example:6380/0"}, ""},
		{"cluster", "redis", RedisOptions{Addrs: []string{"a:7000", "b:7001", "c:7002"}}, ""},
		{"sentinel", "redis", RedisOptions{Addrs: []string{"a:26379", "b:26379"}, SentinelMaster: "mymaster", DB: 3}, ""},
		{"unknown store", "etcd", RedisOptions{}, `--store "etcd" is not supported: use memory or redis`},
		{"redis flags without redis", "memory", RedisOptions{URL: "redis://x:6379"}, "the --redis-* flags need --store=redis"},
		{"redis without a server", "redis", RedisOptions{}, "--store=redis needs --redis-url, or --redis-addrs"},
		{"both", "redis", RedisOptions{URL: "redis://x:6379", Addrs: []string{"a:1"}}, "--redis-url and --redis-addrs exclude each other"},
		{"sentinel with its own password", "redis", RedisOptions{Addrs: []string{"a:26379"}, SentinelMaster: "m", SentinelPassword: secret}, ""},
		{"sentinel password without sentinel", "redis", RedisOptions{Addrs: []string{"a:7000"}, SentinelPassword: secret}, "--redis-sentinel-password goes with --redis-sentinel-master"},
		{"sentinel without addrs", "redis", RedisOptions{URL: "redis://x:6379", SentinelMaster: "m"}, "--redis-sentinel-master needs the Sentinels' addresses in --redis-addrs"},
		{"db on a cluster", "redis", RedisOptions{Addrs: []string{"a:1"}, DB: 2}, "a Redis Cluster has only database 0"},
		{"db with a url", "redis", RedisOptions{URL: "redis://x:6379", DB: 2}, "--redis-db and --redis-tls go with --redis-addrs"},
		{"addr without a port", "redis", RedisOptions{Addrs: []string{"redis.example"}}, `--redis-addrs "redis.example": want host:port`},
		{"wrong scheme", "redis", RedisOptions{URL: "http://x:6379"}, "--redis-url http://x:6379: redis: invalid URL scheme: http"},
		{"bad db keeps the password out", "redis", RedisOptions{URL: "redis://:" + secret + "@x:6379/abc"}, "--redis-url redis://:xxxxx@x:6379/abc: redis: invalid database number"},
		{"stream bytes", "redis", RedisOptions{URL: "redis://x:6379", StreamBytes: "64Mi"}, ""},
		{"stream bytes not a size", "redis", RedisOptions{URL: "redis://x:6379", StreamBytes: "lots"}, `--redis-stream-bytes "lots": want a size such as 32Mi`},
		{"stream bytes too few", "redis", RedisOptions{URL: "redis://x:6379", StreamBytes: "32"}, `--redis-stream-bytes "32": want at least 1Mi`},
		{"stream bytes without redis", "memory", RedisOptions{StreamBytes: "64Mi"}, "the --redis-* flags need --store=redis"},
		{"not a url keeps the password out", "redis", RedisOptions{URL: "redis://:" + secret + "@x:port/0"}, "--redis-url is not a URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validOptions(tc.store, tc.redis).Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("Validate = %v, want an error with %q", err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

func TestRedisUniversalOptions(t *testing.T) {
	env := func(password string) func(string) string {
		return func(name string) string {
			switch name {
			case redisPasswordEnv:
				return password
			case redisSentinelPasswordEnv:
				return "sentinel-from-env"
			}
			return ""
		}
	}
	type got struct {
		Addrs              []string
		DB                 int
		Username, Password string
		MasterName         string
		SentinelPassword   string
		IsClusterMode, TLS bool
		Client             string
	}
	for _, tc := range []struct {
		name   string
		opts   RedisOptions
		getenv func(string) string
		want   got
		client string
	}{
		{"url", RedisOptions{URL: "redis://127.0.0.1:6379/2"}, env(""),
			got{Addrs: []string{"127.0.0.1:6379"}, DB: 2}, "*redis.Client"},
		{"url password", RedisOptions{URL: "redis://:" + secret + "@h:1/0"}, env(""),
			got{Addrs: []string{"h:1"}, Password: secret}, "*redis.Client"},
		{"the environment beats the url", RedisOptions{URL: "redis://:url@h:1/0"}, env("from-env"),
			got{Addrs: []string{"h:1"}, Password: "from-env"}, "*redis.Client"},
		{"the flag beats the environment", RedisOptions{URL: "redis://user:url@h:1/0", Password: "flag"}, env("from-env"),
			got{Addrs: []string{"h:1"}, Username: "user", Password: "flag"}, "*redis.Client"},
		{"rediss", RedisOptions{URL: "rediss://h:1/0"}, env(""),
			got{Addrs: []string{"h:1"}, TLS: true}, "*redis.Client"},
		{"one seed is still a cluster", RedisOptions{Addrs: []string{"a:7000"}}, env(secret),
			got{Addrs: []string{"a:7000"}, Password: secret, IsClusterMode: true}, "*redis.ClusterClient"},
		{"cluster", RedisOptions{Addrs: []string{"a:7000", "b:7001"}, TLS: true}, env(""),
			got{Addrs: []string{"a:7000", "b:7001"}, IsClusterMode: true, TLS: true}, "*redis.ClusterClient"},
		{"sentinel", RedisOptions{Addrs: []string{"a:26379"}, SentinelMaster: "mymaster", DB: 1}, env(""),
			got{Addrs: []string{"a:26379"}, DB: 1, MasterName: "mymaster", SentinelPassword: "sentinel-from-env"}, "*redis.Client"},
		{"the sentinel password flag beats the environment", RedisOptions{Addrs: []string{"a:26379"}, SentinelMaster: "m", SentinelPassword: "flag"}, env(secret),
			got{Addrs: []string{"a:26379"}, MasterName: "m", Password: secret, SentinelPassword: "flag"}, "*redis.Client"},
		{"no sentinel password for a cluster", RedisOptions{Addrs: []string{"a:7000"}}, env(""),
			got{Addrs: []string{"a:7000"}, IsClusterMode: true}, "*redis.ClusterClient"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := tc.opts.universal(tc.getenv)
			if err != nil {
				t.Fatal(err)
			}
			g := got{Addrs: u.Addrs, DB: u.DB, Username: u.Username, Password: u.Password, MasterName: u.MasterName, SentinelPassword: u.SentinelPassword,
				IsClusterMode: u.IsClusterMode, TLS: u.TLSConfig != nil, Client: u.ClientName}
			tc.want.Client = "krm-agent"
			if diff := cmp.Diff(tc.want, g); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
			c := redis.NewUniversalClient(u)
			defer c.Close()
			if got := typeName(c); got != tc.client {
				t.Errorf("client is %s, want %s", got, tc.client)
			}
		})
	}
}

func typeName(v any) string {
	switch v.(type) {
	case *redis.Client:
		return "*redis.Client"
	case *redis.ClusterClient:
		return "*redis.ClusterClient"
	}
	return "other"
}

// TestOpenStoreNeverLogsThePassword opens the store the way Run does and
// reads what it logged.
func TestOpenStoreNeverLogsThePassword(t *testing.T) {
	for _, r := range []RedisOptions{
		{URL: "redis://:" + secret + "@127.0.0.1:1/0"},
		{Addrs: []string{"127.0.0.1:1"}, Password: secret},
		{Addrs: []string{"127.0.0.1:1"}, SentinelMaster: "m", Password: secret},
		{Addrs: []string{"127.0.0.1:1"}, SentinelMaster: "m", SentinelPassword: secret},
	} {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o := validOptions("redis", r)
		if err := o.Validate(); err != nil {
			t.Fatal(err)
		}
		s, closeStore, err := o.openStore(func(string) string { return "" }, log)
		if err != nil {
			t.Fatal(err)
		}
		if s == nil {
			t.Fatal("no store")
		}
		_ = closeStore()
		if !strings.Contains(logs.String(), "keeping frames in Redis") || !strings.Contains(strings.ToLower(logs.String()), "password=true") {
			t.Errorf("the log does not say where the store is:\n%s", logs.String())
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log shows the password:\n%s", logs.String())
		}
	}
}
