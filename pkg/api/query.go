package api

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/krm-project/krm/pkg/store"
)

// Query parameters, in the order error messages list them.
var (
	listParams = []string{"namespace", "labelSelector", "fieldSelector", "view", "limit", "continue", "maxStaleness", "watch"}
	getParams  = []string{"view", "maxStaleness"}
)

// listQuery is a parsed list, get or watch request.
type listQuery struct {
	namespace    string
	labels       labels.Selector
	fields       fields.Selector
	view         store.Source
	limit        int64 // 0 is no limit
	after        string
	hasAfter     bool // continuing after the row whose Key() is after
	maxStaleness time.Duration
	watch        bool
}

// parseListQuery parses the query of GET /api/v1/resources/{resource}.
// Every error is an *Error with status 400.
func parseListQuery(q url.Values, info ResourceInfo) (*listQuery, error) {
	return parseQuery(q, info, listParams)
}

// parseGetQuery parses the query of a single-object read.
func parseGetQuery(q url.Values, info ResourceInfo) (*listQuery, error) {
	return parseQuery(q, info, getParams)
}

// rejectQuery refuses any query parameter, for routes that take none.
func rejectQuery(q url.Values) error {
	return checkParams(q, nil)
}

func checkParams(q url.Values, accepted []string) error {
	var unknown []string
	for k, vs := range q {
		if !slices.Contains(accepted, k) {
			unknown = append(unknown, strconv.Quote(k))
			continue
		}
		if len(vs) > 1 {
			return badRequest("query parameter %s is given %d times; give it once", k, len(vs))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	noun := "parameter"
	if len(unknown) > 1 {
		noun = "parameters"
	}
	if len(accepted) == 0 {
		return badRequest("unknown query %s %s: this path takes none", noun, strings.Join(unknown, ", "))
	}
	return badRequest("unknown query %s %s; accepted: %s", noun, strings.Join(unknown, ", "), strings.Join(accepted, ", "))
}

func parseQuery(q url.Values, info ResourceInfo, accepted []string) (*listQuery, error) {
	if err := checkParams(q, accepted); err != nil {
		return nil, err
	}
	p := &listQuery{labels: labels.Everything(), fields: fields.Everything(), view: store.Aggregated}

	if v, ok := param(q, "namespace"); ok && v != "" {
		if !info.Namespaced {
			return nil, badRequest("%s are cluster-scoped: the namespace parameter does not apply", info.Name)
		}
		if errs := validation.IsDNS1123Label(v); len(errs) > 0 {
			return nil, badRequest("namespace %q is not a valid namespace name: %s", v, strings.Join(errs, "; "))
		}
		p.namespace = v
	}
	if v, ok := param(q, "labelSelector"); ok {
		sel, err := labels.Parse(v)
		if err != nil {
			return nil, badRequest("invalid labelSelector %q: %v", v, err)
		}
		p.labels = sel
	}
	if v, ok := param(q, "fieldSelector"); ok {
		sel, err := parseFieldSelector(v, info)
		if err != nil {
			return nil, err
		}
		p.fields = sel
	}
	if v, ok := param(q, "view"); ok {
		view, err := store.ParseSource(v)
		if err != nil {
			return nil, badRequest("invalid view: %v", err)
		}
		p.view = view
	}
	if v, ok := param(q, "limit"); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return nil, badRequest("limit must be a positive integer, not %q", v)
		}
		p.limit = n
	}
	if v, ok := param(q, "continue"); ok && v != "" {
		key, err := decodeContinue(v, info)
		if err != nil {
			return nil, err
		}
		p.after, p.hasAfter = key, true
	}
	if v, ok := param(q, "maxStaleness"); ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, badRequest("maxStaleness must be a positive Go duration such as 30s or 5m, not %q", v)
		}
		p.maxStaleness = d
	}
	if v, ok := param(q, "watch"); ok {
		w, err := strconv.ParseBool(v)
		if err != nil {
			return nil, badRequest("watch must be true or false, not %q", v)
		}
		p.watch = w
	}
	if p.watch && (p.limit > 0 || p.hasAfter) {
		return nil, badRequest("limit and continue cannot be used with watch=true: a watch sends every matching object")
	}
	return p, nil
}

func param(q url.Values, key string) (string, bool) {
	vs, ok := q[key]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

func parseFieldSelector(s string, info ResourceInfo) (fields.Selector, error) {
	sel, err := fields.ParseSelector(s)
	if err != nil {
		return nil, badRequest("invalid fieldSelector %q: %v", s, err)
	}
	supported := append([]string{"metadata.name", "metadata.namespace"}, info.SelectableFields...)
	for _, req := range sel.Requirements() {
		if !slices.Contains(supported, req.Field) {
			return nil, badRequest("field %q is not supported in a fieldSelector for %s; supported fields: %s", req.Field, info.Name, strings.Join(supported, ", "))
		}
	}
	return sel, nil
}

// matches reports whether row passes the namespace and the selectors.
func (p *listQuery) matches(row *store.Row) bool {
	if p.namespace != "" && row.Namespace != p.namespace {
		return false
	}
	return p.selects(row)
}

// selects reports whether row passes the label and field selectors.
func (p *listQuery) selects(row *store.Row) bool {
	return p.labels.Matches(labels.Set(row.Labels)) && p.fields.Matches(rowFields{row})
}

// filtered reports whether a label or field selector is set, which is when
// a row's changes can move it in or out of a watch.
func (p *listQuery) filtered() bool {
	return !p.labels.Empty() || !p.fields.Empty()
}

// rowFields gives a row's selectable fields without building a map per row.
type rowFields struct{ row *store.Row }

func (f rowFields) Has(field string) bool {
	switch field {
	case "metadata.name", "metadata.namespace":
		return true
	}
	_, ok := f.row.Fields[field]
	return ok
}

func (f rowFields) Get(field string) string {
	switch field {
	case "metadata.name":
		return f.row.Name
	case "metadata.namespace":
		return f.row.Namespace
	}
	return f.row.Fields[field]
}

// continueToken is the decoded ?continue= value. It names the last key
// served rather than an offset, so rows added or removed between pages do
// not shift the next page.
type continueToken struct {
	Version  int    `json:"v"`
	Resource string `json:"r"`
	Key      string `json:"k"`
}

const continueVersion = 1

func encodeContinue(resource, key string) string {
	b, _ := json.Marshal(continueToken{Version: continueVersion, Resource: resource, Key: key})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeContinue(s string, info ResourceInfo) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return "", badRequest("invalid continue token: it is not one this server issued (not base64url)")
	}
	var t continueToken
	if err := json.Unmarshal(b, &t); err != nil || t.Version != continueVersion || t.Key == "" {
		return "", badRequest("invalid continue token: it is not one this server issued")
	}
	if t.Resource != info.Name {
		return "", badRequest("invalid continue token: it was issued for %s, not %s", strconv.Quote(t.Resource), info.Name)
	}
	return t.Key, nil
}
