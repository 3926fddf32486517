package delay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// setupInflux makes an InfluxDB 1.8 that authenticates ready for the
// agent, when asked (InfluxConfig.CreateUser): while it has no admin user
// yet, it creates the token's user as its admin, then the database. The
// password travels in a POST body, never in a command line (the
// influxdb:1.8 image's own first-start script passes it to a command as
// an argument). Once an admin exists, an unauthenticated CREATE USER is
// refused (401) and the user is taken to exist, as when an InfluxDB
// without authentication has it already: CREATE DATABASE then checks the
// credentials.
func setupInflux(ctx context.Context, hc *http.Client, cfg InfluxConfig) error {
	user, password, _ := strings.Cut(cfg.Token, ":")
	db, _, _ := strings.Cut(cfg.Bucket, "/")
	err := influxQuery(ctx, hc, cfg.URL, "", "",
		"CREATE USER "+influxIdent(user)+" WITH PASSWORD "+influxString(password)+" WITH ALL PRIVILEGES")
	var he *influxQueryError
	// 401: an admin exists and authentication is on. "user already
	// exists": an InfluxDB without authentication that has the user.
	// Either way, CREATE DATABASE tells whether the credentials work.
	exists := errors.As(err, &he) && (he.code == http.StatusUnauthorized || strings.Contains(he.msg, "user already exists"))
	if err != nil && !exists {
		return fmt.Errorf("creating InfluxDB user %q: %w", user, err)
	}
	if err := influxQuery(ctx, hc, cfg.URL, user, password, "CREATE DATABASE "+influxIdent(db)); err != nil {
		if errors.As(err, &he) && (he.code == http.StatusUnauthorized || he.code == http.StatusForbidden) {
			return fmt.Errorf("creating InfluxDB database %q: %w (InfluxDB already has an admin user, and it is not %q with this password: give KRM_INFLUX_TOKEN as that user's user:password)", db, ErrUnauthorized, user)
		}
		return fmt.Errorf("creating InfluxDB database %q: %w", db, err)
	}
	return nil
}

// influxQueryError is InfluxDB's answer to a failed query.
type influxQueryError struct {
	code int
	msg  string
}

func (e *influxQueryError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.msg) }

// influxQuery POSTs one InfluxQL statement to /query, with basic auth when
// user is set.
func influxQuery(ctx context.Context, hc *http.Client, base, user, password, q string) error {
	form := url.Values{"q": {q}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+"/query", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return err
	}
	var res struct {
		Error   string `json:"error"`
		Results []struct {
			Error string `json:"error"`
		} `json:"results"`
	}
	_ = json.Unmarshal(body, &res)
	msg := res.Error
	for _, r := range res.Results {
		if msg == "" {
			msg = r.Error
		}
	}
	if resp.StatusCode != http.StatusOK || msg != "" {
		if msg == "" {
			msg = strings.TrimSpace(string(body))
		}
		return &influxQueryError{code: resp.StatusCode, msg: msg}
	}
	return nil
}

// influxIdent quotes an InfluxQL identifier.
func influxIdent(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// influxString quotes an InfluxQL string literal.
func influxString(s string) string {
	return `'` + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + `'`
}
