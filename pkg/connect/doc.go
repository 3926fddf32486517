// Package connect finds the krm agent and returns an API client for it:
// through a port-forward to the agent's pod, found by namespace and label
// selector, or directly at a URL.
package connect
