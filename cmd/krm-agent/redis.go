package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/krm-project/krm/pkg/store"
)

// redisPasswordEnv holds the Redis password when --redis-password is not
// given, so it stays out of the process list.
const redisPasswordEnv = "KRM_REDIS_PASSWORD"

// redisSentinelPasswordEnv holds the Sentinels' own password, likewise.
const redisSentinelPasswordEnv = "KRM_REDIS_SENTINEL_PASSWORD"

// RedisOptions are the flags of --store=redis.
type RedisOptions struct {
	URL            string
	Addrs          []string
	SentinelMaster string
	Password       string
	// SentinelPassword authenticates to the Sentinels, which may have a
	// requirepass of their own.
	SentinelPassword string
	DB               int
	TLS              bool
	// StreamBytes is each resource's event stream budget, a quantity
	// ("64Mi"); "" is store.DefaultStreamBytes.
	StreamBytes string
}

func (o *RedisOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.URL, "redis-url", o.URL, "Redis server for --store=redis: redis://[user[:password]@]host:port/db, or rediss:// for TLS. Prefer "+redisPasswordEnv+" to a password in the URL.")
	f.StringSliceVar(&o.Addrs, "redis-addrs", o.Addrs, "Instead of --redis-url: the seed nodes (host:port,…) of a Redis Cluster, or with --redis-sentinel-master the Sentinels.")
	f.StringVar(&o.SentinelMaster, "redis-sentinel-master", o.SentinelMaster, "Name of the master the Sentinels in --redis-addrs monitor.")
	f.StringVar(&o.Password, "redis-password", o.Password, "Redis password. Default: $"+redisPasswordEnv+", else the one in --redis-url. Never logged.")
	f.StringVar(&o.SentinelPassword, "redis-sentinel-password", o.SentinelPassword, "Password of the Sentinels themselves (their requirepass), with --redis-sentinel-master. Default: $"+redisSentinelPasswordEnv+". Never logged.")
	f.IntVar(&o.DB, "redis-db", o.DB, "Database number with --redis-addrs and Sentinel (a Redis Cluster has only 0); --redis-url carries its own.")
	f.BoolVar(&o.TLS, "redis-tls", o.TLS, "Use TLS with --redis-addrs (--redis-url says so with rediss://).")
	f.StringVar(&o.StreamBytes, "redis-stream-bytes", o.StreamBytes, "Bytes each resource's event stream may take in Redis (e.g. 128Mi): every append trims the stream to this over its events' mean size, LISTs or not. Default: "+resource.NewQuantity(store.DefaultStreamBytes, resource.BinarySI).String()+".")
}

// streamBytes parses --redis-stream-bytes; 0 is the store's default.
func (o *RedisOptions) streamBytes() (int64, error) {
	if o.StreamBytes == "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(o.StreamBytes)
	if err != nil {
		return 0, fmt.Errorf("--redis-stream-bytes %q: want a size such as 32Mi: %w", o.StreamBytes, err)
	}
	if n := q.Value(); n < minStreamBytes {
		return 0, fmt.Errorf("--redis-stream-bytes %q: want at least %s, or a stream holds too few events to replay", o.StreamBytes, resource.NewQuantity(minStreamBytes, resource.BinarySI))
	}
	return q.Value(), nil
}

// minStreamBytes keeps --redis-stream-bytes from a typo such as "32".
const minStreamBytes = 1 << 20

// set reports whether any --redis-* flag was given.
func (o *RedisOptions) set() bool {
	return o.URL != "" || len(o.Addrs) > 0 || o.SentinelMaster != "" || o.Password != "" || o.SentinelPassword != "" || o.DB != 0 || o.TLS ||
		o.StreamBytes != ""
}

// validate checks the flags of --store=redis.
func (o *RedisOptions) validate() error {
	switch {
	case o.URL == "" && len(o.Addrs) == 0:
		return errors.New("--store=redis needs --redis-url, or --redis-addrs for a Redis Cluster or Sentinel")
	case o.URL != "" && len(o.Addrs) > 0:
		return errors.New("--redis-url and --redis-addrs exclude each other: give one")
	case o.SentinelMaster != "" && len(o.Addrs) == 0:
		return errors.New("--redis-sentinel-master needs the Sentinels' addresses in --redis-addrs")
	case o.SentinelPassword != "" && o.SentinelMaster == "":
		return errors.New("--redis-sentinel-password goes with --redis-sentinel-master; the password of Redis itself is --redis-password")
	case o.URL != "" && (o.DB != 0 || o.TLS):
		return errors.New("--redis-db and --redis-tls go with --redis-addrs; --redis-url says both itself (/db, rediss://)")
	case o.SentinelMaster == "" && len(o.Addrs) > 0 && o.DB != 0:
		return errors.New("--redis-db: a Redis Cluster has only database 0")
	case o.DB < 0:
		return fmt.Errorf("--redis-db must not be negative, got %d", o.DB)
	}
	if _, err := o.streamBytes(); err != nil {
		return err
	}
	for _, a := range o.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("--redis-addrs %q: want host:port: %w", a, err)
		}
	}
	if o.URL != "" {
		_, err := o.universal(func(string) string { return "" })
		return err
	}
	return nil
}

// universal builds the client options. The password comes from the flag,
// then the environment, then the URL; no error message carries it.
func (o *RedisOptions) universal(getenv func(string) string) (*redis.UniversalOptions, error) {
	password := o.Password
	if password == "" {
		password = getenv(redisPasswordEnv)
	}
	u := &redis.UniversalOptions{ClientName: "krm-agent", Password: password}
	if o.URL == "" {
		u.Addrs = o.Addrs
		u.DB = o.DB
		u.MasterName = o.SentinelMaster
		if o.SentinelMaster != "" {
			u.SentinelPassword = o.SentinelPassword
			if u.SentinelPassword == "" {
				u.SentinelPassword = getenv(redisSentinelPasswordEnv)
			}
		}
		// Seed nodes, even a single one, mean a Cluster unless Sentinel.
		u.IsClusterMode = o.SentinelMaster == ""
		if o.TLS {
			u.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		return u, nil
	}
	parsed, err := url.Parse(o.URL)
	if err != nil {
		// url.Parse quotes the whole URL, password and all.
		return nil, errors.New("--redis-url is not a URL: want redis://[user[:password]@]host:port/db or rediss://…")
	}
	opts, err := redis.ParseURL(o.URL)
	if err != nil {
		msg := err.Error()
		if p, ok := parsed.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
		return nil, fmt.Errorf("--redis-url %s: %s", parsed.Redacted(), msg)
	}
	u.Addrs = []string{opts.Addr}
	u.DB = opts.DB
	u.Username = opts.Username
	u.TLSConfig = opts.TLSConfig
	if u.Password == "" {
		u.Password = opts.Password
	}
	return u, nil
}

// describe says where the store is, for logs: never the password.
func describe(u *redis.UniversalOptions) []any {
	mode := "single"
	switch {
	case u.MasterName != "":
		mode = "sentinel"
	case u.IsClusterMode:
		mode = "cluster"
	}
	attrs := []any{"mode", mode, "addrs", strings.Join(u.Addrs, ","), "db", u.DB, "tls", u.TLSConfig != nil, "password", u.Password != ""}
	if u.MasterName != "" {
		attrs = append(attrs, "master", u.MasterName, "sentinelPassword", u.SentinelPassword != "")
	}
	return attrs
}

// openStore returns the store the flags name and a function that releases
// it. A Redis that does not answer yet is not an error: the agent starts
// degraded and writes its frames once it does.
func (o *Options) openStore(getenv func(string) string, log *slog.Logger) (store.Store, func() error, error) {
	if o.Store != "redis" {
		return store.NewMemory(), func() error { return nil }, nil
	}
	u, err := o.Redis.universal(getenv)
	if err != nil {
		return nil, nil, err
	}
	// go-redis logs each failed dial; the agent says once that the store
	// failed, so these are debug lines. They carry addresses, never the
	// password.
	redis.SetLogger(redisLogger{log})
	streamBytes, err := o.Redis.streamBytes()
	if err != nil {
		return nil, nil, err
	}
	client := newRedisClient(u)
	s := store.NewRedis(client, store.RedisOptions{StreamBytes: streamBytes})
	log.Info("keeping frames in Redis", append(describe(u), "streamBytesPerResource", s.Options().StreamBytes)...)
	return s, client.Close, nil
}

// redisLogger turns go-redis's printf logging into structured debug lines.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client", "message", fmt.Sprintf(format, v...))
}
