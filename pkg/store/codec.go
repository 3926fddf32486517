package store

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
)

// ErrVersion is returned by Decode for a frame of an unknown version.
var ErrVersion = errors.New("unknown frame version")

// Encode gob-encodes f, stamping the current FrameVersion.
func Encode(f *Frame) ([]byte, error) {
	h := f.Header
	h.Version = FrameVersion
	h.Rows = len(f.Rows)
	var buf bytes.Buffer
	enc := gob.NewEncoder(&buf)
	if err := enc.Encode(&h); err != nil {
		return nil, fmt.Errorf("encoding frame header %s/%s: %w", h.Resource, h.Source, err)
	}
	for _, r := range f.Rows {
		if err := enc.Encode(r); err != nil {
			return nil, fmt.Errorf("encoding row %s of %s: %w", r.Key(), h.Resource, err)
		}
	}
	return buf.Bytes(), nil
}

// Decode reads a frame written by Encode. A frame of another version, a
// truncated frame or a row count that does not match the header is an error;
// nothing partial is returned.
func Decode(data []byte) (*Frame, error) {
	dec := gob.NewDecoder(bytes.NewReader(data))
	var h Header
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("decoding frame header: %w", err)
	}
	if h.Version != FrameVersion {
		return nil, fmt.Errorf("%w %d (this build reads %d)", ErrVersion, h.Version, FrameVersion)
	}
	if h.Rows < 0 {
		return nil, fmt.Errorf("decoding frame %s/%s: negative row count %d", h.Resource, h.Source, h.Rows)
	}
	f := &Frame{Header: h, Rows: make([]*Row, 0, min(h.Rows, 1<<16))}
	for i := range h.Rows {
		r := new(Row)
		if err := dec.Decode(r); err != nil {
			return nil, fmt.Errorf("decoding row %d of %d of %s/%s: %w", i+1, h.Rows, h.Resource, h.Source, err)
		}
		f.Rows = append(f.Rows, r)
	}
	return f, nil
}
