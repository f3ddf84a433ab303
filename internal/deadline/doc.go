// Package deadline bounds the Manager's calls without a timer per call.
//
// A context.WithTimeout per call costs a timer and its allocations, and
// makes pgx watch the context of every statement for cancellation: about
// 2 µs of CPU on a call that raw pgx makes in 10. This package gives the
// two bounds on a call's path other ways to end:
//
//   - the router's default bound on a call whose context has no deadline
//     (DB_CONNECT_TIMEOUT + DB_POOL_TIMEOUT): a deadline the context
//     reports but no timer enforces (WithBound, bound.go);
//   - the pool timeout on an acquire nobody can cancel: a deadline shared
//     by every acquire that starts within the same slice of time, closed
//     by one timer per slice (Waits, shared.go).
package deadline
