package api

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/krm-project/krm/pkg/store"
)

func FuzzListQuery(f *testing.F) {
	for _, seed := range []string{
		"",
		"namespace=dev&labelSelector=app%3Dapi",
		"fieldSelector=spec.nodeName%3Dn1,status.phase!%3DRunning",
		"fieldSelector=metadata.name%3D%3Da%5C,b",
		"view=verified&limit=10",
		"continue=" + encodeContinue("pods", "dev/api-1"),
		"continue=" + encodeContinue("nodes", "n1"),
		"continue=eyJ2IjoxLCJyIjoicG9kcyIsImsiOiIifQ",
		"maxStaleness=30s&watch=true",
		"limit=0", "limit=-1", "limit=99999999999999999999",
		"watch=true&limit=1",
		"labelSelector=a+in+(",
		"labelSelector=a+notin+(b,c),!d,e%3E3",
		"lables=x",
		"view=a&view=b",
		"namespace=Dev_1",
		"maxStaleness=1e9h",
		"%zz=1",
	} {
		f.Add(seed)
	}
	rows := []*store.Row{
		podRow(f, testPods[0]),
		{Name: "bare"},
	}
	f.Fuzz(func(t *testing.T, raw string) {
		// ParseQuery returns what it could parse alongside its error;
		// the server sees the same values.
		q, _ := url.ParseQuery(raw)
		for _, info := range []ResourceInfo{podsInfo, nodesInfo} {
			p, err := parseListQuery(q, info)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Status != http.StatusBadRequest {
					t.Fatalf("parseListQuery(%q) error %v (%T), want a 400 *Error", raw, err, err)
				}
				checkSentence(t, e.Message)
				continue
			}
			if p.limit < 0 || (p.watch && (p.limit > 0 || p.hasAfter)) {
				t.Errorf("parseListQuery(%q) accepted limit %d, continue %v, watch %v", raw, p.limit, p.hasAfter, p.watch)
			}
			if v, err := store.ParseSource(string(p.view)); err != nil || v != p.view {
				t.Errorf("parseListQuery(%q) accepted view %q", raw, p.view)
			}
			if !info.Namespaced && p.namespace != "" {
				t.Errorf("parseListQuery(%q) accepted namespace %q for cluster-scoped %s", raw, p.namespace, info.Name)
			}
			if p.maxStaleness < 0 {
				t.Errorf("parseListQuery(%q) accepted maxStaleness %s", raw, p.maxStaleness)
			}
			// Whatever was accepted must be usable on any row.
			for _, row := range rows {
				p.matches(row)
			}
			selectPage(rows, p)
		}
	})
}

// checkSentence fails unless msg reads as a sentence: words, no stray
// whitespace at either end, valid UTF-8.
func checkSentence(t *testing.T, msg string) {
	t.Helper()
	if msg == "" || !strings.Contains(msg, " ") || !utf8.ValidString(msg) ||
		unicode.IsSpace(rune(msg[0])) || unicode.IsSpace(rune(msg[len(msg)-1])) {
		t.Errorf("error message %q is not a sentence", msg)
	}
}

func TestParseListQuery(t *testing.T) {
	q, _ := url.ParseQuery("namespace=dev&labelSelector=app%3Dapi&fieldSelector=status.phase%3DRunning&view=streamed&limit=5&maxStaleness=1m30s&continue=" + encodeContinue("pods", "dev/api-1"))
	p, err := parseListQuery(q, podsInfo)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{p.namespace, p.labels.String(), p.fields.String(), string(p.view), p.after, p.maxStaleness.String()}
	want := []string{"dev", "app=api", "status.phase=Running", "streamed", "dev/api-1", "1m30s"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("parsed %v, want %v", got, want)
			break
		}
	}
	if p.limit != 5 || !p.hasAfter || p.watch {
		t.Errorf("parsed limit %d continue %v watch %v, want 5 true false", p.limit, p.hasAfter, p.watch)
	}
}
