package store

import (
	"context"
	"fmt"
	"sync"
)

// Store persists frames. The agent serves reads from its own memory; a store
// is what lets it (or another replica) start warm.
type Store interface {
	// PutFrame replaces the frame for f's cluster, resource and source.
	// Readers see the old frame or the new one, never a mix.
	PutFrame(ctx context.Context, f *Frame) error
	// GetFrame returns the frame last put, or ErrNotFound. cluster is the
	// frame's Header.KeyCluster().
	GetFrame(ctx context.Context, cluster, resource string, source Source) (*Frame, error)
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

// PutFrame implements Store.
func (m *Memory) PutFrame(_ context.Context, f *Frame) error {
	c := &Frame{Header: f.Header, Rows: append([]*Row(nil), f.Rows...)}
	c.Header.Version = FrameVersion
	c.Header.Rows = len(c.Rows)
	m.mu.Lock()
	m.frames[memoryKey(c.Header.KeyCluster(), f.Header.Resource, f.Header.Source)] = c
	m.mu.Unlock()
	return nil
}

// GetFrame implements Store.
func (m *Memory) GetFrame(_ context.Context, cluster, resource string, source Source) (*Frame, error) {
	m.mu.RLock()
	f, ok := m.frames[memoryKey(cluster, resource, source)]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%s %s frame of cluster %q: %w", resource, source, cluster, ErrNotFound)
	}
	return &Frame{Header: f.Header, Rows: append([]*Row(nil), f.Rows...)}, nil
}
