// Package ui is the agent's web view: a few static pages, embedded in the
// binary so that an air-gapped cluster serves them as they are, which read
// the agent's own API from the browser (resourcestatuses with a watch,
// delayreports, driftreports, revisions). The pages hold no data, so the
// agent serves them to anyone who reaches it; every number they show comes
// through the API, with the caller's credentials and authorization.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// Prefix is the path the view is served under.
const Prefix = "/ui/"

//go:embed static
var static embed.FS

// contentSecurityPolicy lets the pages load and call only the agent (no
// CDN, no inline script), and keeps them out of other sites' frames.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Handler serves the view's files under Prefix, and redirects the prefix
// without its slash to it. Anything but GET and HEAD gets 405.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	files := http.StripPrefix(Prefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the krm web view is read with GET", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path == strings.TrimSuffix(Prefix, "/") {
			http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
			return
		}
		if r.URL.Path != Prefix && strings.HasSuffix(r.URL.Path, "/") {
			// No directory listings: the view's files are its API.
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// The files change with the agent's version; the browser asks
		// again each time rather than keep an old one.
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
