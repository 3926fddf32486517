package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// tableAccept asks for a Table, and takes plain JSON from a server that
// serves no Tables for the resource (as kubectl's own Accept does).
const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"

// pageCellsKey holds, in a LIST page from a tableSource, the cells of each
// item ([][]byte, in Items' order). The page's own map is never stored or
// served, so the objects stay exactly what kube-apiserver sent.
const pageCellsKey = "krm.io/cells"

// tableCodecs decode the Status of a failed request, all a tableSource
// needs from a serializer: bodies are decoded here.
var tableCodecs = func() serializer.CodecFactory {
	s := runtime.NewScheme()
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	return serializer.NewCodecFactory(s)
}()

// newTableClient makes the REST client tableSources share.
func newTableClient(cfg *rest.Config) (rest.Interface, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.NegotiatedSerializer = tableCodecs.WithoutConversion()
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	return rest.UnversionedRESTClientFor(cfg)
}

// tableSource lists and watches one resource as kube-apiserver's Tables with
// the objects included, for a kind krm has no printer for: each row's cells
// are kept beside its object, so the agent serves the columns kubectl
// prints without porting the kind's printer. It keeps the latest column
// definitions kube-apiserver sent.
type tableSource struct {
	client  rest.Interface
	path    string
	columns atomic.Pointer[[]metav1.TableColumnDefinition]
}

func newTableSource(client rest.Interface, gvr schema.GroupVersionResource, namespace string) *tableSource {
	p := "/apis/" + gvr.Group + "/" + gvr.Version
	if gvr.Group == "" {
		p = "/api/" + gvr.Version
	}
	if namespace != "" {
		p += "/namespaces/" + namespace
	}
	return &tableSource{client: client, path: p + "/" + gvr.Resource}
}

// Columns returns the latest column definitions, nil before any arrived.
func (t *tableSource) Columns() []metav1.TableColumnDefinition {
	if c := t.columns.Load(); c != nil {
		return *c
	}
	return nil
}

func (t *tableSource) setColumns(cols []metav1.TableColumnDefinition) {
	if len(cols) > 0 {
		t.columns.Store(&cols)
	}
}

func (t *tableSource) request(opts metav1.ListOptions) *rest.Request {
	return t.client.Get().AbsPath(t.path).
		SetHeader("Accept", tableAccept).
		SpecificallyVersionedParams(&opts, metav1.ParameterCodec, metav1.SchemeGroupVersion).
		Param("includeObject", string(metav1.IncludeObject))
}

// List returns one page. Its items are the rows' objects; their cells are
// under pageCellsKey (see pageCells).
func (t *tableSource) List(ctx context.Context, opts metav1.ListOptions) (*unstructured.UnstructuredList, error) {
	opts.Watch = false
	res := t.request(opts).Do(ctx)
	// Error, not Raw, decodes a failure's Status (410 Expired and the like).
	if err := res.Error(); err != nil {
		return nil, err
	}
	body, _ := res.Raw()
	return t.decodeList(body)
}

// wireTable is a meta.k8s.io/v1 Table as it arrives, cells kept as bytes.
type wireTable struct {
	Kind              string                         `json:"kind"`
	Metadata          metav1.ListMeta                `json:"metadata"`
	ColumnDefinitions []metav1.TableColumnDefinition `json:"columnDefinitions"`
	Rows              []wireRow                      `json:"rows"`
}

type wireRow struct {
	Cells  json.RawMessage `json:"cells"`
	Object json.RawMessage `json:"object"`
}

func (t *tableSource) decodeList(body []byte) (*unstructured.UnstructuredList, error) {
	var tab wireTable
	if err := json.Unmarshal(body, &tab); err != nil {
		return nil, fmt.Errorf("decoding a Table from %s: %w", t.path, err)
	}
	if tab.Kind != "Table" {
		list := &unstructured.UnstructuredList{}
		if err := list.UnmarshalJSON(body); err != nil {
			return nil, fmt.Errorf("decoding a list from %s: %w", t.path, err)
		}
		return list, nil
	}
	t.setColumns(tab.ColumnDefinitions)
	list := &unstructured.UnstructuredList{Object: map[string]any{}, Items: make([]unstructured.Unstructured, 0, len(tab.Rows))}
	list.SetResourceVersion(tab.Metadata.ResourceVersion)
	list.SetContinue(tab.Metadata.Continue)
	cells := make([][]byte, 0, len(tab.Rows))
	for i, row := range tab.Rows {
		obj, err := rowObject(row.Object)
		if err != nil {
			return nil, fmt.Errorf("row %d of a Table from %s: %w", i, t.path, err)
		}
		list.Items = append(list.Items, *obj)
		cells = append(cells, row.Cells)
	}
	list.Object[pageCellsKey] = cells
	return list, nil
}

// pageCells returns the cells of page's item i, nil for a page that has
// none (from the dynamic client, or a server that sent no Table).
func pageCells(page *unstructured.UnstructuredList, i int) []byte {
	cells, _ := page.Object[pageCellsKey].([][]byte)
	if i < len(cells) {
		return cells[i]
	}
	return nil
}

// rowObject decodes a row's object with the numbers the dynamic client
// would give (int64 where integral).
func rowObject(raw json.RawMessage) (*unstructured.Unstructured, error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, errors.New("the row has no object (includeObject=Object was not honoured)")
	}
	var m map[string]any
	if err := utiljson.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return &unstructured.Unstructured{Object: m}, nil
}

// tableObject is a watched object with its Table cells.
type tableObject struct {
	*unstructured.Unstructured
	cells []byte
}

func (o *tableObject) DeepCopyObject() runtime.Object {
	return &tableObject{Unstructured: o.Unstructured.DeepCopy(), cells: bytes.Clone(o.cells)}
}

// eventObject returns a watch event's object and its cells (nil from the
// dynamic client).
func eventObject(obj runtime.Object) (*unstructured.Unstructured, []byte, bool) {
	switch o := obj.(type) {
	case *unstructured.Unstructured:
		return o, nil, true
	case *tableObject:
		return o.Unstructured, o.cells, true
	}
	return nil, nil, false
}

// Watch opens a watch of Tables. Its events carry *tableObject (an object
// and its cells); a BOOKMARK carries an *unstructured.Unstructured with the
// bookmark's resourceVersion, an ERROR the *metav1.Status kube-apiserver
// sent, as the dynamic client's watch does.
func (t *tableSource) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	body, err := t.request(opts).Stream(ctx)
	if err != nil {
		return nil, err
	}
	w := &tableWatch{src: t, body: body, result: make(chan watch.Event), done: make(chan struct{})}
	go w.receive()
	return w, nil
}

// tableWatch decodes a watch's JSON event stream of Tables.
type tableWatch struct {
	src    *tableSource
	body   io.ReadCloser
	result chan watch.Event
	done   chan struct{}
	stop   sync.Once
}

func (w *tableWatch) ResultChan() <-chan watch.Event { return w.result }

func (w *tableWatch) Stop() {
	w.stop.Do(func() {
		close(w.done)
		_ = w.body.Close()
	})
}

func (w *tableWatch) receive() {
	defer close(w.result)
	defer w.Stop()
	dec := json.NewDecoder(w.body)
	for {
		var ev struct {
			Type   watch.EventType `json:"type"`
			Object json.RawMessage `json:"object"`
		}
		if err := dec.Decode(&ev); err != nil {
			select {
			case <-w.done:
				return
			default:
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.Canceled) {
				return
			}
			w.send(watch.Event{Type: watch.Error, Object: &apierrors.NewInternalError(
				fmt.Errorf("decoding an event from the watch of %s: %w", w.src.path, err)).ErrStatus})
			return
		}
		events, err := w.src.decodeEvent(ev.Type, ev.Object)
		if err != nil {
			events = []watch.Event{{Type: watch.Error, Object: &apierrors.NewInternalError(err).ErrStatus}}
		}
		for _, e := range events {
			if !w.send(e) {
				return
			}
		}
	}
}

func (w *tableWatch) send(e watch.Event) bool {
	select {
	case w.result <- e:
		return true
	case <-w.done:
		return false
	}
}

// decodeEvent turns one event from the stream into what runner.handle
// takes. A Table event has one row; the first event of a watch also has the
// column definitions.
func (t *tableSource) decodeEvent(typ watch.EventType, raw json.RawMessage) ([]watch.Event, error) {
	switch typ {
	case watch.Error:
		var st metav1.Status
		if err := json.Unmarshal(raw, &st); err != nil {
			return nil, fmt.Errorf("decoding an ERROR event from the watch of %s: %w", t.path, err)
		}
		return []watch.Event{{Type: watch.Error, Object: &st}}, nil
	case watch.Bookmark:
		var bm struct {
			Metadata metav1.ListMeta `json:"metadata"`
		}
		if err := json.Unmarshal(raw, &bm); err != nil {
			return nil, fmt.Errorf("decoding a BOOKMARK from the watch of %s: %w", t.path, err)
		}
		obj := &unstructured.Unstructured{Object: map[string]any{}}
		obj.SetResourceVersion(bm.Metadata.ResourceVersion)
		return []watch.Event{{Type: typ, Object: obj}}, nil
	case watch.Added, watch.Modified, watch.Deleted:
	default:
		return nil, fmt.Errorf("the watch of %s sent an event of unknown type %q", t.path, typ)
	}
	var tab wireTable
	if err := json.Unmarshal(raw, &tab); err != nil {
		return nil, fmt.Errorf("decoding a %s event from the watch of %s: %w", typ, t.path, err)
	}
	if tab.Kind != "Table" {
		obj, err := rowObject(raw)
		if err != nil {
			return nil, fmt.Errorf("decoding a %s event from the watch of %s: %w", typ, t.path, err)
		}
		return []watch.Event{{Type: typ, Object: obj}}, nil
	}
	t.setColumns(tab.ColumnDefinitions)
	events := make([]watch.Event, 0, len(tab.Rows))
	for _, row := range tab.Rows {
		obj, err := rowObject(row.Object)
		if err != nil {
			return nil, fmt.Errorf("a %s event from the watch of %s: %w", typ, t.path, err)
		}
		events = append(events, watch.Event{Type: typ, Object: &tableObject{Unstructured: obj, cells: row.Cells}})
	}
	return events, nil
}
