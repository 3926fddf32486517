package store

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Redis keeps chunks and event payloads compressed with zstd at its default
// level. Measured on realistic pods (BenchmarkCompression, docs/benchmarks.md):
// zstd takes a chunk of 512 pods to about half of what s2 does and one event
// to 0.40 of its gob against s2's 0.52, for about 1.4 GB/s encoding a chunk
// and 35 µs an event on this machine; s2 is three times faster, but Redis's
// memory is what is scarce, and a frame of 10,000 pods still compresses in
// tens of milliseconds.

// maxDecompressed bounds what one chunk or event may decompress to: a
// chunk holds at most ChunkBytes of objects (1 MiB by default) plus one
// object, which kube-apiserver caps near 1.5 MiB, and their labels, fields
// and cells. A corrupt or hostile value that claims more is an error, not
// an allocation of its claim.
const maxDecompressed = 64 << 20

var (
	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
	zstdDec  *zstd.Decoder
	zstdErr  error
)

// codecs returns the shared encoder and decoder; EncodeAll and DecodeAll
// are safe for concurrent use.
func codecs() (*zstd.Encoder, *zstd.Decoder, error) {
	zstdOnce.Do(func() {
		zstdEnc, zstdErr = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		if zstdErr != nil {
			return
		}
		zstdDec, zstdErr = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(maxDecompressed), zstd.WithDecoderMaxWindow(maxDecompressed))
	})
	return zstdEnc, zstdDec, zstdErr
}

// compress returns data compressed with zstd.
func compress(data []byte) ([]byte, error) {
	enc, _, err := codecs()
	if err != nil {
		return nil, fmt.Errorf("starting zstd: %w", err)
	}
	return enc.EncodeAll(data, make([]byte, 0, len(data)/4+64)), nil
}

// decompress reverses compress. Anything that is not a zstd frame, is cut
// short or decompresses to more than maxDecompressed is an error.
func decompress(data []byte) ([]byte, error) {
	_, dec, err := codecs()
	if err != nil {
		return nil, fmt.Errorf("starting zstd: %w", err)
	}
	out, err := dec.DecodeAll(data, nil)
	if err != nil {
		return nil, fmt.Errorf("decompressing %d bytes: %w", len(data), err)
	}
	return out, nil
}

// zstdMagic starts every zstd frame.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// Compress, Decompress and Compressed are the store's zstd for others that
// keep objects in Redis beside the frames (history's heads): Compressed
// tells a value Compress wrote from one written before it, as JSON.
func Compress(data []byte) ([]byte, error)   { return compress(data) }
func Decompress(data []byte) ([]byte, error) { return decompress(data) }
func Compressed(data []byte) bool            { return bytes.HasPrefix(data, zstdMagic) }
