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
	"maps"
	"slices"
	"strconv"
	"strings"
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
// Layout 1 kept the verified and aggregated frames under two heads, each
// with every object, in gob chunks; layout 2 keeps one generation per
// resource, its chunks compressed, with the aggregated frame as a delta on
// the verified one.
const redisLayout = 2

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
// stream. A realistic pod's event takes about 3.1 KB in Redis (5 KB of
// JSON, compressed; docs/benchmarks.md), so this keeps about 21,000 pod
// events: 210 s at 100 events/s, more than the default minute between the
// LISTs that trim the stream anyway.
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
// cluster's name) and resource r:
//
//	krm:{c/r}:verified         hash: v (layout), gen, chunks, header and aggregated (gob Headers)
//	krm:{c/r}:verified:<gen>   hash: "0".."chunks-1" -> a chunk (zstd of Encode of ≤ ChunkRows verified rows)
//	                                 "d" -> the delta (zstd of gob delta): the aggregated frame's rows
//	                                 that the verified frame lacks or holds at another resourceVersion,
//	                                 and the UIDs of verified rows it no longer holds
//	krm:{c/r}:events           stream of watch events; entry ID <resourceVersion>-<n>
//
// Each object is held once: the aggregated frame is the verified frame plus
// the watch events since its LIST, which the delta records compacted to the
// newest row per object (the event stream also holds them, but may have
// lost some while Redis failed; the delta is what makes a frame complete by
// itself). After a LIST the delta is the few events that arrived since the
// LIST's resourceVersion.
//
// The hash tag {c/r} puts one resource's keys on one Cluster slot, so the
// swap script may touch them all. A frame pair is written under a fresh
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

// HeadKey is the key of the head of a resource's frames, the one key a swap
// changes. The verified and aggregated frames share it (and a generation):
// source only says which frame the caller means.
func HeadKey(cluster, resource string, source Source) string {
	_ = source
	return resourcePrefix(cluster, resource) + ":" + string(Verified)
}

// legacyAggregatedKey is where layout 1 kept the aggregated frame's head;
// a write of layout 2 removes it and its generation.
func legacyAggregatedKey(cluster, resource string) string {
	return resourcePrefix(cluster, resource) + ":" + string(Aggregated)
}

func generationKey(head, gen string) string { return head + ":" + gen }

// deltaField is the generation's field holding the aggregated frame's delta.
const deltaField = "d"

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
// generation holds every chunk and the delta. The replaced generation
// expires after ARGV[7] ms rather than going at once, for readers still on
// it.
//
// KEYS: head, new generation, old generation (any same-slot key when none).
// ARGV: old gen, new gen, chunks, verified header, aggregated header,
// layout, expiry ms.
// Returns 1 when published, 0 when the head moved, -1 when chunks are
// missing.
var swapScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'gen')
if not cur then cur = '' end
if cur ~= ARGV[1] then return 0 end
if redis.call('HLEN', KEYS[2]) ~= tonumber(ARGV[3]) + 1 then return -1 end
redis.call('HSET', KEYS[1], 'v', ARGV[6], 'gen', ARGV[2], 'chunks', ARGV[3], 'header', ARGV[4], 'aggregated', ARGV[5])
redis.call('PERSIST', KEYS[2])
if ARGV[1] ~= '' and ARGV[1] ~= ARGV[2] then redis.call('PEXPIRE', KEYS[3], ARGV[7]) end
return 1
`)

// maxSwapAttempts bounds how often a writer re-reads a head that other
// writers keep moving.
const maxSwapAttempts = 100

// pipelineBytes bounds how much chunk data one pipeline carries.
const pipelineBytes = 8 << 20

// delta is the aggregated frame as stored: what differs from the verified
// frame of its generation.
type delta struct {
	// Rows are the aggregated frame's rows that the verified frame does
	// not hold at the same UID and resourceVersion.
	Rows []*Row
	// Removed are the UIDs of verified rows the aggregated frame lacks.
	Removed []string
}

// diffFrames returns aggregated as a delta on verified: a row of aggregated
// that verified holds alike (the same *Row, as the agent's views share
// them, or equal field by field) is left out.
func diffFrames(verified, aggregated []*Row) delta {
	byUID := make(map[string]*Row, len(verified))
	for _, r := range verified {
		byUID[r.UID] = r
	}
	var d delta
	kept := make(map[string]struct{}, len(aggregated))
	for _, r := range aggregated {
		if v, ok := byUID[r.UID]; ok {
			kept[r.UID] = struct{}{}
			if sameRow(v, r) {
				continue
			}
		}
		d.Rows = append(d.Rows, r)
	}
	for _, r := range verified {
		if _, ok := kept[r.UID]; !ok {
			d.Removed = append(d.Removed, r.UID)
		}
	}
	return d
}

// sameRow reports whether a and b are the same row.
func sameRow(a, b *Row) bool {
	if a == b {
		return true
	}
	return a.UID == b.UID && a.Namespace == b.Namespace && a.Name == b.Name &&
		a.ResourceVersion == b.ResourceVersion && a.Source == b.Source && a.Deleted == b.Deleted &&
		a.ObservedAt.Equal(b.ObservedAt) && bytes.Equal(a.Object, b.Object) && bytes.Equal(a.Cells, b.Cells) &&
		maps.Equal(a.Labels, b.Labels) && maps.Equal(a.Fields, b.Fields)
}

// apply returns the aggregated frame's rows: verified's, less the removed
// and the replaced, plus the delta's: in verified's order when the delta
// adds no row, else in key order. Rows it keeps are verified's own: each
// object is decoded once.
func (d *delta) apply(verified []*Row) []*Row {
	drop := make(map[string]struct{}, len(d.Removed)+len(d.Rows))
	for _, uid := range d.Removed {
		drop[uid] = struct{}{}
	}
	for _, r := range d.Rows {
		drop[r.UID] = struct{}{}
	}
	out := make([]*Row, 0, len(verified)-len(d.Removed)+len(d.Rows))
	for _, r := range verified {
		if _, ok := drop[r.UID]; !ok {
			out = append(out, r)
		}
	}
	if len(d.Rows) == 0 {
		return out
	}
	out = append(out, d.Rows...)
	slices.SortStableFunc(out, func(a, b *Row) int {
		if lessRow(a, b) {
			return -1
		}
		if lessRow(b, a) {
			return 1
		}
		return 0
	})
	return out
}

func encodeHeader(h Header) ([]byte, error) {
	var hb bytes.Buffer
	if err := gob.NewEncoder(&hb).Encode(&h); err != nil {
		return nil, fmt.Errorf("encoding the %s header of %s: %w", h.Source, h.Resource, err)
	}
	return hb.Bytes(), nil
}

// PutFrame replaces the frame of f's source alone and keeps the other one
// stored with it, or, with none stored (or one that does not read back),
// stores f's rows as both. It reads the stored pair first and publishes
// only if no other write came in between, else reads again; the agent
// writes both frames at once with PutFrames instead.
func (s *Redis) PutFrame(ctx context.Context, f *Frame) error {
	if f.Header.Source != Verified && f.Header.Source != Aggregated {
		return fmt.Errorf("writing the %s frame of %s: Redis keeps only the verified and aggregated frames", f.Header.Source, f.Header.Resource)
	}
	head := HeadKey(f.Header.KeyCluster(), f.Header.Resource, f.Header.Source)
	for range maxSwapAttempts {
		var verified, aggregated *Frame
		v, a, gen, err := s.readPair(ctx, head)
		switch {
		case err == nil:
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrVersion), errors.Is(err, ErrCorrupt):
			// Replaced whole; the head may be too broken to name its
			// generation, so ask it alone.
			v, a = nil, nil
			if gen, err = s.FrameGeneration(ctx, f.Header.KeyCluster(), f.Header.Resource, Verified); err != nil {
				return err
			}
		default:
			return err
		}
		other := &Frame{Header: f.Header, Rows: f.Rows}
		if f.Header.Source == Verified {
			other.Header.Source = Aggregated
			verified, aggregated = f, other
			if a != nil {
				aggregated = a
			}
		} else {
			other.Header.Source = Verified
			verified, aggregated = other, f
			if v != nil {
				verified = v
			}
		}
		err = s.putFrames(ctx, verified, aggregated, &gen)
		if !errors.Is(err, errHeadMoved) {
			return err
		}
	}
	return fmt.Errorf("writing the %s frame of %s: %s kept changing under %d attempts", f.Header.Source, f.Header.Resource, head, maxSwapAttempts)
}

// readPair reads the frames head names, and the generation they are of ("" when none).
func (s *Redis) readPair(ctx context.Context, head string) (verified, aggregated *Frame, gen string, err error) {
	for range maxReadAttempts {
		v, a, gen, retry, err := s.readFrames(ctx, head)
		if !retry {
			return v, a, gen, err
		}
	}
	return nil, nil, "", fmt.Errorf("reading %s: its generation was replaced %d times while being read; is Grace (%s) shorter than a read?", head, maxReadAttempts, s.opts.Grace)
}

// errHeadMoved says a head no longer named the generation a write expected.
var errHeadMoved = errors.New("the head moved")

// PutFrames implements Store: it writes verified's rows as compressed
// chunks and aggregated as a delta on them under a fresh generation, then
// swaps the head to it.
func (s *Redis) PutFrames(ctx context.Context, verified, aggregated *Frame) error {
	return s.putFrames(ctx, verified, aggregated, nil)
}

// putFrames writes a pair; with expect, only over that generation ("" for
// none), else failing with errHeadMoved.
func (s *Redis) putFrames(ctx context.Context, verified, aggregated *Frame, expect *string) error {
	vh, ah := verified.Header, aggregated.Header
	if vh.KeyCluster() != ah.KeyCluster() || vh.Resource != ah.Resource {
		return fmt.Errorf("writing frames: the verified frame is of %s/%s, the aggregated one of %s/%s", vh.KeyCluster(), vh.Resource, ah.KeyCluster(), ah.Resource)
	}
	vh.Version, vh.Rows, vh.Source = FrameVersion, len(verified.Rows), Verified
	ah.Version, ah.Rows, ah.Source = FrameVersion, len(aggregated.Rows), Aggregated
	head := HeadKey(vh.KeyCluster(), vh.Resource, Verified)
	vb, err := encodeHeader(vh)
	if err != nil {
		return err
	}
	ab, err := encodeHeader(ah)
	if err != nil {
		return err
	}
	gen := newGeneration()
	genKey := generationKey(head, gen)
	chunks, err := s.writeChunks(ctx, genKey, vh, verified.Rows, diffFrames(verified.Rows, aggregated.Rows))
	if err != nil {
		return err
	}
	if err := s.publish(ctx, head, gen, chunks, vb, ab, expect); err != nil {
		return err
	}
	return s.dropLegacy(ctx, vh.KeyCluster(), vh.Resource)
}

// dropLegacy deletes the aggregated frame layout 1 kept under a head of
// its own, now that the generation just published holds it.
func (s *Redis) dropLegacy(ctx context.Context, cluster, resource string) error {
	legacy := legacyAggregatedKey(cluster, resource)
	gen, err := s.client.HGet(ctx, legacy, "gen").Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", legacy, err)
	}
	if err := s.client.Del(ctx, legacy, generationKey(legacy, gen)).Err(); err != nil {
		return fmt.Errorf("deleting %s, left by an older krm: %w", legacy, err)
	}
	return nil
}

// publish swaps head to generation gen, which must hold chunks chunks and
// the delta. With expect, it does so only over that generation.
func (s *Redis) publish(ctx context.Context, head, gen string, chunks int, verified, aggregated []byte, expect *string) error {
	genKey := generationKey(head, gen)
	for range maxSwapAttempts {
		old, err := s.client.HGet(ctx, head, "gen").Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("reading %s: %w", head, err)
		}
		if expect != nil && old != *expect {
			return errHeadMoved
		}
		oldKey := generationKey(head, old)
		if old == "" {
			oldKey = genKey
		}
		res, err := swapScript.Run(ctx, s.client, []string{head, genKey, oldKey},
			old, gen, chunks, verified, aggregated, redisLayout, (2 * s.opts.Grace).Milliseconds()).Int()
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
		if expect != nil {
			return errHeadMoved
		}
	}
	return fmt.Errorf("publishing generation %s of %s: the head kept changing under %d attempts", gen, head, maxSwapAttempts)
}

// writeChunks writes rows as compressed chunks of genKey, and d, and
// returns how many chunks.
func (s *Redis) writeChunks(ctx context.Context, genKey string, h Header, rows []*Row, d delta) (int, error) {
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
		if err == nil {
			data, err = compress(data)
		}
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
	var db bytes.Buffer
	err := gob.NewEncoder(&db).Encode(&d)
	var data []byte
	if err == nil {
		data, err = compress(db.Bytes())
	}
	if err != nil {
		return 0, fmt.Errorf("encoding the aggregated frame's delta of %s: %w", genKey, err)
	}
	pipe.HSet(ctx, genKey, deltaField, data)
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
	if source != Verified && source != Aggregated {
		return nil, fmt.Errorf("%s %s frame of cluster %q: %w", resource, source, cluster, ErrNotFound)
	}
	verified, aggregated, err := s.GetFrames(ctx, cluster, resource)
	if err != nil {
		return nil, err
	}
	if source == Verified {
		return verified, nil
	}
	return aggregated, nil
}

// GetFrames implements Store: it reads a resource's verified frame and
// rebuilds the aggregated one from it and its delta, decoding each object
// once; rows the two hold alike are the same *Row. A frame pair that
// cannot be read back returns an error naming the key and wrapping
// ErrVersion or ErrCorrupt.
func (s *Redis) GetFrames(ctx context.Context, cluster, resource string) (verified, aggregated *Frame, err error) {
	verified, aggregated, _, err = s.readPair(ctx, HeadKey(cluster, resource, Verified))
	return verified, aggregated, err
}

type frameHead struct {
	gen                string
	chunks             int
	header, aggregated Header
}

func decodeHeader(head, field, data string, into *Header) error {
	if err := gob.NewDecoder(strings.NewReader(data)).Decode(into); err != nil {
		return fmt.Errorf("reading %s: %w: decoding the %s header: %w", head, ErrCorrupt, field, err)
	}
	if into.Version != FrameVersion {
		return fmt.Errorf("reading %s: %w %d (this build reads %d)", head, ErrVersion, into.Version, FrameVersion)
	}
	return nil
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
		return nil, fmt.Errorf("reading %s: %w: layout %q (this build reads %d; the next LIST rewrites it)", head, ErrVersion, v, redisLayout)
	}
	fh := &frameHead{gen: m["gen"]}
	if fh.chunks, err = strconv.Atoi(m["chunks"]); err != nil || fh.chunks < 0 || fh.gen == "" {
		return nil, fmt.Errorf("reading %s: %w: generation %q with %q chunks", head, ErrCorrupt, fh.gen, m["chunks"])
	}
	if err := decodeHeader(head, "verified", m["header"], &fh.header); err != nil {
		return nil, err
	}
	if err := decodeHeader(head, "aggregated", m["aggregated"], &fh.aggregated); err != nil {
		return nil, err
	}
	return fh, nil
}

// readFrames reads the frames head names. retry says the generation
// vanished under the reader (replaced, then expired): start over.
func (s *Redis) readFrames(ctx context.Context, head string) (verified, aggregated *Frame, gen string, retry bool, err error) {
	fh, err := s.readHead(ctx, head)
	if err != nil {
		return nil, nil, "", false, err
	}
	genKey := generationKey(head, fh.gen)
	h := fh.header
	f := &Frame{Header: h, Rows: make([]*Row, 0, min(max(h.Rows, 0), 1<<20))}
	// The delta is read with the first batch of chunks.
	var d delta
	for start := 0; start == 0 || start < fh.chunks; start += readChunks {
		fields := make([]string, 0, readChunks+1)
		if start == 0 {
			fields = append(fields, deltaField)
		}
		for i := start; i < min(start+readChunks, fh.chunks); i++ {
			fields = append(fields, strconv.Itoa(i))
		}
		vals, err := s.client.HMGet(ctx, genKey, fields...).Result()
		if err != nil {
			return nil, nil, fh.gen, false, fmt.Errorf("reading %s: %w", genKey, err)
		}
		for j, v := range vals {
			data, ok := v.(string)
			if !ok {
				// Gone: replaced and expired while we read, or lost.
				now, err := s.readHead(ctx, head)
				if err == nil && now.gen != fh.gen {
					return nil, nil, fh.gen, true, nil
				}
				return nil, nil, fh.gen, false, fmt.Errorf("reading %s: %w: field %s of %d chunks and the delta is missing", genKey, ErrCorrupt, fields[j], fh.chunks)
			}
			if fields[j] == deltaField {
				if err := decodeDelta(data, &d); err != nil {
					return nil, nil, fh.gen, false, fmt.Errorf("reading the aggregated frame's delta in %s: %w: %w", genKey, ErrCorrupt, err)
				}
				continue
			}
			rows, err := decodeChunk(data, h)
			if err != nil {
				return nil, nil, fh.gen, false, fmt.Errorf("reading chunk %s of %s: %w", fields[j], genKey, err)
			}
			f.Rows = append(f.Rows, rows...)
		}
	}
	if len(f.Rows) != h.Rows {
		return nil, nil, fh.gen, false, fmt.Errorf("reading %s: %w: header says %d rows, chunks hold %d", genKey, ErrCorrupt, h.Rows, len(f.Rows))
	}
	a := &Frame{Header: fh.aggregated, Rows: d.apply(f.Rows)}
	if len(a.Rows) != a.Header.Rows {
		return nil, nil, fh.gen, false, fmt.Errorf("reading %s: %w: the aggregated header says %d rows, the verified frame and its delta hold %d", genKey, ErrCorrupt, a.Header.Rows, len(a.Rows))
	}
	return f, a, fh.gen, false, nil
}

// decodeChunk decompresses and decodes one chunk of the frame h heads.
func decodeChunk(data string, h Header) ([]*Row, error) {
	raw, err := decompress([]byte(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	c, err := Decode(raw)
	if errors.Is(err, ErrVersion) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if c.Header.Cluster != h.Cluster || c.Header.ClusterUID != h.ClusterUID || c.Header.Resource != h.Resource || c.Header.Source != h.Source {
		return nil, fmt.Errorf("%w: it belongs to %s/%s/%s", ErrCorrupt, c.Header.Cluster, c.Header.Resource, c.Header.Source)
	}
	return c.Rows, nil
}

func decodeDelta(data string, d *delta) error {
	raw, err := decompress([]byte(data))
	if err != nil {
		return err
	}
	if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(d); err != nil {
		return fmt.Errorf("decoding: %w", err)
	}
	for _, r := range d.Rows {
		if r == nil {
			return errors.New("a row of the delta is empty")
		}
	}
	return nil
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

// FrameGeneration returns the generation the head of a resource's frames
// names, "" when none: cheap enough to poll, to notice new frames. The
// verified and aggregated frames share it.
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
