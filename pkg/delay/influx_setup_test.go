package delay

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeInflux answers /query as InfluxDB 1.8 does, with or without an admin
// user and authentication.
type fakeInflux struct {
	mu       sync.Mutex
	auth     bool
	users    map[string]string
	statuses []string
}

func (f *fakeInflux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := r.ParseForm(); err != nil || r.URL.Path != "/query" || r.Method != http.MethodPost {
		http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
		return
	}
	if r.URL.Query().Get("q") != "" || r.URL.Query().Get("p") != "" {
		http.Error(w, `{"error":"credentials or statements in the URL"}`, http.StatusBadRequest)
		return
	}
	q := r.PostForm.Get("q")
	f.statuses = append(f.statuses, q)
	user, pass, hasAuth := r.BasicAuth()
	switch {
	case strings.HasPrefix(q, "CREATE USER") && len(f.users) == 0:
		name := strings.Trim(strings.Fields(q)[2], `"`)
		f.users[name] = strings.Trim(strings.Fields(q)[5], `'`)
		_, _ = w.Write([]byte(`{"results":[{"statement_id":0}]}`))
	case f.auth && (!hasAuth || f.users[user] != pass):
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"authorization failed"}`))
	case strings.HasPrefix(q, "CREATE USER"):
		_, _ = w.Write([]byte(`{"results":[{"statement_id":0,"error":"user already exists"}]}`))
	default:
		_, _ = w.Write([]byte(`{"results":[{"statement_id":0}]}`))
	}
}

func TestSetupInflux(t *testing.T) {
	for _, c := range []struct {
		name     string
		auth     bool
		users    map[string]string
		token    string
		wantErr  string
		wantUser string
	}{
		{name: "no user yet", auth: true, token: "krm:pw1", wantUser: "pw1"},
		{name: "the same admin", auth: true, users: map[string]string{"krm": "pw"}, token: "krm:pw", wantUser: "pw"},
		{name: "another admin", auth: true, users: map[string]string{"root": "x"}, token: "krm:pw", wantErr: "not \"krm\" with this password"},
		{name: "no authentication, user exists", users: map[string]string{"krm": "old"}, token: "krm:new", wantUser: "old"},
	} {
		f := &fakeInflux{auth: c.auth, users: map[string]string{}}
		for k, v := range c.users {
			f.users[k] = v
		}
		srv := httptest.NewServer(f)
		err := setupInflux(t.Context(), srv.Client(), InfluxConfig{URL: srv.URL, Token: c.token, Bucket: "krm/autogen", CreateUser: true})
		srv.Close()
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: %v, want an error saying %q", c.name, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := f.users["krm"]; got != c.wantUser {
			t.Errorf("%s: user krm has password %q, want %q", c.name, got, c.wantUser)
		}
		if last := f.statuses[len(f.statuses)-1]; last != `CREATE DATABASE "krm"` {
			t.Errorf("%s: last statement %q, want the database created", c.name, last)
		}
	}
}

func TestInfluxQuoting(t *testing.T) {
	if got := influxString(`a'b\c`); got != `'a\'b\\c'` {
		t.Errorf("influxString: %s", got)
	}
	if got := influxIdent(`a"b`); got != `"a\"b"` {
		t.Errorf("influxIdent: %s", got)
	}
	if _, err := (InfluxConfig{URL: "http://x", Bucket: "krm", Token: "tokenonly", CreateUser: true}).complete(); err == nil {
		t.Error("CreateUser with a 2.x token: no error")
	}
}
