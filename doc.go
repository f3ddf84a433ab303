// Package dbmanager gives a Go service one Manager for its PostgreSQL
// connection. The Manager finds the credentials (DATABASE_URL, an AWS
// Secrets Manager secret, or AWS_DB_* variables), opens a pgxpool with the
// TLS policy and pool settings of the environment, and serves one
// [Store] of JSON documents. When PostgreSQL is not configured, or cannot
// be reached at start-up, the same Store serves from memory, and the
// Manager moves back to PostgreSQL, with what was written meanwhile, once
// it answers. No caller ever branches on the backend.
//
// # Start-up
//
//	cfg, err := dbmanager.ConfigFromEnv() // every variable: see Config and the README
//	if err != nil {
//		return err // a variable is set but wrong
//	}
//	m := dbmanager.New(cfg, dbmanager.WithLogger(logger))
//	if err := m.Init(ctx); err != nil {
//		return err // misconfigured, or unreachable with DB_FALLBACK=none
//	}
//	defer m.Close(context.WithoutCancel(ctx))
//	apis := dbmanager.NewCollection[API](m.Store(), "apis")
//
// Keep the Store (or the Collection) for the life of the process: it
// routes every call to the backend in use. [HealthHandler] serves the
// /health JSON of the seed design; [Manager.Info] describes the connection
// for operators. [Default] is a process-wide Manager built from the
// environment, for code that cannot pass one around.
//
// # The Store contract
//
// A [Store] keeps JSON documents by collection and key. Every backend (the
// in-memory [MemStore], the PostgreSQL [PGStore], and the Manager's routing
// handle) keeps the same contract, checked by the storetest package:
//
//   - values are valid JSON and come back byte for byte; anything else is
//     [ErrInvalid] before the backend is touched;
//   - collections (at most 128 bytes) and keys (at most 512) are non-empty
//     UTF-8 without NUL;
//   - Version is 1 on create and grows by one on every Put; [IfVersion] and
//     [IfAbsent] are atomic, and a failed condition is [ErrConflict];
//   - List pages in bytewise key order whatever the database collation, and
//     [ListOptions].Prefix matches literally;
//   - a missing key is [ErrNotFound], an unreachable backend
//     [ErrUnavailable], a closed one [ErrClosed]; errors are *[OpError]
//     values naming the collection and key, tested with errors.Is.
//
// [Collection] stores Go values of one type as JSON on any Store, with a
// read-modify-write [Collection.Update] that retries on conflicts.
//
// # Fallback and recovery
//
// [Manager.Init] decides once:
//
//   - DATABASE_URL=memory://: memory on purpose, health "healthy";
//   - nothing configured: memory, health "degraded";
//   - a reachable primary: PostgreSQL;
//   - a primary that does not answer within DB_CONNECT_TIMEOUT: memory,
//     health "degraded", and a background loop that retries with backoff
//     (250ms growing to 5s) and then moves every record written to memory
//     into PostgreSQL before switching the Store over; a key PostgreSQL also
//     holds with other content keeps PostgreSQL's record (see [Conflict] and
//     [OnConflict]). With DB_FALLBACK=none, Init returns the error instead;
//   - a misconfiguration ([ErrConfig], a malformed or missing secret): Init
//     fails whatever DB_FALLBACK says.
//
// A primary that fails while running is not replaced by memory: a call
// that did not run is tried again for up to DB_CONNECT_TIMEOUT (within its
// deadline), then fails with ErrUnavailable; health turns "unhealthy"; and
// the pool serves again when the server, or a new writer, answers.
//
// # Clusters and failover
//
// DATABASE_URL may list several hosts (postgres://u@hostA:5432,hostB:5433/db,
// or host=hostA,hostB port=5432,5433), shown host by host in
// [ConnectionInfo].Hosts, logs and [Redact]. The pool only serves from a
// node that accepts writes: without target_session_attrs it asks for
// read-write, and a connection found on a node that turned read-only (a
// failover, Aurora fencing its old writer, stale DNS) is closed, the other
// idle connections are checked, and new ones resolve the host name again.
// A write that certainly did not run is retried on the new writer within
// the call's deadline; a write sent before the connection was lost fails
// with [ErrOutcomeUnknown], which also matches ErrUnavailable, so that the
// caller can read the key again. TCP keepalives (DB_TCP_KEEPALIVE) and
// TCP_USER_TIMEOUT (DB_TCP_USER_TIMEOUT) give up a node that went silent.
// Health runs a statement a read-only node refuses like a write, so it is
// never "healthy" while the Store's writes fail.
//
// # Configuration
//
// [LoadConfig] reads every setting through a getenv function
// ([ConfigFromEnv] uses os.Getenv); a variable that is set but wrong is an
// error naming it, never replaced by a default. [Config] documents each
// field with its variable and default; the README has the full table, the
// connection priority, TLS and RDS, Secrets Manager rotation, IAM and the
// pool settings mapped from SQLAlchemy. No password, secret value or IAM
// token appears in a log line, an error, [Manager.Info] or health output;
// connection strings are shown through [Redact].
//
// # A pool without the Store
//
// [NewPool] opens a *pgxpool.Pool from the same Config, with the same
// credentials (the cached secret, IAM tokens), TLS policy and pool
// settings, for services that want SQL of their own and no Store.
// [Diagnose] (and cmd/dbdoctor) walks the same path step by step and says
// where it breaks.
//
// # Read replicas
//
// With DATABASE_READ_URL or AWS_DB_READ_HOST, Get and List go to a read
// replica that has replayed the latest write this process acknowledged
// (each write learns the writer's WAL position after its commit, each
// replica read checks the replay position before its snapshot, both in the
// same round trip), otherwise to the writer: a process always reads its
// own writes. Writes, conditional writes and moves go to the writer.
// [ReadFromWriter] forces a read to the writer; [Manager.ReadPool] gives
// your own read-only SQL a replica's pool. Each replica is checked once a
// second and taken out of rotation when it fails, lags past
// DB_READ_MAX_LAG or turns out to be a writer; [Manager.Info] and
// [Manager.Health] list them. While the Store serves from memory no
// replica is used.
//
// # Observability
//
// The Manager reports to OpenTelemetry (the API only; the SDK is the
// application's): the pool and SQL round trips under the semantic
// conventions' names (db.client.operation.duration, db.client.connection.*),
// Store calls, fallbacks, recoveries, secret fetches and closed connections
// under dbmanager.*, a span per Store call and, under a recording span, one
// per SQL round trip. [WithMeterProvider] and [WithTracerProvider] choose
// the providers (the globals by default, also when installed after New);
// [WithCollectionAttribute] adds the collection name. DB_SLOW_QUERY_MS logs
// slow statements, DB_LEAK_DETECTION_MS connections held too long from
// [Manager.Pool]. No key, value, password or token is ever recorded.
//
// # Testing
//
// Unit tests of a service need no database: give it [NewMemStore], or a
// Manager configured with DATABASE_URL=memory://. A Store of your own is
// checked against the contract with storetest.Run:
//
//	func TestMyStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) dbmanager.Store { return newMyStore(t) })
//	}
package dbmanager
