package store

import (
	"context"
	"fmt"
	"sync"
)

// Store persists frames. The agent serves reads from its own memory; a store
// is what lets it (or another replica) start warm.
type Store interface {
	// PutFrames replaces a resource's verified and aggregated frames
	// together. Readers see the old pair or the new one, never a mix.
	PutFrames(ctx context.Context, verified, aggregated *Frame) error
	// GetFrames returns the pair last put, or ErrNotFound. cluster is the
	// frames' Header.KeyCluster().
	GetFrames(ctx context.Context, cluster, resource string) (verified, aggregated *Frame, err error)
}

// ErrNotFound is returned when no frame was stored.
var ErrNotFound = fmt.Errorf("frame not found")

// Memory is the default store: frames in a map. Rows are immutable and
// shared with the agent's views, so keeping a frame costs its row slice, not
// a second copy of every object.
type Memory struct {
	mu     sync.RWMutex
	frames map[string]*Frame
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{frames: map[string]*Frame{}}
}

func memoryKey(cluster, resource string, source Source) string {
	return cluster + "/" + resource + "/" + string(source)
}

// PutFrames implements Store.
func (m *Memory) PutFrames(ctx context.Context, verified, aggregated *Frame) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.putLocked(verified)
	m.putLocked(aggregated)
	return nil
}

// GetFrames implements Store.
func (m *Memory) GetFrames(ctx context.Context, cluster, resource string) (verified, aggregated *Frame, err error) {
	if verified, err = m.GetFrame(ctx, cluster, resource, Verified); err != nil {
		return nil, nil, err
	}
	if aggregated, err = m.GetFrame(ctx, cluster, resource, Aggregated); err != nil {
		return nil, nil, err
	}
	return verified, aggregated, nil
}

// PutFrame replaces the frame of f's cluster, resource and source alone.
func (m *Memory) PutFrame(_ context.Context, f *Frame) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.putLocked(f)
	return nil
}

func (m *Memory) putLocked(f *Frame) {
	c := &Frame{Header: f.Header, Rows: append([]*Row(nil), f.Rows...)}
	c.Header.Version = FrameVersion
	c.Header.Rows = len(c.Rows)
	m.frames[memoryKey(c.Header.KeyCluster(), f.Header.Resource, f.Header.Source)] = c
}

// GetFrame returns the frame of one source last put, or ErrNotFound.
func (m *Memory) GetFrame(_ context.Context, cluster, resource string, source Source) (*Frame, error) {
	m.mu.RLock()
	f, ok := m.frames[memoryKey(cluster, resource, source)]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%s %s frame of cluster %q: %w", resource, source, cluster, ErrNotFound)
	}
	return &Frame{Header: f.Header, Rows: append([]*Row(nil), f.Rows...)}, nil
}
