// Package history keeps the revisions of each object the agent has seen, per
// resource, for a bounded time and size: the event, resourceVersion, when it
// was observed, whether the watch or a verifying LIST brought it, the field
// managers, the changed field paths, and the object itself.
//
// Objects are stored cheaply: an object's newest revision shares the bytes
// the agent's views hold, and each older revision keeps only the patch that
// turns the next revision back into it. A Log answers an object's revisions,
// the view as it was at a time (kubectl krm get --at) and the view at a
// resourceVersion (an Exact LIST), and says how far back it reaches. With a
// Persister (Redis) it is written through, so a restarted agent keeps it.
package history
