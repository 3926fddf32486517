// Package delay measures stream delay, the time between a change happening
// in the cluster and the agent receiving its watch event, and keeps the
// samples for statistics: in memory (Window, the default), as Prometheus
// histograms (Recorder) and, optionally, in InfluxDB (InfluxWriter,
// InfluxReader).
//
// For an ADDED event the delay is receive time − metadata.creationTimestamp;
// for a DELETED event it is receive time − metadata.deletionTimestamp. Object
// timestamps have 1-second resolution (they are truncated to the second), so
// a measured delay can exceed the true one by up to a second; everything that
// shows a delay must say so, and ResolutionNote is the sentence to show.
//
// deletionTimestamp is when a graceful deletion becomes due, not when it was
// requested, so a DELETED event that arrives before the grace period ends has
// a negative delay. Negative delays are recorded as they are, never clamped.
//
// Only fresh events are samples: events replayed by a (re)list or a watch
// resume describe changes made long before they were received, so callers
// skip them rather than record them. Objects without the timestamp are
// counted as unmeasured instead of being measured.
package delay
