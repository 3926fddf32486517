package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrCorrupt is wrapped by the errors of frames and events that are in Redis
// but cannot be read back: a chunk that does not decode, a missing chunk,
// row counts that disagree. Like ErrVersion, it means: discard and rebuild.
var ErrCorrupt = errors.New("corrupt frame")

// redisLayout is the version of the key layout below. A head written with
// another one is reported as ErrVersion, like a frame of another version.
const redisLayout = 1

// RedisOptions tune the Redis store; the zero value is the defaults.
type RedisOptions struct {
	// Grace is how long a reader may take to read a frame it has found. A
	// replaced generation expires 2×Grace after the swap instead of being
	// deleted, so a reader that read the old header finishes. Default 30s.
	Grace time.Duration
	// ChunkRows and ChunkBytes bound one chunk: at most ChunkRows rows,
	// and a chunk is closed once its objects reach ChunkBytes. Defaults 512
	// rows and 1 MiB.
	ChunkRows  int
	ChunkBytes int
	// PendingTTL is how long the chunks of a generation being written live
	// before they are published; a writer that dies mid-frame leaves
	// nothing behind for longer. Default 10m.
	PendingTTL time.Duration
	// StreamBytes bounds each resource's event stream by bytes, for when
	// no verified frame trims it, e.g. while LISTs fail: every XADD trims
	// the stream (MAXLEN ~) to StreamBytes divided by the mean size of the
	// resource's events so far. Default DefaultStreamBytes.
	StreamBytes int64
	// MaxEvents caps each stream's entries whatever their size, and
	// MinEvents is the least a stream keeps however large its events.
	// Defaults 100,000 and 100.
	MaxEvents, MinEvents int64
}

// DefaultStreamBytes is the default byte budget of one resource's event
// stream. A realistic pod's event takes about 6.6 KB in Redis (5 KB of
// JSON; docs/benchmarks.md), so this keeps about 10,000 pod events: 100 s
// at 100 events/s, more than the default minute between the LISTs that
// trim the stream anyway.
const DefaultStreamBytes = 64 << 20

// streamEntrySize estimates what Redis spends on a stream entry whose row
// encodes to n bytes: the allocator's size classes (up to a quarter more
// for entries of 4 to 16 KiB, each in a listpack node of its own past
// stream-node-max-bytes) and the ID, field names and headers. Measured with
// MEMORY USAGE by BenchmarkRedisBytesPerObject and
// TestRedisEventStreamBoundedByBytes.
func streamEntrySize(n int) int { return n + n/4 + 64 }

func (o *RedisOptions) complete() {
	if o.Grace <= 0 {
		o.Grace = 30 * time.Second
	}
	if o.ChunkRows <= 0 {
		o.ChunkRows = 512
	}
	if o.ChunkBytes <= 0 {
		o.ChunkBytes = 1 << 20
	}
	if o.PendingTTL <= 0 {
		o.PendingTTL = 10 * time.Minute
	}
	if o.StreamBytes <= 0 {
		o.StreamBytes = DefaultStreamBytes
	}
	if o.MaxEvents <= 0 {
		o.MaxEvents = 100_000
	}
	if o.MinEvents <= 0 {
		o.MinEvents = 100
	}
	o.MinEvents = min(o.MinEvents, o.MaxEvents)
}

// Redis keeps frames and events in Redis: a single server, Sentinel or a
// Redis Cluster, whichever the UniversalClient talks to. The layout, per
// cluster c (Header.KeyCluster: the kube-system namespace's UID, else the
// cluster's name), resource r and source s:
//
//	krm:{c/r}:s          hash: v (layout), gen, chunks, header (gob Header)
//	krm:{c/r}:s:<gen>    hash: "0".."chunks-1" -> a chunk (Encode of ≤ ChunkRows rows)
//	krm:{c/r}:events     stream of watch events; entry ID <resourceVersion>-<n>
//
// The hash tag {c/r} puts one resource's keys on one Cluster slot, so the
// swap script may touch them all. A frame is written under a fresh
// generation and published by one script that sets the head only when the
// generation is complete; readers read the head, then that generation's
// chunks, which never change, so nobody sees half a frame.
type Redis struct {
	client redis.UniversalClient
	opts   RedisOptions
	// sizes is the mean encoded size of each stream's events, which
	// turns StreamBytes into a MAXLEN.
	sizesMu sync.Mutex
	sizes   map[string]*meanSize
}

var _ Store = (*Redis)(nil)

// NewRedis returns a store on client. The caller owns the client and closes
// it.
func NewRedis(client redis.UniversalClient, opts RedisOptions) *Redis {
	opts.complete()
	return &Redis{client: client, opts: opts, sizes: map[string]*meanSize{}}
}

// Client is the client the store writes with, for what keeps its own keys
// beside the frames (history).
func (s *Redis) Client() redis.UniversalClient { return s.client }

// Options returns the options in use, defaults filled in.
func (s *Redis) Options() RedisOptions { return s.opts }

func resourcePrefix(cluster, resource string) string {
	return "krm:{" + cluster + "/" + resource + "}"
}

// HeadKey is the key of the head of a frame, the one key a swap changes.
func HeadKey(cluster, resource string, source Source) string {
	return resourcePrefix(cluster, resource) + ":" + string(source)
}

func generationKey(head, gen string) string { return head + ":" + gen }

// EventsKey is the key of a resource's event stream.
func EventsKey(cluster, resource string) string {
	return resourcePrefix(cluster, resource) + ":events"
}

// newGeneration returns a generation id no other write uses: the time, for
// people reading keys, and 64 random bits.
func newGeneration() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return strconv.FormatInt(time.Now().UnixMilli(), 10) + "-" + hex.EncodeToString(b[:])
}

// swapScript publishes a generation: it sets the head only if the head still
// names the generation the writer saw (ARGV[1], "" for none) and the new
// generation holds every chunk. The replaced generation expires after
// ARGV[6] ms rather than going at once, for readers still on it.
//
// KEYS: head, new generation, old generation (any same-slot key when none).
// ARGV: old gen, new gen, chunks, header, layout, expiry ms.
// Returns 1 when published, 0 when the head moved, -1 when chunks are
// missing.
var swapScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'gen')
if not cur then cur = '' end
if cur ~= ARGV[1] then return 0 end
if redis.call('HLEN', KEYS[2]) ~= tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[1], 'v', ARGV[5], 'gen', ARGV[2], 'chunks', ARGV[3], 'header', ARGV[4])
redis.call('PERSIST', KEYS[2])
if ARGV[1] ~= '' and ARGV[1] ~= ARGV[2] then redis.call('PEXPIRE', KEYS[3], ARGV[6]) end
return 1
`)

// maxSwapAttempts bounds how often a writer re-reads a head that other
// writers keep moving.
const maxSwapAttempts = 100

// pipelineBytes bounds how much chunk data one pipeline carries.
const pipelineBytes = 8 << 20

// PutFrame implements Store: it writes f's rows as chunks under a fresh
// generation and then swaps the head to it.
func (s *Redis) PutFrame(ctx context.Context, f *Frame) error {
	h := f.Header
	h.Version, h.Rows = FrameVersion, len(f.Rows)
	head := HeadKey(h.KeyCluster(), h.Resource, h.Source)
	var hb bytes.Buffer
	if err := gob.NewEncoder(&hb).Encode(&h); err != nil {
		return fmt.Errorf("encoding the header of %s: %w", head, err)
	}
	gen := newGeneration()
	genKey := generationKey(head, gen)
	chunks, err := s.writeChunks(ctx, genKey, h, f.Rows)
	if err != nil {
		return err
	}
	return s.publish(ctx, head, gen, chunks, hb.Bytes())
}

// publish swaps head to generation gen, which must hold chunks chunks.
func (s *Redis) publish(ctx context.Context, head, gen string, chunks int, header []byte) error {
	genKey := generationKey(head, gen)
	for range maxSwapAttempts {
		old, err := s.client.HGet(ctx, head, "gen").Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("reading %s: %w", head, err)
		}
		oldKey := generationKey(head, old)
		if old == "" {
			oldKey = genKey
		}
		res, err := swapScript.Run(ctx, s.client, []string{head, genKey, oldKey},
			old, gen, chunks, header, redisLayout, (2 * s.opts.Grace).Milliseconds()).Int()
		if err != nil {
			return fmt.Errorf("publishing generation %s of %s: %w", gen, head, err)
		}
		switch res {
		case 1:
			return nil
		case -1:
			return fmt.Errorf("publishing generation %s of %s: chunks are missing (written more than %s ago?)", gen, head, s.opts.PendingTTL)
		}
		// Another writer swapped in between: read its generation again.
	}
	return fmt.Errorf("publishing generation %s of %s: the head kept changing under %d attempts", gen, head, maxSwapAttempts)
}

// writeChunks writes rows as chunks of genKey and returns how many.
func (s *Redis) writeChunks(ctx context.Context, genKey string, h Header, rows []*Row) (int, error) {
	pipe := s.client.Pipeline()
	pending := 0
	flush := func() error {
		if pipe.Len() == 0 {
			return nil
		}
		pipe.PExpire(ctx, genKey, s.opts.PendingTTL)
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("writing chunks of %s: %w", genKey, err)
		}
		pending = 0
		return nil
	}
	n := 0
	for start := 0; start < len(rows); {
		end, size := start, 0
		for end < len(rows) && end-start < s.opts.ChunkRows && size < s.opts.ChunkBytes {
			size += len(rows[end].Object)
			end++
		}
		ch := h
		ch.Rows = end - start
		data, err := Encode(&Frame{Header: ch, Rows: rows[start:end]})
		if err != nil {
			return 0, fmt.Errorf("encoding chunk %d of %s: %w", n, genKey, err)
		}
		pipe.HSet(ctx, genKey, strconv.Itoa(n), data)
		pending += len(data)
		n++
		start = end
		if pending >= pipelineBytes {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, flush()
}

// maxReadAttempts bounds how often a reader starts over because the
// generation it found was replaced and expired while it read.
const maxReadAttempts = 5

// readChunks is how many chunks one HMGET asks for.
const readChunks = 16

// GetFrame implements Store. A frame that cannot be read back returns an
// error naming the key and wrapping ErrVersion or ErrCorrupt.
func (s *Redis) GetFrame(ctx context.Context, cluster, resource string, source Source) (*Frame, error) {
	head := HeadKey(cluster, resource, source)
	for range maxReadAttempts {
		f, retry, err := s.readFrame(ctx, head)
		if !retry {
			return f, err
		}
	}
	return nil, fmt.Errorf("reading %s: its generation was replaced %d times while being read; is Grace (%s) shorter than a read?", head, maxReadAttempts, s.opts.Grace)
}

type frameHead struct {
	gen    string
	chunks int
	header Header
}

func (s *Redis) readHead(ctx context.Context, head string) (*frameHead, error) {
	m, err := s.client.HGetAll(ctx, head).Result()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", head, err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("%s: %w", head, ErrNotFound)
	}
	if v := m["v"]; v != strconv.Itoa(redisLayout) {
		return nil, fmt.Errorf("reading %s: %w: layout %q (this build reads %d)", head, ErrVersion, v, redisLayout)
	}
	fh := &frameHead{gen: m["gen"]}
	if fh.chunks, err = strconv.Atoi(m["chunks"]); err != nil || fh.chunks < 0 || fh.gen == "" {
		return nil, fmt.Errorf("reading %s: %w: generation %q with %q chunks", head, ErrCorrupt, fh.gen, m["chunks"])
	}
	if err := gob.NewDecoder(bytes.NewReader([]byte(m["header"]))).Decode(&fh.header); err != nil {
		return nil, fmt.Errorf("reading %s: %w: decoding the header: %w", head, ErrCorrupt, err)
	}
	if fh.header.Version != FrameVersion {
		return nil, fmt.Errorf("reading %s: %w %d (this build reads %d)", head, ErrVersion, fh.header.Version, FrameVersion)
	}
	return fh, nil
}

// readFrame reads the frame head names. retry says the generation vanished
// under the reader (replaced, then expired): start over.
func (s *Redis) readFrame(ctx context.Context, head string) (*Frame, bool, error) {
	fh, err := s.readHead(ctx, head)
	if err != nil {
		return nil, false, err
	}
	genKey := generationKey(head, fh.gen)
	h := fh.header
	f := &Frame{Header: h, Rows: make([]*Row, 0, min(max(h.Rows, 0), 1<<20))}
	for start := 0; start < fh.chunks; start += readChunks {
		fields := make([]string, 0, readChunks)
		for i := start; i < min(start+readChunks, fh.chunks); i++ {
			fields = append(fields, strconv.Itoa(i))
		}
		vals, err := s.client.HMGet(ctx, genKey, fields...).Result()
		if err != nil {
			return nil, false, fmt.Errorf("reading %s: %w", genKey, err)
		}
		for j, v := range vals {
			i := start + j
			data, ok := v.(string)
			if !ok {
				// Gone: replaced and expired while we read, or lost.
				now, err := s.readHead(ctx, head)
				if err == nil && now.gen != fh.gen {
					return nil, true, nil
				}
				return nil, false, fmt.Errorf("reading %s: %w: chunk %d of %d is missing", genKey, ErrCorrupt, i, fh.chunks)
			}
			c, err := Decode([]byte(data))
			if errors.Is(err, ErrVersion) {
				return nil, false, fmt.Errorf("reading chunk %d of %s: %w", i, genKey, err)
			}
			if err != nil {
				return nil, false, fmt.Errorf("reading chunk %d of %s: %w: %w", i, genKey, ErrCorrupt, err)
			}
			if c.Header.Cluster != h.Cluster || c.Header.ClusterUID != h.ClusterUID || c.Header.Resource != h.Resource || c.Header.Source != h.Source {
				return nil, false, fmt.Errorf("reading chunk %d of %s: %w: it belongs to %s/%s/%s", i, genKey, ErrCorrupt,
					c.Header.Cluster, c.Header.Resource, c.Header.Source)
			}
			f.Rows = append(f.Rows, c.Rows...)
		}
	}
	if len(f.Rows) != h.Rows {
		return nil, false, fmt.Errorf("reading %s: %w: header says %d rows, chunks hold %d", genKey, ErrCorrupt, h.Rows, len(f.Rows))
	}
	return f, false, nil
}

// HasFrame reports whether a frame is stored, without reading it: cheap
// enough to ask often, to notice a Redis that restarted empty.
func (s *Redis) HasFrame(ctx context.Context, cluster, resource string, source Source) (bool, error) {
	head := HeadKey(cluster, resource, source)
	n, err := s.client.Exists(ctx, head).Result()
	if err != nil {
		return false, fmt.Errorf("checking %s: %w", head, err)
	}
	return n > 0, nil
}

// FrameGeneration returns the generation the head of a frame names, ""
// when none: cheap enough to poll, to notice a new frame.
func (s *Redis) FrameGeneration(ctx context.Context, cluster, resource string, source Source) (string, error) {
	head := HeadKey(cluster, resource, source)
	gen, err := s.client.HGet(ctx, head, "gen").Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", head, err)
	}
	return gen, nil
}

// Ping checks that Redis answers.
func (s *Redis) Ping(ctx context.Context) error {
	return s.client.Ping(ctx).Err()
}

// identityKey holds the kube-system UID a cluster name had when last read,
// for an agent that starts while kube-apiserver does not answer. Resource
// keys always hold a '/' in their hash tag; this one does not.
func identityKey(cluster string) string { return "krm:{" + cluster + "}:uid" }

// RememberClusterUID records that the cluster called name has uid.
func (s *Redis) RememberClusterUID(ctx context.Context, name, uid string) error {
	if err := s.client.Set(ctx, identityKey(name), uid, 0).Err(); err != nil {
		return fmt.Errorf("writing %s: %w", identityKey(name), err)
	}
	return nil
}

// RememberedClusterUID returns the UID RememberClusterUID last recorded
// for name, "" when none.
func (s *Redis) RememberedClusterUID(ctx context.Context, name string) (string, error) {
	uid, err := s.client.Get(ctx, identityKey(name)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", identityKey(name), err)
	}
	return uid, nil
}

// discoveryKey holds what discovery resolved for a cluster's store key,
// for an agent that starts while kube-apiserver does not answer.
func discoveryKey(keyCluster string) string { return "krm:{" + keyCluster + "}:discovery" }

// RememberDiscovery records what the agent resolved through discovery (its
// own encoding), so that a later start without kube-apiserver can serve
// the frames stored under keyCluster.
func (s *Redis) RememberDiscovery(ctx context.Context, keyCluster string, b []byte) error {
	if err := s.client.Set(ctx, discoveryKey(keyCluster), b, 0).Err(); err != nil {
		return fmt.Errorf("writing %s: %w", discoveryKey(keyCluster), err)
	}
	return nil
}

// RememberedDiscovery returns what RememberDiscovery last recorded for
// keyCluster, or ErrNotFound.
func (s *Redis) RememberedDiscovery(ctx context.Context, keyCluster string) ([]byte, error) {
	b, err := s.client.Get(ctx, discoveryKey(keyCluster)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", discoveryKey(keyCluster), err)
	}
	return b, nil
}

// StreamState is the leading replica's watch of one resource, which
// followers, whose own views come through Redis, report as theirs.
type StreamState struct {
	Connected    bool      `json:"connected"`
	LastStreamAt time.Time `json:"lastStreamAt"`
	// WrittenAt is when the leader wrote it: a state not renewed for a
	// while is a leader that is gone.
	WrittenAt time.Time `json:"writtenAt"`
}

// streamStateTTL removes a state its leader stopped renewing.
const streamStateTTL = time.Minute

func streamStateKey(cluster, resource string) string {
	return resourcePrefix(cluster, resource) + ":stream"
}

// PutStreamState records the leader's watch state of resource.
func (s *Redis) PutStreamState(ctx context.Context, cluster, resource string, st StreamState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := s.client.Set(ctx, streamStateKey(cluster, resource), b, streamStateTTL).Err(); err != nil {
		return fmt.Errorf("writing %s: %w", streamStateKey(cluster, resource), err)
	}
	return nil
}

// GetStreamState returns what PutStreamState last recorded, or ErrNotFound.
func (s *Redis) GetStreamState(ctx context.Context, cluster, resource string) (StreamState, error) {
	var st StreamState
	b, err := s.client.Get(ctx, streamStateKey(cluster, resource)).Bytes()
	if errors.Is(err, redis.Nil) {
		return st, ErrNotFound
	}
	if err != nil {
		return st, fmt.Errorf("reading %s: %w", streamStateKey(cluster, resource), err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%w: %s: %v", ErrCorrupt, streamStateKey(cluster, resource), err)
	}
	return st, nil
}
