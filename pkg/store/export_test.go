package store

import (
	"bytes"
	"context"
	"encoding/gob"
)

// WriteUnpublished writes f's chunks under a fresh generation and does not
// publish them, as a writer that dies before its swap leaves them. It
// returns the generation's key and id and its number of chunks.
func (s *Redis) WriteUnpublished(ctx context.Context, f *Frame) (genKey, gen string, chunks int, err error) {
	h := f.Header
	h.Version, h.Rows = FrameVersion, len(f.Rows)
	gen = newGeneration()
	genKey = generationKey(HeadKey(h.KeyCluster(), h.Resource, h.Source), gen)
	chunks, err = s.writeChunks(ctx, genKey, h, f.Rows)
	return genKey, gen, chunks, err
}

// Publish swaps f's head to generation gen, as PutFrame does after writing.
func (s *Redis) Publish(ctx context.Context, f *Frame, gen string, chunks int) error {
	h := f.Header
	h.Version, h.Rows = FrameVersion, len(f.Rows)
	var hb bytes.Buffer
	if err := gob.NewEncoder(&hb).Encode(&h); err != nil {
		return err
	}
	return s.publish(ctx, HeadKey(h.KeyCluster(), h.Resource, h.Source), gen, chunks, hb.Bytes())
}
