package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// ProbeResource is the resource name of the agent's canary probe rows:
// not a watched resource, but a resource filter /api/v1/delay accepts.
const ProbeResource = "probe"

// DelayQuery selects delay statistics: "" resource or event means all.
type DelayQuery struct {
	Resource string
	Event    string // ADDED, DELETED or ""
	Since    time.Time
	// Step is the time series' bucket width.
	Step time.Duration
}

// DelaySource answers delay queries; the agent's delay recorder (memory)
// or an InfluxDB reader implements it.
type DelaySource interface {
	Delay(ctx context.Context, q DelayQuery) (*DelayReport, error)
}

// maxDelayRange bounds ?since=, so a typo cannot ask for years of points.
const maxDelayRange = 31 * 24 * time.Hour

func parseDelayQuery(v url.Values, now time.Time) (DelayQuery, error) {
	q := DelayQuery{Since: now.Add(-time.Hour)}
	for k, vals := range v {
		if len(vals) != 1 {
			return q, badRequest("query parameter %q is given %d times; give it once", k, len(vals))
		}
		val := vals[0]
		switch k {
		case "resource":
			q.Resource = val
		case "event":
			switch val {
			case "", "ADDED", "DELETED":
				q.Event = val
			default:
				return q, badRequest("event %q is not ADDED or DELETED", val)
			}
		case "since":
			d, err := time.ParseDuration(val)
			if err != nil || d <= 0 {
				return q, badRequest("since %q is not a positive duration such as 15m or 1h", val)
			}
			if d > maxDelayRange {
				return q, badRequest("since %s is longer than %s", val, maxDelayRange)
			}
			q.Since = now.Add(-d)
		case "step":
			d, err := time.ParseDuration(val)
			if err != nil || d <= 0 {
				return q, badRequest("step %q is not a positive duration such as 1m", val)
			}
			q.Step = d
		default:
			return q, badRequest("unknown query parameter %q; delay accepts resource, event, since and step", k)
		}
	}
	if q.Step == 0 {
		q.Step = autoStep(now.Sub(q.Since))
	}
	if now.Sub(q.Since)/q.Step > 10000 {
		return q, badRequest("step %s over %s makes more than 10000 points; use a larger step", q.Step, now.Sub(q.Since).Round(time.Second))
	}
	return q, nil
}

// autoStep picks a bucket width that gives about 60 points.
func autoStep(r time.Duration) time.Duration {
	for _, s := range []time.Duration{time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute,
		5 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour, 6 * time.Hour} {
		if r/s <= 60 {
			return s
		}
	}
	return 24 * time.Hour
}

func (s *Server) delay(w http.ResponseWriter, r *http.Request) {
	if s.delaySource == nil {
		writeError(w, http.StatusNotFound, "this agent does not measure stream delay")
		return
	}
	q, err := parseDelayQuery(r.URL.Query(), s.now())
	if err != nil {
		writeErr(w, err)
		return
	}
	if q.Resource != "" && q.Resource != ProbeResource {
		res, ok := s.backend.Resource(q.Resource)
		if !ok {
			writeError(w, http.StatusNotFound, fmt.Sprintf("resource %q is not watched by this agent", q.Resource))
			return
		}
		q.Resource = res.Info().Name
	}
	rep, err := s.delaySource.Delay(r.Context(), q)
	if err != nil {
		var apiErr *Error
		if errors.As(err, &apiErr) {
			writeErr(w, err)
			return
		}
		writeError(w, http.StatusServiceUnavailable, "reading delay statistics: "+err.Error())
		return
	}
	s.writeJSON(w, http.StatusOK, rep)
}

// Delay reads stream-delay statistics.
func (c *Client) Delay(ctx context.Context, resource, event string, since time.Duration) (*DelayReport, error) {
	q := url.Values{}
	if resource != "" {
		q.Set("resource", resource)
	}
	if event != "" {
		q.Set("event", event)
	}
	if since > 0 {
		q.Set("since", since.String())
	}
	var rep DelayReport
	if _, err := c.getJSON(ctx, &rep, q, "api", Version, "delay"); err != nil {
		return nil, err
	}
	return &rep, nil
}
