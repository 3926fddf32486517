package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/render"
	"github.com/krm-project/krm/pkg/store"
)

// format is the shape of an answer, as content negotiation chose it.
type format int

const (
	formatObject   format = iota // the objects themselves, as JSON
	formatTable                  // meta.k8s.io/v1 Table
	formatMetadata               // meta.k8s.io/v1 PartialObjectMetadata(List)
)

type mediaType struct {
	typ    string
	params map[string]string
}

// parseAccept splits Accept headers into media types in the client's order
// of preference; q-values are not weighed, as kube-apiserver's negotiation
// by kubectl's and client-go's headers does not need them.
func parseAccept(values []string) []mediaType {
	var out []mediaType
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			typ, params, err := mime.ParseMediaType(part)
			if err != nil {
				continue
			}
			out = append(out, mediaType{typ: typ, params: params})
		}
	}
	return out
}

// answeredAsJSON are the media types krm answers, with JSON: JSON itself,
// the wildcards, and protobuf and CBOR, which every Kubernetes client that
// asks for them also reads as JSON.
var answeredAsJSON = map[string]bool{
	"application/json": true, "application/*": true, "*/*": true,
	"application/vnd.kubernetes.protobuf": true, "application/cbor": true,
}

// negotiate picks the first format in Accept that krm serves; a Table or
// metadata version krm does not serve is skipped, as kube-apiserver does,
// in favour of the next choice. No Accept header means the objects. ok is
// false when Accept names nothing krm serves: 406, as kube-apiserver.
func negotiate(accept []string) (f format, ok bool) {
	types := parseAccept(accept)
	if len(types) == 0 && len(strings.Join(accept, "")) == 0 {
		return formatObject, true
	}
	for _, mt := range types {
		if !answeredAsJSON[mt.typ] {
			continue
		}
		as := mt.params["as"]
		if as == "" {
			return formatObject, true
		}
		if mt.params["g"] != "meta.k8s.io" || mt.params["v"] != "v1" {
			continue
		}
		switch as {
		case "Table":
			return formatTable, true
		case "PartialObjectMetadata", "PartialObjectMetadataList":
			return formatMetadata, true
		}
	}
	return formatObject, false
}

// notAcceptable is the 406 for an Accept header negotiate found nothing in.
func notAcceptable(accept []string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusNotAcceptable, Reason: metav1.StatusReasonNotAcceptable,
		Message: fmt.Sprintf("the krm agent serves application/json: the objects, or as=Table or as=PartialObjectMetadata of meta.k8s.io/v1; the Accept header %q names none of them",
			strings.Join(accept, ", ")),
	}}
}

// topLevel returns the raw value of member key of the JSON object obj, or
// nil. It stops at the member, so finding "metadata" reads only the few
// bytes before it (stored objects have their keys sorted).
func topLevel(obj []byte, key string) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("the stored object is not a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		if k, _ := tok.(string); k == key {
			return raw, nil
		}
	}
	return nil, nil
}

// tableCaches keeps, per resource, a table converter and each object's
// cells and metadata, keyed by UID and resourceVersion: a Table or
// metadata read decodes an object once per version, not once per read.
type tableCaches struct {
	mu  sync.Mutex
	res map[string]*tableCache
}

func newTableCaches() *tableCaches { return &tableCaches{res: map[string]*tableCache{}} }

// tableCache is one resource's converter and cache.
type tableCache struct {
	conv *render.Converter
	mu   sync.Mutex
	rows map[string]*rendered
	// sweepAt is the size at which the next read sweeps out entries of
	// objects that changed or went away.
	sweepAt int
}

// rendered is what one object version renders to.
type rendered struct {
	rv    uint64
	cells []any // time-relative cells as render.Relative
	// server and age say which columns cells were made for (see
	// tableColumns).
	server bool
	age    int
	meta   json.RawMessage
	err    error
}

// tableColumns are the columns of one Table answer: the converter's, or,
// for a resource whose rows carry kube-apiserver's cells, the columns
// kube-apiserver sent with them, whose "Age" column (index age, -1 if none)
// is worked out again at each read.
type tableColumns struct {
	defs   []metav1.TableColumnDefinition
	server bool
	age    int
}

// columns picks the columns for a Table of res.
func (c *tableCache) columns(res api.Resource) tableColumns {
	if defs := res.TableColumns(); defs != nil {
		age := slices.IndexFunc(defs, func(d metav1.TableColumnDefinition) bool { return d.Name == "Age" })
		return tableColumns{defs: defs, server: true, age: age}
	}
	return tableColumns{defs: c.conv.Columns, age: -1}
}

func (t *tableCaches) forResource(info api.ResourceInfo) (*tableCache, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.res[info.Name]; c != nil {
		return c, nil
	}
	conv, err := render.NewConverter(schema.GroupKind{Group: info.Group, Kind: info.Kind}, info.PrinterColumns)
	if err != nil {
		return nil, err
	}
	c := &tableCache{conv: conv, rows: map[string]*rendered{}, sweepAt: 1024}
	t.res[info.Name] = c
	return c, nil
}

// render returns row's metadata and, when cols is not nil, its cells for
// those columns, from the cache when its version was rendered before for
// the same columns.
func (c *tableCache) render(row *store.Row, cols *tableColumns) *rendered {
	c.mu.Lock()
	r := c.rows[row.UID]
	c.mu.Unlock()
	if r != nil && r.rv == row.ResourceVersion && (cols == nil || r.err != nil ||
		r.cells != nil && r.server == cols.server && r.age == cols.age) {
		return r
	}
	r = &rendered{rv: row.ResourceVersion, age: -1}
	r.meta, r.err = topLevel(row.Object, "metadata")
	switch {
	case r.err != nil || cols == nil:
	case cols.server:
		r.server, r.age = true, cols.age
		r.cells, r.err = serverCells(row, r.meta, cols)
	default:
		var obj unstructured.Unstructured
		if r.err = obj.UnmarshalJSON(row.Object); r.err == nil {
			r.cells, r.err = c.conv.Cells(&obj)
		}
	}
	c.mu.Lock()
	// Only LISTs know the live objects to sweep by; watches and GETs
	// render too. Past twice the sweep size the cache starts over, so
	// it stays bounded whatever mix of requests comes.
	if len(c.rows) >= 2*c.sweepAt {
		c.rows = make(map[string]*rendered, c.sweepAt)
	}
	c.rows[row.UID] = r
	c.mu.Unlock()
	return r
}

// serverCells returns the cells kube-apiserver sent for row, as they were
// sent, but for the Age column: kube-apiserver wrote it when the object last
// changed, so it is made again from creationTimestamp at each read, as
// kube-apiserver's printers make it. A row without cells (from a frame
// written before the agent kept them) gets its name and age, and empty
// cells elsewhere, until the next LIST brings its cells.
func serverCells(row *store.Row, meta json.RawMessage, cols *tableColumns) ([]any, error) {
	var raw []json.RawMessage
	if len(row.Cells) > 0 {
		if err := json.Unmarshal(row.Cells, &raw); err != nil {
			return nil, fmt.Errorf("the stored cells of %s: %w", row.Key(), err)
		}
	}
	cells := make([]any, max(len(raw), len(cols.defs)))
	for i := range cells {
		switch {
		case i < len(raw):
			cells[i] = raw[i]
		case len(raw) == 0 && cols.defs[i].Name == "Name":
			cells[i] = row.Name
		default:
			cells[i] = ""
		}
	}
	if cols.age >= 0 && cols.age < len(cells) {
		var m struct {
			CreationTimestamp metav1.Time `json:"creationTimestamp"`
		}
		if len(meta) > 0 {
			if err := json.Unmarshal(meta, &m); err != nil {
				return nil, fmt.Errorf("the metadata of %s: %w", row.Key(), err)
			}
		}
		cells[cols.age] = render.Relative{Time: m.CreationTimestamp.Time}
	}
	return cells, nil
}

// sweep drops the entries of objects that are not in live at the version
// cached, once the cache has grown past twice the live objects (plus 1,024):
// the cache never holds much more than the view it renders.
func (c *tableCache) sweep(live *store.View) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.rows) < c.sweepAt {
		return
	}
	keep := make(map[string]*rendered, live.Len())
	live.Ascend(func(row *store.Row) bool {
		if r := c.rows[row.UID]; r != nil && r.rv == row.ResourceVersion {
			keep[row.UID] = r
		}
		return true
	})
	c.rows = keep
	c.sweepAt = 2*live.Len() + 1024
}
