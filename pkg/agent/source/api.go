// Package source is krm-agent's first stage: it lists and watches one
// resource on kube-apiserver (paginated LISTs read as a stream, WatchList,
// watches, Tables for kinds krm has no printer for), reads an object's uid
// and resourceVersion from its bytes, and gives the loops their backoff.
package source

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

// tableCodecs decode the Status of a failed request, all an API
// needs from a serializer: bodies are decoded here.
var tableCodecs = func() serializer.CodecFactory {
	s := runtime.NewScheme()
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	return serializer.NewCodecFactory(s)
}()

// NewRESTClient makes the REST client the resources' sources share.
func NewRESTClient(cfg *rest.Config) (rest.Interface, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.NegotiatedSerializer = tableCodecs.WithoutConversion()
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	return rest.UnversionedRESTClientFor(cfg)
}

// ListWatcher is what the verifier and the streamer need of kube-apiserver
// for a resource: LIST pages and WatchLists read one item at a time, and a
// watch. API is one.
type ListWatcher interface {
	ListPage(ctx context.Context, opts metav1.ListOptions, each func(Item) error) (metav1.ListMeta, error)
	WatchList(ctx context.Context, opts metav1.ListOptions, each func(Item) error) (string, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

var _ ListWatcher = (*API)(nil)

// JSONAccept asks for the objects themselves.
const JSONAccept = "application/json"

// API lists and watches one resource with a REST client, decoding
// the JSON itself: a LIST is read as a stream, one item at a time, so the
// verifier compares each object with the row it holds before decoding it.
// With tables, it asks for kube-apiserver's Tables with the objects
// included, for a kind krm has no printer for: each row's cells are kept
// beside its object, so the agent serves the columns kubectl prints
// without porting the kind's printer; it keeps the latest column
// definitions kube-apiserver sent.
type API struct {
	client  rest.Interface
	path    string
	tables  bool
	columns atomic.Pointer[[]metav1.TableColumnDefinition]
}

func NewAPI(client rest.Interface, gvr schema.GroupVersionResource, namespace string, tables bool) *API {
	p := "/apis/" + gvr.Group + "/" + gvr.Version
	if gvr.Group == "" {
		p = "/api/" + gvr.Version
	}
	if namespace != "" {
		p += "/namespaces/" + namespace
	}
	return &API{client: client, path: p + "/" + gvr.Resource, tables: tables}
}

// Tables reports whether the source reads kube-apiserver's Tables.
func (t *API) Tables() bool { return t.tables }

// Columns returns the latest column definitions, nil before any arrived.
func (t *API) Columns() []metav1.TableColumnDefinition {
	if c := t.columns.Load(); c != nil {
		return *c
	}
	return nil
}

func (t *API) setColumns(cols []metav1.TableColumnDefinition) {
	if len(cols) > 0 {
		t.columns.Store(&cols)
	}
}

func (t *API) request(opts metav1.ListOptions) *rest.Request {
	req := t.client.Get().AbsPath(t.path).
		SpecificallyVersionedParams(&opts, metav1.ParameterCodec, metav1.SchemeGroupVersion)
	if !t.tables {
		return req.SetHeader("Accept", JSONAccept)
	}
	return req.SetHeader("Accept", tableAccept).Param("includeObject", string(metav1.IncludeObject))
}

// Item is one object of a LIST page as it arrived: its JSON, and its
// Table cells (nil without Tables).
type Item struct {
	Object []byte
	Cells  []byte
}

// ListPage lists one page, calling each for every item as it is read from
// the response, and returns the page's list metadata (resourceVersion and
// continue). Only one item at a time is held, not the page.
func (t *API) ListPage(ctx context.Context, opts metav1.ListOptions, each func(Item) error) (metav1.ListMeta, error) {
	opts.Watch = false
	var meta metav1.ListMeta
	body, err := t.request(opts).Stream(ctx)
	if err != nil {
		return meta, err
	}
	defer body.Close()
	fail := func(err error) (metav1.ListMeta, error) {
		return meta, fmt.Errorf("reading a LIST page from %s: %w", t.path, err)
	}
	dec := json.NewDecoder(body)
	if err := expectDelim(dec, '{'); err != nil {
		return fail(err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fail(err)
		}
		switch key, _ := tok.(string); key {
		case "metadata":
			err = dec.Decode(&meta)
		case "columnDefinitions":
			var cols []metav1.TableColumnDefinition
			if err = dec.Decode(&cols); err == nil {
				t.setColumns(cols)
			}
		case "items":
			err = eachElement(dec, func() error {
				var obj json.RawMessage
				if err := dec.Decode(&obj); err != nil {
					return err
				}
				return each(Item{Object: obj})
			})
		case "rows":
			err = eachElement(dec, func() error {
				var row wireRow
				if err := dec.Decode(&row); err != nil {
					return err
				}
				if len(row.Object) == 0 || bytes.Equal(row.Object, []byte("null")) {
					return errors.New("a row has no object (includeObject=Object was not honoured)")
				}
				return each(Item{Object: row.Object, Cells: row.Cells})
			})
		default:
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			return fail(err)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return fail(err)
	}
	return meta, nil
}

// initialEventsEnd is the annotation on the BOOKMARK that ends a
// WatchList's initial events.
const initialEventsEnd = "k8s.io/initial-events-end"

// ErrNoWatchList says the server does not stream a LIST as a watch
// (WatchList, sendInitialEvents=true): the verifier LISTs instead.
var ErrNoWatchList = errors.New("the server does not support WatchList (sendInitialEvents)")

// WatchList reads the whole collection as a WatchList: a watch with
// sendInitialEvents=true streams every object as an ADDED event from
// kube-apiserver's watch cache, then a BOOKMARK marked initial-events-end
// at the resourceVersion they are consistent at, which it returns. The
// watch is then closed. Each object is handed to each as it arrives, as
// ListPage does. With tables each event is a Table of one row, the
// bookmark's object in its row.
func (t *API) WatchList(ctx context.Context, opts metav1.ListOptions, each func(Item) error) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	send := true
	opts.Watch, opts.SendInitialEvents, opts.AllowWatchBookmarks = true, &send, true
	opts.ResourceVersion, opts.ResourceVersionMatch = "", metav1.ResourceVersionMatchNotOlderThan
	opts.Limit, opts.Continue = 0, ""
	body, err := t.request(opts).Stream(ctx)
	if err != nil {
		if apierrors.IsBadRequest(err) || apierrors.IsInvalid(err) {
			return "", fmt.Errorf("%w: %w", ErrNoWatchList, err)
		}
		return "", err
	}
	defer body.Close()
	dec := json.NewDecoder(body)
	for {
		var ev struct {
			Type   watch.EventType `json:"type"`
			Object json.RawMessage `json:"object"`
		}
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the watch ended before its initial events did")
			}
			return "", fmt.Errorf("reading a WatchList of %s: %w", t.path, err)
		}
		item := Item{Object: ev.Object}
		if t.tables && (ev.Type == watch.Added || ev.Type == watch.Bookmark) {
			var tb wireTable
			if err := json.Unmarshal(ev.Object, &tb); err != nil {
				return "", fmt.Errorf("a WatchList event of %s: %w", t.path, err)
			}
			if len(tb.Rows) != 1 || len(tb.Rows[0].Object) == 0 || bytes.Equal(tb.Rows[0].Object, []byte("null")) {
				return "", fmt.Errorf("a WatchList event of %s is a Table of %d rows, want one with its object", t.path, len(tb.Rows))
			}
			t.setColumns(tb.ColumnDefinitions)
			item = Item{Object: tb.Rows[0].Object, Cells: tb.Rows[0].Cells}
		}
		switch ev.Type {
		case watch.Added:
			if err := each(item); err != nil {
				return "", err
			}
		case watch.Bookmark:
			var b struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			if err := json.Unmarshal(item.Object, &b); err != nil {
				return "", fmt.Errorf("a WatchList bookmark of %s: %w", t.path, err)
			}
			if b.Metadata.Annotations[initialEventsEnd] == "true" {
				return b.Metadata.ResourceVersion, nil
			}
		case watch.Error:
			var st metav1.Status
			if err := json.Unmarshal(ev.Object, &st); err != nil {
				return "", fmt.Errorf("a WatchList of %s failed: %s", t.path, ev.Object)
			}
			return "", apierrors.FromObject(&st)
		default:
			// Changes after the initial events come after their bookmark;
			// a server that sends one first did not honour sendInitialEvents.
			return "", fmt.Errorf("%w: a %s event came before the initial events ended", ErrNoWatchList, ev.Type)
		}
	}
}

// eachElement calls fn for each element of the array at the decoder's
// cursor; fn decodes the element.
func eachElement(dec *json.Decoder, fn func() error) error {
	if err := expectDelim(dec, '['); err != nil {
		return err
	}
	for dec.More() {
		if err := fn(); err != nil {
			return err
		}
	}
	return expectDelim(dec, ']')
}

func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != d {
		return fmt.Errorf("want %q, got %v", d, tok)
	}
	return nil
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

// DecodeObject decodes a row's object with the numbers the dynamic client
// would give (int64 where integral).
func DecodeObject(raw json.RawMessage) (*unstructured.Unstructured, error) {
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

// EventObject returns a watch event's object and its cells (nil from the
// dynamic client).
func EventObject(obj runtime.Object) (*unstructured.Unstructured, []byte, bool) {
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
func (t *API) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
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
	src    *API
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
		events, err := w.src.DecodeEvent(ev.Type, ev.Object)
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

// DecodeEvent turns one event from the stream into what runner.handle
// takes. A Table event has one row; the first event of a watch also has the
// column definitions.
func (t *API) DecodeEvent(typ watch.EventType, raw json.RawMessage) ([]watch.Event, error) {
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
	if !t.tables {
		obj, err := DecodeObject(raw)
		if err != nil {
			return nil, fmt.Errorf("decoding a %s event from the watch of %s: %w", typ, t.path, err)
		}
		return []watch.Event{{Type: typ, Object: obj}}, nil
	}
	var tab wireTable
	if err := json.Unmarshal(raw, &tab); err != nil {
		return nil, fmt.Errorf("decoding a %s event from the watch of %s: %w", typ, t.path, err)
	}
	if tab.Kind != "Table" {
		obj, err := DecodeObject(raw)
		if err != nil {
			return nil, fmt.Errorf("decoding a %s event from the watch of %s: %w", typ, t.path, err)
		}
		return []watch.Event{{Type: typ, Object: obj}}, nil
	}
	t.setColumns(tab.ColumnDefinitions)
	events := make([]watch.Event, 0, len(tab.Rows))
	for _, row := range tab.Rows {
		obj, err := DecodeObject(row.Object)
		if err != nil {
			return nil, fmt.Errorf("a %s event from the watch of %s: %w", typ, t.path, err)
		}
		events = append(events, watch.Event{Type: typ, Object: &tableObject{Unstructured: obj, cells: row.Cells}})
	}
	return events, nil
}
