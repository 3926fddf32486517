package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"mime"
	"strings"
	"sync"

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

// negotiate picks the first format in Accept that krm serves. Protobuf and
// CBOR are answered as JSON, which every Kubernetes client also reads; a
// Table or metadata version krm does not serve is skipped, as
// kube-apiserver does, in favour of the next choice.
func negotiate(accept []string) format {
	for _, mt := range parseAccept(accept) {
		as := mt.params["as"]
		if as == "" {
			return formatObject
		}
		if mt.params["g"] != "meta.k8s.io" || mt.params["v"] != "v1" {
			continue
		}
		switch as {
		case "Table":
			return formatTable
		case "PartialObjectMetadata", "PartialObjectMetadataList":
			return formatMetadata
		}
	}
	return formatObject
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
	meta  json.RawMessage
	err   error
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

// render returns row's cells and metadata, from the cache when its version
// was rendered before. table says whether cells are needed.
func (c *tableCache) render(row *store.Row, table bool) *rendered {
	c.mu.Lock()
	r := c.rows[row.UID]
	c.mu.Unlock()
	if r != nil && r.rv == row.ResourceVersion && (!table || r.cells != nil || r.err != nil) {
		return r
	}
	r = &rendered{rv: row.ResourceVersion}
	r.meta, r.err = topLevel(row.Object, "metadata")
	if r.err == nil && table {
		var obj unstructured.Unstructured
		if r.err = obj.UnmarshalJSON(row.Object); r.err == nil {
			r.cells, r.err = c.conv.Cells(&obj)
		}
	}
	c.mu.Lock()
	c.rows[row.UID] = r
	c.mu.Unlock()
	return r
}

// sweep drops the entries of objects that are not in live at the version
// cached, once the cache has grown past twice the live objects (plus 1,024):
// the cache never holds much more than the view it renders.
func (c *tableCache) sweep(live []*store.Row) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.rows) < c.sweepAt {
		return
	}
	keep := make(map[string]*rendered, len(live))
	for _, row := range live {
		if r := c.rows[row.UID]; r != nil && r.rv == row.ResourceVersion {
			keep[row.UID] = r
		}
	}
	c.rows = keep
	c.sweepAt = 2*len(live) + 1024
}
