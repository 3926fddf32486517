package store_test

import (
	"bytes"
	"encoding/gob"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/krm-project/krm/pkg/store"
)

// BenchmarkCompression compares the codecs considered for Redis chunks and
// event payloads on realistic pods: a chunk of 512 rows gob-encoded, and one
// row alone (an event). It reports the compressed size against the input
// and the CPU per input MB both ways. Run it with:
//
//	go test ./pkg/store -run '^$' -bench Compression -benchtime 20x
func BenchmarkCompression(b *testing.B) {
	f := realisticPods("c", store.Verified, 512)
	var chunk bytes.Buffer
	enc := gob.NewEncoder(&chunk)
	for _, r := range f.Rows {
		if err := enc.Encode(r); err != nil {
			b.Fatal(err)
		}
	}
	var one bytes.Buffer
	if err := gob.NewEncoder(&one).Encode(f.Rows[7]); err != nil {
		b.Fatal(err)
	}
	type codec struct {
		name string
		enc  func([]byte) []byte
		dec  func([]byte) ([]byte, error)
	}
	zs := func(level zstd.EncoderLevel) codec {
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1))
		d, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		return codec{"zstd-" + level.String(), func(p []byte) []byte { return e.EncodeAll(p, nil) }, func(p []byte) ([]byte, error) { return d.DecodeAll(p, nil) }}
	}
	codecs := []codec{
		zs(zstd.SpeedFastest), zs(zstd.SpeedDefault), zs(zstd.SpeedBetterCompression),
		{"s2", func(p []byte) []byte { return s2.Encode(nil, p) }, func(p []byte) ([]byte, error) { return s2.Decode(nil, p) }},
		{"s2-better", func(p []byte) []byte { return s2.EncodeBetter(nil, p) }, func(p []byte) ([]byte, error) { return s2.Decode(nil, p) }},
	}
	for _, in := range []struct {
		name string
		data []byte
	}{{"chunk512", chunk.Bytes()}, {"event", one.Bytes()}} {
		for _, c := range codecs {
			b.Run(in.name+"/"+c.name+"/encode", func(b *testing.B) {
				b.SetBytes(int64(len(in.data)))
				var out []byte
				for b.Loop() {
					out = c.enc(in.data)
				}
				b.ReportMetric(float64(len(out))/float64(len(in.data)), "ratio")
			})
			b.Run(in.name+"/"+c.name+"/decode", func(b *testing.B) {
				z := c.enc(in.data)
				b.SetBytes(int64(len(in.data)))
				for b.Loop() {
					if _, err := c.dec(z); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
