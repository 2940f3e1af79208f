// Package collector is the manager's intake of what injected sidecars
// record: it authenticates each batch by the sidecar's projected service
// account token (TokenReview, with the collector's own audience), accepts it
// only for the session that injected the token's pod, drops batches it has
// already merged (per source and sequence), and merges the rest into each
// session's in-memory results, which the results controller persists.
//
// A batch is answered only once the results that hold it are persisted
// (group commit): a sidecar that got 200 never needs to send it again, and
// one that did not retries it with the same sequence, which is merged at
// most once. A manager restart therefore loses nothing it acknowledged and
// never counts twice.
package collector
