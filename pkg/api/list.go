package api

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

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
	// Drop the reference to the ResponseWriter so the pool keeps nothing alive.
	bw.Reset(io.Discard)
	writers.Put(bw)
}

func (s *Server) listOrWatch(w http.ResponseWriter, r *http.Request) {
	res, ok := s.resource(w, r)
	if !ok {
		return
	}
	info := res.Info()
	q, err := parseListQuery(r.URL.Query(), info)
	if err != nil {
		writeErr(w, err)
		return
	}
	if q.watch {
		label(w, "watch", info.Name)
		s.watch(w, r, res, info, q)
		return
	}

	snap := res.Snapshot(q.view)
	s.setFreshness(w, snap)
	if err := s.checkStaleness(info, snap, q.maxStaleness); err != nil {
		writeErr(w, err)
		return
	}
	page, remaining := selectPage(snap.Rows, q)

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := getWriter(w)
	defer putWriter(bw)

	// The items are the stored bytes, spliced in as they are: re-encoding
	// every object on every read is what this cache exists to avoid.
	buf := bw.AvailableBuffer()
	buf = append(buf, `{"apiVersion":`...)
	buf = appendString(buf, info.APIVersion())
	buf = append(buf, `,"kind":`...)
	buf = appendString(buf, info.Kind+"List")
	buf = append(buf, `,"metadata":{"resourceVersion":`...)
	buf = appendString(buf, store.FormatResourceVersion(snap.Header.ResourceVersion))
	if remaining > 0 {
		buf = append(buf, `,"continue":`...)
		buf = appendString(buf, encodeContinue(info.Name, page[len(page)-1].Key()))
		buf = append(buf, `,"remainingItemCount":`...)
		buf = strconv.AppendInt(buf, int64(remaining), 10)
	}
	buf = append(buf, `},"items":[`...)
	_, _ = bw.Write(buf)
	for i, row := range page {
		if i > 0 {
			_ = bw.WriteByte(',')
		}
		_, _ = bw.Write(objectBytes(row))
	}

	_, _ = bw.WriteString(`],"krm":{"header":`)
	hdr, _ := json.Marshal(frameHeader(info, snap, q.view, len(page)))
	_, _ = bw.Write(hdr)
	_, _ = bw.WriteString(`,"rows":[`)
	for i, row := range page {
		buf := bw.AvailableBuffer()
		if i > 0 {
			buf = append(buf, ',')
		}
		_, _ = bw.Write(appendRowMeta(buf, row))
	}
	_, _ = bw.WriteString("]}}\n")
	// bufio.Writer keeps the first write error and returns it here.
	if err := bw.Flush(); err != nil {
		s.log.Debug("writing list", "resource", info.Name, "err", err)
	}
}

// selectPage picks the rows of one page and counts the matching rows after it.
func selectPage(rows []*store.Row, q *listQuery) (page []*store.Row, remaining int) {
	if q.namespace != "" {
		rows = namespaceRange(rows, q.namespace)
	}
	if q.hasAfter {
		i := sort.Search(len(rows), func(i int) bool { return rows[i].Key() > q.after })
		rows = rows[i:]
	}
	if !q.filtered() {
		// Without selectors the page is a slice of the snapshot: no copy.
		if q.limit > 0 && int64(len(rows)) > q.limit {
			return rows[:q.limit], len(rows) - int(q.limit)
		}
		return rows, 0
	}
	for _, row := range rows {
		if !q.selects(row) {
			continue
		}
		if q.limit > 0 && int64(len(page)) == q.limit {
			remaining++
			continue
		}
		page = append(page, row)
	}
	return page, remaining
}

// namespaceRange returns the rows of namespace ns. Rows are sorted by
// "namespace/name", so one namespace's rows are the contiguous run of keys
// from ns+"/" up to ns+"0" ('0' follows '/').
func namespaceRange(rows []*store.Row, ns string) []*store.Row {
	lo, hi := ns+"/", ns+"0"
	i := sort.Search(len(rows), func(i int) bool { return rows[i].Key() >= lo })
	j := i + sort.Search(len(rows)-i, func(j int) bool { return rows[i+j].Key() >= hi })
	return rows[i:j]
}

// findRow finds the row namespace/name by binary search.
func findRow(rows []*store.Row, namespace, name string) *store.Row {
	key := name
	if namespace != "" {
		key = namespace + "/" + name
	}
	i := sort.Search(len(rows), func(i int) bool { return rows[i].Key() >= key })
	if i < len(rows) && rows[i].Namespace == namespace && rows[i].Name == name {
		return rows[i]
	}
	return nil
}

// objectBytes keeps the output valid JSON even for a row built without an
// object, which would otherwise break every reader of the whole list.
func objectBytes(row *store.Row) []byte {
	if len(row.Object) == 0 {
		return []byte("null")
	}
	return row.Object
}

func frameHeader(info ResourceInfo, snap *Snapshot, view store.Source, returned int) FrameHeader {
	if snap.Header.Source != "" {
		view = snap.Header.Source
	}
	return FrameHeader{
		Cluster:                 snap.Header.Cluster,
		Resource:                info.Name,
		View:                    string(view),
		ResourceVersion:         store.FormatResourceVersion(snap.Header.ResourceVersion),
		VerifiedAt:              snap.Header.VerifiedAt,
		VerifiedResourceVersion: store.FormatResourceVersion(snap.VerifiedResourceVersion),
		Rows:                    len(snap.Rows),
		Returned:                returned,
	}
}

// appendRowMeta appends row's RowMeta as encoding/json would write it, but
// without reflection: a list writes one per item.
func appendRowMeta(buf []byte, row *store.Row) []byte {
	buf = append(buf, `{"uid":`...)
	buf = appendString(buf, row.UID)
	if row.Namespace != "" {
		buf = append(buf, `,"namespace":`...)
		buf = appendString(buf, row.Namespace)
	}
	buf = append(buf, `,"name":`...)
	buf = appendString(buf, row.Name)
	buf = append(buf, `,"resourceVersion":"`...)
	if row.ResourceVersion != 0 {
		buf = strconv.AppendUint(buf, row.ResourceVersion, 10)
	}
	buf = append(buf, `","source":`...)
	buf = appendString(buf, string(row.Source))
	if !row.ObservedAt.IsZero() {
		buf = append(buf, `,"observedAt":"`...)
		buf = row.ObservedAt.AppendFormat(buf, time.RFC3339Nano)
		buf = append(buf, '"')
	}
	return append(buf, '}')
}

// appendString appends s as a JSON string. Kubernetes names and UIDs are
// plain ASCII, so the common case is a copy; anything else goes through
// encoding/json for correct escaping.
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
