package dbmanager

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/gatewaykit/dbmanager/internal/execmode"
)

// The server step: the server's version, whether this node accepts writes
// (and whether the pool's own node check would use it; on a read replica,
// that it is a standby and its lag, diagnose_replica.go), max_connections
// against the pool's maximum, and signs of a transaction pooler in front
// of it with the query exec mode callers' SQL needs there.
//
// Every query of a diagnosis uses the simple protocol, so that it works
// behind any pooler.

// execModeSetting names the setting that picks the query exec mode of
// callers' SQL on Pool().
const execModeSetting = "DB_QUERY_EXEC_MODE=exec (or cache_describe)"

const serverInfoSQL = `SELECT current_setting('server_version'),
	pg_is_in_recovery(),
	current_setting('transaction_read_only') = 'on',
	current_setting('default_transaction_read_only') = 'on',
	current_setting('max_connections')::int,
	current_setting('superuser_reserved_connections')::int,
	coalesce(nullif(current_setting('rds.rds_superuser_reserved_connections', true), ''), '0')::int,
	(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int,
	coalesce((SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user), -1),
	coalesce((SELECT datconnlimit FROM pg_database WHERE datname = current_database()), -1),
	current_setting('port')::int,
	pg_backend_pid()`

// serverInfo is what serverInfoSQL reads.
type serverInfo struct {
	version                   string
	inRecovery, readOnly      bool
	defaultReadOnly           bool
	maxConns, reserved, rdsRe int
	inUse                     int
	roleLimit, dbLimit        int
	port                      int
	pid                       int32
}

// checkServer is the server step on the connection the auth step opened.
func (d *diagnosis) checkServer(ctx context.Context, s *Step, t *diagTarget, cc *pgx.ConnConfig, conn *pgx.Conn, res *hostResult) {
	var in serverInfo
	err := conn.QueryRow(ctx, serverInfoSQL, pgx.QueryExecModeSimpleProtocol).Scan(&in.version, &in.inRecovery, &in.readOnly,
		&in.defaultReadOnly, &in.maxConns, &in.reserved, &in.rdsRe, &in.inUse, &in.roleLimit, &in.dbLimit, &in.port, &in.pid)
	if err != nil {
		s.fail("cannot read the server's settings: "+errorText(err), "the login worked but a plain SELECT failed: check the server's log")
		return
	}
	res.readOnly = in.inRecovery || in.readOnly
	res.poolUses = true
	res.fix = fixReadOnlyWriter
	if !in.inRecovery {
		res.fix = fixFencedWriter
	}
	var parts []string
	parts = append(parts, "PostgreSQL "+in.version)
	switch {
	case in.inRecovery:
		parts = append(parts, "read-only: a standby (pg_is_in_recovery)")
	case in.readOnly && in.defaultReadOnly:
		parts = append(parts, "read-only: default_transaction_read_only is on")
	case in.readOnly:
		parts = append(parts, "read-only (transaction_read_only is on)")
	default:
		parts = append(parts, "accepts writes")
	}
	if validate := t.pool.ConnConfig.ValidateConnect; validate != nil {
		if err := validate(ctx, conn.PgConn()); err != nil {
			res.poolUses = false
			parts = append(parts, "the pool's node check skips it ("+errorText(err)+")")
		}
	}

	// The Store's own test (execmode.BehindProxy): a pooler or proxy that
	// multiplexes clients invents the process id it hands out.
	proxied := uint32(in.pid) != conn.PgConn().PID()
	pooled, poolerWhy := d.detectPooler(ctx, cc, conn, in.pid)
	mode := t.pool.ConnConfig.DefaultQueryExecMode
	switch {
	case pooled:
		parts = append(parts, "a transaction pooler is in front ("+poolerWhy+")")
	case proxied:
		parts = append(parts, fmt.Sprintf("a pooler or proxy is in front (the server's process id %d is not the %d the connection was given), in session pooling as far as this test can tell", in.pid, conn.PgConn().PID()))
		if badBehindPooler(mode) {
			parts = append(parts, "if it pools transactions, callers' SQL on Pool() needs "+execModeSetting)
		}
	case int(cc.Port) != in.port && !strings.HasPrefix(cc.Host, "/"):
		parts = append(parts, fmt.Sprintf("the server listens on port %d, this connection went to %d: a proxy is in between", in.port, cc.Port))
	}

	usable := in.maxConns - in.reserved - in.rdsRe
	limit, limitWhy := usable, fmt.Sprintf("max_connections %d minus %d reserved", in.maxConns, in.reserved+in.rdsRe)
	if in.roleLimit >= 0 && in.roleLimit < limit {
		limit, limitWhy = in.roleLimit, fmt.Sprintf("the user's CONNECTION LIMIT %d", in.roleLimit)
	}
	if in.dbLimit >= 0 && in.dbLimit < limit {
		limit, limitWhy = in.dbLimit, fmt.Sprintf("the database's CONNECTION LIMIT %d", in.dbLimit)
	}
	poolMax := int(t.pool.MaxConns)
	others := max(in.inUse-1, 0) // this diagnosis holds one
	parts = append(parts, fmt.Sprintf("connections: the pool opens up to %d, the server allows %d (%s), %d in use by others", poolMax, limit, limitWhy, others))
	detail := strings.Join(parts, "; ")

	connFix := "lower DB_POOL_SIZE + DB_MAX_OVERFLOW (every process of the service opens its own pool), raise max_connections (RDS: the parameter group; its default follows the instance's memory), or put a pooler in front"
	switch {
	case t.role == roleWriter && res.readOnly && res.poolUses:
		s.fail(detail+"; the writer is expected here, and every write would fail (SQLSTATE 25006)", res.fix)
	case pooled && badBehindPooler(mode):
		s.warn(detail+"; the query exec mode of SQL on Pool() is "+execmode.Name(mode)+", which fails behind transaction pooling (42P05 prepared statement already exists, 26000, 08P01); the Store's own statements adapt by themselves",
			"for your own SQL on Pool(), set "+execModeSetting)
	case pooled:
		s.found(detail + "; the query exec mode of SQL on Pool(), " + execmode.Name(mode) + ", works behind it")
	case !pooled && poolMax > limit:
		s.warn(detail+fmt.Sprintf("; one full pool (%d) is more than the server allows (%d)", poolMax, limit), connFix)
	case !pooled && others+poolMax > limit:
		s.warn(detail+fmt.Sprintf("; with %d connections in use, a full pool (%d) would pass the limit (%d)", others, poolMax, limit), connFix)
	default:
		s.found(detail)
	}
	if t.role == roleReplica {
		connFix := s.Fix
		d.checkReplica(ctx, s, conn, s.Detail)
		if connFix != "" && s.Fix != connFix {
			s.Fix = connFix + "; " + s.Fix
		}
	}
}

// badBehindPooler reports whether a query exec mode fails behind
// transaction pooling (PgBouncer before 1.21, RDS Proxy): the ones that
// keep named or unnamed prepared statements across round trips.
func badBehindPooler(m pgx.QueryExecMode) bool {
	return m == pgx.QueryExecModeCacheStatement || m == pgx.QueryExecModeDescribeExec
}

// detectPooler looks for a transaction (or statement) pooler between this
// host and the server: without one, every session has a server process
// of its own for its whole life. With one, a second session that opens a
// transaction gets the server process the first one just released, or
// the first session finds another process on its next statement.
func (d *diagnosis) detectPooler(ctx context.Context, cc *pgx.ConnConfig, conn *pgx.Conn, firstPID int32) (bool, string) {
	other, err := d.connect(ctx, cc)
	if err != nil {
		return false, ""
	}
	defer closeConn(other)
	simple := pgx.QueryExecModeSimpleProtocol
	if _, err := other.Exec(ctx, "BEGIN", simple); err != nil {
		return false, ""
	}
	defer func() { _, _ = other.Exec(ctx, "ROLLBACK", simple) }()
	var otherPID, againPID int32
	if err := other.QueryRow(ctx, "SELECT pg_backend_pid()", simple).Scan(&otherPID); err != nil {
		return false, ""
	}
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()", simple).Scan(&againPID); err != nil {
		return false, ""
	}
	switch {
	case otherPID == firstPID:
		return true, fmt.Sprintf("a second session was served by the first one's server process %d", firstPID)
	case againPID != firstPID:
		return true, fmt.Sprintf("the session's server process changed between statements, %d then %d", firstPID, againPID)
	}
	return false, ""
}
