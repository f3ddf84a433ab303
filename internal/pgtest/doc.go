// Package pgtest gives every test a real, isolated PostgreSQL database
// cheaply, and gives fault tests a server they can stop, restart and kill.
//
// # Model
//
// Each test binary (one Go package) shares ONE PostgreSQL server, started
// lazily by the first call to [URL] and stopped by [Main]. Every call to
// [URL] creates a fresh, empty database on that server (copied from the
// template0 template database, about a tenth of a second) and drops it
// when the test ends (DROP DATABASE ... WITH (FORCE)), so tests never see
// each other's data and may run in parallel.
//
// The server comes from the first source that works:
//
//  1. TEST_DATABASE_URL: an existing server reachable with a postgres://
//     URL whose user may CREATE DATABASE. Fresh databases are made on it.
//  2. The local PostgreSQL binaries (initdb and postgres, found in
//     PGTEST_BINDIR, under /usr/lib/postgresql/*/bin, in PATH, or through
//     pg_config --bindir). pgtest runs initdb once per test binary into a
//     private temp dir (a unique os.MkdirTemp name under PGTEST_TMPDIR if
//     set, else /dev/shm, whose tmpfs makes copying a cluster fast, else
//     os.TempDir()), copies that cluster for each server, and runs postgres
//     itself (not through pg_ctl) on 127.0.0.1 and a free random port,
//     with unix sockets disabled. When the test runs as root, initdb and
//     postgres run as the "postgres" user.
//  3. A Docker container through testcontainers-go, when no source above
//     works and a container engine answers testcontainers' health check
//     within 5 seconds (so machines without Docker skip quickly). The image
//     is postgres:15-alpine, or PGTEST_IMAGE (an official-style postgres
//     image of PostgreSQL 15 or newer). It is set up like a local cluster
//     (superuser "postgres" with a random password, ICU en-US default
//     collation, durability off, max_connections 300), terminated by
//     [Main], and removed by testcontainers' reaper container (Ryuk) if the
//     test binary dies first. While it runs, testcontainers keeps
//     goroutines of its own, which goleak checks would see.
//
// When no source works, [URL] and [NewServer] skip the test with the
// reason, or fail it when the environment variable
// DBMANAGER_REQUIRE_POSTGRES=1 is set (as .ci/run does).
//
// Local servers use real password authentication over TCP: the superuser
// "postgres" has a random password, pg_hba.conf demands scram-sha-256, and
// every URL carries the password (escaped with net/url), so roles created
// by tests authenticate the way production does and a wrong password
// fails with SQLSTATE 28P01. Durability is traded for speed (fsync,
// synchronous_commit and full_page_writes are off); max_connections is
// 300. The cluster's default collation is ICU en-US when the binaries
// support it, so code that needs bytewise order must ask for COLLATE "C".
//
// [NewServer] starts a dedicated server that one test controls: [Server.Stop]
// (fast shutdown, data and port kept), [Server.Start] (same port again),
// [Server.Kill] (SIGKILL of the postmaster and its backends; returns when
// they are gone) and TLS through [WithTLS]. Dedicated servers keep
// synchronous_commit on, so committed rows survive Kill. They always come
// from the local binaries: with only TEST_DATABASE_URL or Docker,
// [NewServer] skips (or fails) saying fault tests need local binaries.
//
// # Clusters and PgBouncer
//
// [NewCluster] starts a streaming-replication cluster from the local
// binaries: a primary copied from the pristine cluster and standbys made
// from it with pg_basebackup, for failover tests ([Cluster.Promote],
// [Cluster.Rebuild], [Server.Fence]). Its nodes are Servers, so Stop,
// Start and Kill work on them. [NewPgBouncer] runs a PgBouncer of the
// test's own in front of any server. Both are cleaned up like servers.
//
// # Cleanup
//
// Nothing is left behind, however the test binary ends: servers are stopped
// by t.Cleanup and [Main]; the postgres processes get SIGQUIT when the test
// binary dies (Pdeathsig); and a tiny reaper process (sh), started once per
// test binary, waits on a pipe from it and, when the pipe closes (normal
// exit, panic, os.Exit or SIGKILL), kills any postmaster or PgBouncer still
// running in pgtest's temp dir and removes that dir. pgtest keeps no goroutine running
// between calls, so packages that check for leaks with goleak can use it.
//
// # Use
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		pool, err := pgxpool.New(ctx, pgtest.URL(t))
//		...
//	}
package pgtest
