package ui

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, method, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Result()
}

func TestServesTheView(t *testing.T) {
	resp := get(t, http.MethodGet, "/ui/")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `<script type="module" src="app.js">`) {
		t.Fatalf("GET /ui/ = %d %s, want the index page", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q, want one that admits only the agent and no framing", csp)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options %q, want nosniff", got)
	}
	// Browsers run module scripts only with a JavaScript type.
	if ct := get(t, http.MethodGet, "/ui/app.js").Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
		t.Errorf("app.js Content-Type %q, want text/javascript", ct)
	}
}

func TestRefusesWhatItDoesNotServe(t *testing.T) {
	for _, c := range []struct {
		method, path string
		code         int
	}{
		{http.MethodGet, "/ui", http.StatusMovedPermanently},
		{http.MethodPost, "/ui/", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/ui/app.js", http.StatusMethodNotAllowed},
		{http.MethodGet, "/ui/vendor/", http.StatusNotFound},
		{http.MethodGet, "/ui/nothing.js", http.StatusNotFound},
	} {
		if got := get(t, c.method, c.path).StatusCode; got != c.code {
			t.Errorf("%s %s = %d, want %d", c.method, c.path, got, c.code)
		}
	}
}

// Every file the pages load is embedded: a missing one would fail only in
// a browser.
func TestEveryReferenceIsEmbedded(t *testing.T) {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		t.Fatal(err)
	}
	refs := regexp.MustCompile(`(?:src|href)="([^"#:]+)"|from '\./([^']+)'`)
	err = fs.WalkDir(sub, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".html") || strings.HasSuffix(path, ".js")) || strings.HasPrefix(path, "vendor/") {
			return err
		}
		b, err := fs.ReadFile(sub, path)
		if err != nil {
			return err
		}
		for _, m := range refs.FindAllStringSubmatch(string(b), -1) {
			ref := m[1] + m[2]
			if _, err := fs.Stat(sub, ref); err != nil {
				t.Errorf("%s loads %s, which is not embedded", path, ref)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The embedded uPlot is the version web/package.json pins; make verify-ui
// checks its bytes against that package.
func TestVendoredUPlotIsPinned(t *testing.T) {
	var pkg struct{ Dependencies map[string]string }
	b, err := os.ReadFile("../../web/package.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		t.Fatal(err)
	}
	var lock struct {
		Packages map[string]struct{ Version string }
	}
	b, err = os.ReadFile("../../web/package-lock.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &lock); err != nil {
		t.Fatal(err)
	}
	pinned := pkg.Dependencies["uplot"]
	if locked := lock.Packages["node_modules/uplot"].Version; pinned == "" || locked != pinned {
		t.Fatalf("web/package.json pins uplot %q and package-lock.json locks %q; pin one exact version in both (npm install --save-exact)", pinned, locked)
	}
	js, err := fs.ReadFile(static, "static/vendor/uPlot.iife.min.js")
	if err != nil {
		t.Fatal(err)
	}
	if want := "(v" + pinned + ") */"; !strings.Contains(string(js[:min(len(js), 200)]), want) {
		t.Errorf("static/vendor/uPlot.iife.min.js starts %q, want uPlot %s: run make ui", js[:min(len(js), 80)], pinned)
	}
}
