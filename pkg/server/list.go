package server

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/render"
	"github.com/krm-project/krm/pkg/store"
)

// writers are reused across responses: a list of thousands of objects is
// written in large chunks without a fresh 64 KiB buffer per request.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(io.Discard, 64<<10) }}

func getWriter(w io.Writer) *bufio.Writer {
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func putWriter(bw *bufio.Writer) {
	bw.Reset(io.Discard)
	writers.Put(bw)
}

const expiredContinue = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."

// listSnapshot picks the snapshot a LIST is answered from, by its
// resourceVersion, resourceVersionMatch and continue, as kube-apiserver
// does; after is the key the page starts after.
func (s *Server) listSnapshot(r *http.Request, req *request) (snap *api.Snapshot, after string, err error) {
	info := req.info
	if req.opts.Continue != "" {
		tok, err := decodeContinue(req.opts.Continue, info)
		if err != nil {
			return nil, "", err
		}
		if snap = s.pages.get(info.Name, req.view, tok.RV); snap == nil {
			return nil, "", apierrors.NewResourceExpired(expiredContinue)
		}
		return snap, tok.Key, nil
	}
	switch {
	case !req.at.IsZero():
		if req.rv != 0 {
			return nil, "", badRequest("at and resourceVersion exclude each other: give one")
		}
		snap, err = historySnapshot(req.res, req.at, 0)
		return snap, "", err
	case req.rv == 0:
		return req.res.Snapshot(req.view), "", nil
	case req.opts.ResourceVersionMatch == metav1.ResourceVersionMatchExact:
		if snap = s.pages.get(info.Name, req.view, req.rv); snap != nil {
			return snap, "", nil
		}
		if snap, err = s.snapshotAtLeast(r.Context(), req, req.rv); err != nil {
			return nil, "", err
		}
		if snap.Header.ResourceVersion != req.rv {
			// Older than the view: history answers, as kube-apiserver
			// answers from etcd within its compaction window.
			snap, err = historySnapshot(req.res, time.Time{}, req.rv)
			return snap, "", err
		}
		return snap, "", nil
	default:
		snap, err = s.snapshotAtLeast(r.Context(), req, req.rv)
		return snap, "", err
	}
}

func (s *Server) serveList(w http.ResponseWriter, r *http.Request, req *request) {
	snap, after, err := s.listSnapshot(r, req)
	if !s.admit(w, req, snap, err) {
		return
	}
	page, remaining := selectPage(snap.Rows, req, after)
	meta := listMeta{rv: snap.Header.ResourceVersion}
	if remaining > 0 {
		s.pages.put(req.info.Name, req.view, snap)
		meta.cont = encodeContinue(req.info.Name, snap.Header.ResourceVersion, page[len(page)-1].Key())
		if !req.filtered() {
			meta.remaining = remaining
		}
	}
	switch req.format {
	case formatTable:
		s.writeTable(w, req, snap, page, meta)
	case formatMetadata:
		s.writeMetadataList(w, req, snap, page, meta)
	default:
		s.writeObjectList(w, req, page, meta)
	}
}

// listMeta is a list's metadata.
type listMeta struct {
	rv        uint64
	cont      string
	remaining int
}

func (m listMeta) append(buf []byte) []byte {
	buf = append(buf, `"metadata":{"resourceVersion":"`...)
	buf = strconv.AppendUint(buf, m.rv, 10)
	buf = append(buf, '"')
	if m.cont != "" {
		buf = append(buf, `,"continue":`...)
		buf = appendString(buf, m.cont)
	}
	if m.remaining > 0 {
		buf = append(buf, `,"remainingItemCount":`...)
		buf = strconv.AppendInt(buf, int64(m.remaining), 10)
	}
	return append(buf, '}')
}

// selectPage picks the rows of one page after key after (all of them when
// after is ""), and counts the matching rows past it.
func selectPage(rows *store.View, req *request, after string) (page []*store.Row, remaining int) {
	limit := req.opts.Limit
	filtered := req.filtered()
	ascendRequest(rows, req, after, func(row *store.Row) bool {
		if filtered && !req.selects(row) {
			return true
		}
		if limit > 0 && int64(len(page)) == limit {
			remaining++
			return true
		}
		page = append(page, row)
		return true
	})
	return page, remaining
}

// ascendRequest calls fn, in key order, for each row of the request's
// namespace (every row without one) after key after ("" for all), until
// fn returns false.
func ascendRequest(rows *store.View, req *request, after string, fn func(*store.Row) bool) {
	if req.namespace != "" {
		rows.AscendNamespace(req.namespace, after, fn)
	} else {
		rows.AscendAfter(after, fn)
	}
}

// eachRow calls fn for each row of the request's namespace (every row
// without one) that its selectors select, in key order.
func eachRow(rows *store.View, req *request, fn func(*store.Row)) {
	ascendRequest(rows, req, "", func(row *store.Row) bool {
		if req.selects(row) {
			fn(row)
		}
		return true
	})
}

func (s *Server) writeObjectList(w http.ResponseWriter, req *request, page []*store.Row, meta listMeta) {
	w.Header().Set("Content-Type", "application/json")
	bw := getWriter(w)
	defer putWriter(bw)
	buf := bw.AvailableBuffer()
	buf = append(buf, `{"kind":`...)
	buf = appendString(buf, req.info.Kind+"List")
	buf = append(buf, `,"apiVersion":`...)
	buf = appendString(buf, req.info.APIVersion())
	buf = append(buf, ',')
	buf = meta.append(buf)
	buf = append(buf, `,"items":[`...)
	_, _ = bw.Write(buf)
	// The items are the stored bytes as they are: re-encoding every object
	// on every read is what this cache exists to avoid.
	for i, row := range page {
		if i > 0 {
			_ = bw.WriteByte(',')
		}
		_, _ = bw.Write(objectBytes(row))
	}
	_, _ = bw.WriteString("]}\n")
	if err := bw.Flush(); err != nil {
		s.log.Debug("writing list", "resource", req.info.Name, "err", err)
	}
}

func (s *Server) writeMetadataList(w http.ResponseWriter, req *request, snap *api.Snapshot, page []*store.Row, meta listMeta) {
	cache, err := s.tables.forResource(req.info)
	if err != nil {
		s.writeStatus(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	bw := getWriter(w)
	defer putWriter(bw)
	buf := bw.AvailableBuffer()
	buf = append(buf, `{"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1",`...)
	buf = meta.append(buf)
	buf = append(buf, `,"items":[`...)
	_, _ = bw.Write(buf)
	for i, row := range page {
		if i > 0 {
			_ = bw.WriteByte(',')
		}
		_, _ = bw.Write(appendMetadata(bw.AvailableBuffer(), cache.render(row, nil).meta))
	}
	_, _ = bw.WriteString("]}\n")
	if err := bw.Flush(); err != nil {
		s.log.Debug("writing metadata list", "resource", req.info.Name, "err", err)
	}
	cache.sweep(snap.Rows)
}

// appendMetadata appends a PartialObjectMetadata with metadata meta.
func appendMetadata(buf []byte, meta json.RawMessage) []byte {
	buf = append(buf, `{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":`...)
	if len(meta) == 0 {
		buf = append(buf, "{}"...)
	} else {
		buf = append(buf, meta...)
	}
	return append(buf, '}')
}

// writeTable answers with a meta.k8s.io/v1 Table of page.
func (s *Server) writeTable(w http.ResponseWriter, req *request, snap *api.Snapshot, page []*store.Row, meta listMeta) {
	cache, err := s.tables.forResource(req.info)
	if err != nil {
		s.writeStatus(w, err)
		return
	}
	tc := cache.columns(req.res)
	cols, err := json.Marshal(tc.defs)
	if err != nil {
		s.writeStatus(w, err)
		return
	}
	now := s.now()
	w.Header().Set("Content-Type", "application/json")
	bw := getWriter(w)
	defer putWriter(bw)
	buf := bw.AvailableBuffer()
	buf = append(buf, `{"kind":"Table","apiVersion":"meta.k8s.io/v1",`...)
	buf = meta.append(buf)
	buf = append(buf, `,"columnDefinitions":`...)
	buf = append(buf, cols...)
	buf = append(buf, `,"rows":[`...)
	_, _ = bw.Write(buf)
	for i, row := range page {
		if i > 0 {
			_ = bw.WriteByte(',')
		}
		b, err := s.tableRow(bw.AvailableBuffer(), cache, &tc, req, row, now)
		if err != nil {
			// The status line is sent; the broken body tells the client.
			s.log.Error("rendering a table row", "resource", req.info.Name, "object", row.Key(), "err", err)
			return
		}
		_, _ = bw.Write(b)
	}
	_, _ = bw.WriteString("]}\n")
	if err := bw.Flush(); err != nil {
		s.log.Debug("writing table", "resource", req.info.Name, "err", err)
	}
	cache.sweep(snap.Rows)
}

// tableRow appends one TableRow for row.
func (s *Server) tableRow(buf []byte, cache *tableCache, cols *tableColumns, req *request, row *store.Row, now time.Time) ([]byte, error) {
	rnd := cache.render(row, cols)
	if rnd.err != nil {
		return nil, rnd.err
	}
	cells, err := json.Marshal(render.Resolve(rnd.cells, now))
	if err != nil {
		return nil, err
	}
	buf = append(buf, `{"cells":`...)
	buf = append(buf, cells...)
	switch req.includeObject {
	case metav1.IncludeMetadata:
		buf = append(buf, `,"object":`...)
		buf = appendMetadata(buf, rnd.meta)
	case metav1.IncludeObject:
		buf = append(buf, `,"object":`...)
		buf = append(buf, objectBytes(row)...)
	}
	return append(buf, '}'), nil
}

func (s *Server) serveGet(w http.ResponseWriter, r *http.Request, req *request) {
	snap, err := s.snapshotAtLeast(r.Context(), req, req.rv)
	if !s.admit(w, req, snap, err) {
		return
	}
	row := snap.Rows.Get(req.namespace, req.name)
	if row == nil || (req.info.Namespaced && req.namespace == "") {
		s.writeStatus(w, apierrors.NewNotFound(schema.GroupResource{Group: req.info.Group, Resource: req.info.Resource}, req.name))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch req.format {
	case formatTable:
		s.writeTable(w, req, snap, []*store.Row{row}, listMeta{rv: snap.Header.ResourceVersion})
	case formatMetadata:
		cache, err := s.tables.forResource(req.info)
		if err != nil {
			s.writeStatus(w, err)
			return
		}
		_, _ = w.Write(append(appendMetadata(nil, cache.render(row, nil).meta), '\n'))
	default:
		_, _ = w.Write(append(objectBytes(row), '\n'))
	}
}

// objectBytes keeps the output valid JSON even for a row built without an
// object, which would otherwise break every reader of the whole list.
func objectBytes(row *store.Row) []byte {
	if len(row.Object) == 0 {
		return []byte("null")
	}
	return row.Object
}

// appendString appends s as a JSON string.
func appendString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			b, _ := json.Marshal(s)
			return append(buf, b...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}

// continueToken is the decoded continue parameter: the snapshot's
// resourceVersion and the last key served, so every page comes from the
// same snapshot.
type continueToken struct {
	Version  int    `json:"v"`
	Resource string `json:"r"`
	RV       uint64 `json:"rv"`
	Key      string `json:"k"`
}

const continueVersion = 2

func encodeContinue(resource string, rv uint64, key string) string {
	b, _ := json.Marshal(continueToken{Version: continueVersion, Resource: resource, RV: rv, Key: key})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeContinue(s string, info api.ResourceInfo) (continueToken, error) {
	var t continueToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err != nil || t.Version != continueVersion || t.Key == "" {
		return t, badRequest("invalid continue token: it is not one this server issued")
	}
	if t.Resource != info.Name {
		return t, badRequest("invalid continue token: it was issued for %s, not %s", strconv.Quote(t.Resource), info.Name)
	}
	return t, nil
}

// pageCache keeps the snapshots that paginated LISTs are being served from,
// so that every page of one LIST comes from the same snapshot. Snapshots
// share rows with the views; each costs a slice of pointers and pins the
// rows that have changed since.
type pageCache struct {
	now     func() time.Time
	ttl     time.Duration
	mu      sync.Mutex
	entries []pageEntry
	// sweeper expires the entries when no LIST comes to do it, so a
	// snapshot is let go pageTTL after its last page even when nothing
	// more is read; nil while the cache is empty.
	sweeper *time.Timer
}

type pageEntry struct {
	resource string
	view     store.Source
	snap     *api.Snapshot
	used     time.Time
}

// Bounds of the page cache: at most pagesKept snapshots, each kept
// pageTTL after its last use (kube-apiserver's continue tokens live about
// as long as etcd's five-minute compaction). A snapshot is a copy-on-write
// clone of the view: what it holds beyond the view is the tree nodes and
// rows changed since it was taken, which the snapshots taken between two
// changes share, so their memory is bounded by the changes made in
// pageTTL, not by their number. pagesKept only bounds the bookkeeping and
// how many paginated LISTs may be in flight at once before the least
// recently used gets 410 Gone; 16 was too few for 40 clients.
const (
	pagesKept = 1024
	pageTTL   = 5 * time.Minute
)

func newPageCache(now func() time.Time) *pageCache { return &pageCache{now: now, ttl: pageTTL} }

func (c *pageCache) get(resource string, view store.Source, rv uint64) *api.Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire()
	for i := range c.entries {
		e := &c.entries[i]
		if e.resource == resource && e.view == view && e.snap.Header.ResourceVersion == rv {
			e.used = c.now()
			return e.snap
		}
	}
	return nil
}

func (c *pageCache) put(resource string, view store.Source, snap *api.Snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire()
	now := c.now()
	for i := range c.entries {
		e := &c.entries[i]
		if e.resource == resource && e.view == view && e.snap.Header.ResourceVersion == snap.Header.ResourceVersion {
			e.used = now
			return
		}
	}
	if len(c.entries) == pagesKept {
		oldest := 0
		for i := range c.entries {
			if c.entries[i].used.Before(c.entries[oldest].used) {
				oldest = i
			}
		}
		c.entries = append(c.entries[:oldest], c.entries[oldest+1:]...)
	}
	c.entries = append(c.entries, pageEntry{resource: resource, view: view, snap: snap, used: now})
	if c.sweeper == nil {
		c.sweeper = time.AfterFunc(c.ttl, c.sweep)
	}
}

// sweep expires the entries and comes back when the oldest left is due.
func (c *pageCache) sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire()
	if len(c.entries) == 0 {
		c.sweeper = nil
		return
	}
	oldest := c.entries[0].used
	for _, e := range c.entries {
		if e.used.Before(oldest) {
			oldest = e.used
		}
	}
	// At least a second apart, whatever the clock says.
	c.sweeper.Reset(max(oldest.Add(c.ttl).Sub(c.now()), time.Second))
}

func (c *pageCache) expire() {
	cut := c.now().Add(-c.ttl)
	kept := c.entries[:0]
	for _, e := range c.entries {
		if e.used.After(cut) {
			kept = append(kept, e)
		}
	}
	clear(c.entries[len(kept):])
	c.entries = kept
}
