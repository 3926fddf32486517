package store

import (
	"context"
)

// WriteUnpublished writes f's chunks (and an empty delta) under a fresh
// generation and does not publish them, as a writer that dies before its
// swap leaves them. It returns the generation's key and id and its number
// of chunks.
func (s *Redis) WriteUnpublished(ctx context.Context, f *Frame) (genKey, gen string, chunks int, err error) {
	h := f.Header
	h.Version, h.Rows = FrameVersion, len(f.Rows)
	gen = newGeneration()
	genKey = generationKey(HeadKey(h.KeyCluster(), h.Resource, h.Source), gen)
	chunks, err = s.writeChunks(ctx, genKey, h, f.Rows, delta{})
	return genKey, gen, chunks, err
}

// Publish swaps f's head to generation gen, as PutFrames does after
// writing; the aggregated frame is f's rows.
func (s *Redis) Publish(ctx context.Context, f *Frame, gen string, chunks int) error {
	h := f.Header
	h.Version, h.Rows = FrameVersion, len(f.Rows)
	vb, err := encodeHeader(h)
	if err != nil {
		return err
	}
	h.Source = Aggregated
	ab, err := encodeHeader(h)
	if err != nil {
		return err
	}
	return s.publish(ctx, HeadKey(h.KeyCluster(), h.Resource, h.Source), gen, chunks, vb, ab, nil)
}

// LegacyAggregatedKey is where layout 1 kept the aggregated frame.
func LegacyAggregatedKey(cluster, resource string) string {
	return legacyAggregatedKey(cluster, resource)
}
