package v1alpha1

// Freshness headers, set by the agent on every read, so any client can tell
// how old what it reads is.
const (
	HeaderVerifiedAt = "X-Krm-Verified-At" // RFC 3339, the last LIST's time
	// HeaderVerifiedResourceVersion is the last LIST's resourceVersion: an
	// object newer than it came from the watch, not yet verified.
	HeaderVerifiedResourceVersion = "X-Krm-Verified-Resource-Version"
	HeaderResourceVersion         = "X-Krm-Resource-Version" // the served view's resourceVersion
	HeaderStreamLag               = "X-Krm-Stream-Lag"       // Go duration since the watch last spoke, or "disconnected"
	HeaderStale                   = "X-Krm-Stale"            // "true" while serving a restart's stored frames, before the first LIST
	HeaderAgentVersion            = "X-Krm-Agent-Version"
)
