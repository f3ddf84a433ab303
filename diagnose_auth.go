package dbmanager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gatewaykit/dbmanager/internal/connstr"
	"github.com/gatewaykit/dbmanager/internal/credentials"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The auth step: a login on this host exactly as the pool makes one (a
// copy of its connection configuration, the Manager's own credential hook
// for the secret or IAM token, pgx.ConnectConfig), each kind of refusal
// with its own explanation and fix.

// connHook is the Manager's credential hook (secret, IAM token, or none),
// built once per diagnosis.
type connHook struct {
	run func(context.Context, *pgx.ConnConfig) error
	err error
}

// credentialHook returns the hook the Manager's pool would run before
// every connection, wrapped so that the password or token it sets is
// scrubbed from the report.
func (d *diagnosis) credentialHook(ctx context.Context) (func(context.Context, *pgx.ConnConfig) error, error) {
	if d.hook == nil {
		hook, err := d.manager(nil).credentialHook(ctx, d.cache)
		d.hook = &connHook{err: err}
		if err == nil {
			d.hook.run = func(ctx context.Context, cc *pgx.ConnConfig) error {
				if hook != nil {
					if err := hook(ctx, cc); err != nil {
						return err
					}
				}
				d.addSecret(cc.Password)
				return nil
			}
		}
	}
	return d.hook.run, d.hook.err
}

// connect opens one connection with cc as the pool would: the hook, then
// pgx.ConnectConfig. The pool's own node check (ValidateConnect, e.g.
// target_session_attrs) is left to the server step, which reports it.
func (d *diagnosis) connect(ctx context.Context, cc *pgx.ConnConfig) (*pgx.Conn, error) {
	hook, err := d.credentialHook(ctx)
	if err != nil {
		return nil, err
	}
	cc = cc.Copy()
	cc.ValidateConnect = nil
	cc.ConnectTimeout = d.opts.stepTimeout
	if err := hook(ctx, cc); err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	return conn, safeError(err)
}

// checkAuth is the auth step; it returns the connection for the server
// step (nil when the login failed).
func (d *diagnosis) checkAuth(ctx context.Context, s *Step, t *diagTarget, cc *pgx.ConnConfig) *pgx.Conn {
	how := d.loginMethod(t, cc)
	start := time.Now()
	conn, err := d.connect(ctx, cc)
	took := time.Since(start)
	if err != nil {
		detail, fix := d.explainLogin(err, cc, how, took)
		s.fail(detail, fix)
		return nil
	}
	over := "in plaintext"
	if tc, ok := conn.PgConn().Conn().(*tls.Conn); ok {
		over = "over TLS " + tlsVersion(tc.ConnectionState().Version)
	}
	detail := fmt.Sprintf("logged in as %s to database %s with %s %s in %s", conn.Config().User, conn.Config().Database, how, over, ms(took))
	if took > d.cfg.ConnectTimeout {
		s.warn(detail+"; that is longer than DB_CONNECT_TIMEOUT ("+d.cfg.ConnectTimeout.String()+"): the Manager gives up sooner",
			"raise DB_CONNECT_TIMEOUT, or find out why connecting is slow (network latency, an overloaded server, slow DNS)")
	} else {
		s.found(detail)
	}
	return conn
}

// loginMethod names how the login proves who it is.
func (d *diagnosis) loginMethod(t *diagTarget, cc *pgx.ConnConfig) string {
	switch {
	case d.cfg.IAMAuth:
		return "an IAM token (AWS_DB_IAM_AUTH)"
	case t.role == roleReplica && len(connstr.Passwords(d.cfg.ReadURL.Reveal())) > 0:
		return "the password in DATABASE_READ_URL"
	case d.cfg.Source() == SourceSecret:
		return fmt.Sprintf("the password of secret %q", d.cfg.SecretID)
	case d.cfg.Source() == SourceAWSEnv:
		return "the password in AWS_DB_PASSWORD"
	case len(connstr.Passwords(d.cfg.DatabaseURL.Reveal())) > 0:
		return "the password in DATABASE_URL"
	case cc.Password != "":
		return "a password from PGPASSWORD or ~/.pgpass"
	}
	return "no password (trust, peer or certificate authentication)"
}

// The fixes for a writer that does not accept writes: a standby, or a
// primary made read-only.
const (
	fixReadOnlyWriter = "point the writer at the primary: for RDS and Aurora the cluster (writer) endpoint, not a reader or an instance endpoint of a replica; after a failover DNS may still name the old primary for a few seconds"
	fixFencedWriter   = "this primary has default_transaction_read_only on (for the server, the database or the user): turn it off (ALTER SYSTEM, ALTER DATABASE or ALTER ROLE ... SET default_transaction_read_only = off; on RDS, the parameter group); if it was fenced on purpose during a failover, point the writer at the new primary (RDS: the cluster writer endpoint)"
)

// explainLogin says why a login failed and how to fix it.
func (d *diagnosis) explainLogin(err error, cc *pgx.ConnConfig, how string, took time.Duration) (detail, fix string) {
	user, db := cc.User, cc.Database
	if db == "" {
		db = user
	}
	detail = errorText(err)
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		switch {
		case errors.Is(err, ErrIAMRequiresTLS):
			return detail, "set AWS_REQUIRE_SSL=true (or remove a weaker sslmode from DATABASE_URL): an IAM token is sent only over verified TLS"
		case errors.Is(err, ErrConfig):
			return detail, fixForConfigError(err)
		case classify(err) == ReasonTimeout:
			return fmt.Sprintf("timed out: no answer to the login within %s (%s)", ms(took), detail),
				"the server accepts TCP connections but does not answer: packets dropped after the handshake (security groups, network ACLs, a firewall), a proxy without a healthy target, or a hung server"
		case classify(err) == ReasonTLS:
			return detail, "see the tls step: the roots in use (AWS_SSLROOTCERT) must include the CA that issued the server's certificate, and the host name must be on it"
		}
		return detail, "check the network and the server (the steps above passed, so the failure is in the login itself)"
	}
	msg := pg.Message + " (SQLSTATE " + pg.Code + ")"
	lower := strings.ToLower(pg.Message)
	switch {
	case credentials.IsAuthFailure(err) && pg.Code == "08P01" && pg.Message == credentials.PoolerNoSuchUser:
		// PgBouncer's auth_query found no row for the user.
		return fmt.Sprintf("no such user %s: a pooler in front of PostgreSQL (PgBouncer) looked it up with its auth_query and found none: %s", user, msg),
			"check the user name (AWS_DB_USER, the URL's user or the secret's username; after an alternating-users rotation, the secret's current one), or CREATE ROLE " + quoteIdent(user) + " LOGIN on the server: PgBouncer's auth_query finds it from the next login on"
	case credentials.IsAuthFailure(err) && pg.Code == "08P01":
		// PgBouncer's own refusal (08P01): it checked the password itself.
		return fmt.Sprintf("wrong password for user %s: a pooler in front of PostgreSQL (PgBouncer) checked it and refused it: %s", user, msg),
			wrongPasswordFix(d.cfg) + "; PgBouncer checks passwords against its auth_file or its auth_query: after a password change on the server, an auth_file needs the new password too (and RELOAD), auth_query follows by itself"
	case credentials.IsAuthFailure(err) && d.cfg.IAMAuth:
		return "the server checked the IAM token as a password and refused it: " + msg,
			fmt.Sprintf("the user %s is not granted rds_iam, so RDS expects a password: GRANT rds_iam TO %s;", user, quoteIdent(user))
	case credentials.IsAuthFailure(err):
		return fmt.Sprintf("wrong password for user %s (PostgreSQL says the same when the user does not exist): %s", user, msg), wrongPasswordFix(d.cfg)
	case strings.Contains(lower, "pam authentication failed"):
		return "the IAM token was refused: " + msg,
			"allow rds-db:connect on arn:aws:rds-db:REGION:ACCOUNT:dbuser:RESOURCE-ID/" + user + " for the process's IAM role; check AWS_REGION is the database's region, the host is the endpoint the token is signed for, and this host's clock"
	case strings.Contains(lower, "no pg_hba.conf entry") && strings.Contains(lower, "no encryption"):
		return "the server accepts this login only over TLS: " + msg,
			"set AWS_REQUIRE_SSL=true (RDS with rds.force_ssl=1 requires TLS; RDS endpoints verify with the embedded Amazon RDS roots, another server needs AWS_SSLROOTCERT naming its CA's PEM)"
	case strings.Contains(lower, "no pg_hba.conf entry"):
		return "the server's pg_hba.conf has no line for this client, user and database: " + msg,
			"add a host (or hostssl) line for this client's address, user " + user + " and database " + db + " to pg_hba.conf and reload; on RDS pg_hba is managed, so check the user and database names"
	case strings.Contains(lower, "pg_hba.conf rejects"):
		return "a pg_hba.conf line rejects this client: " + msg,
			"change the reject line of pg_hba.conf that matches this client's address, user " + user + " and database " + db
	case pg.Code == "28000" && strings.Contains(lower, "does not exist"):
		return "no such user: " + msg, "check the user name (AWS_DB_USER, the URL's user or the secret's username), or CREATE ROLE " + quoteIdent(user) + " LOGIN"
	case pg.Code == "28000" && strings.Contains(lower, "not permitted to log in"):
		return "the user may not log in: " + msg, "ALTER ROLE " + quoteIdent(user) + " LOGIN;"
	case pg.Code == "3D000":
		return fmt.Sprintf("the database %s does not exist: %s", db, msg), "check AWS_DB_NAME (or the URL's path, or the secret's dbname), or CREATE DATABASE " + quoteIdent(db) + ";"
	case pg.Code == "42501":
		return "the user may not connect to this database: " + msg, fmt.Sprintf("GRANT CONNECT ON DATABASE %s TO %s;", quoteIdent(db), quoteIdent(user))
	case pg.Code == "53300":
		return "the server has no connection slot left: " + msg, "lower DB_POOL_SIZE/DB_MAX_OVERFLOW across the service's processes, raise max_connections, or put a pooler in front"
	case pg.Code == "57P03":
		return "the server is starting up, shutting down or in recovery: " + msg, "wait and run again; if it persists, check the server's log"
	}
	return "the server refused the login: " + msg, "check the server's log for the reason of this refusal"
}

// wrongPasswordFix says where the wrong password comes from.
func wrongPasswordFix(cfg Config) string {
	switch cfg.Source() {
	case SourceSecret:
		return fmt.Sprintf("the password of secret %q does not match the database's: if it was just rotated, run again in a minute; if the password was changed outside Secrets Manager, put the current one in the secret (or rotate it)", cfg.SecretID)
	case SourceAWSEnv:
		return "check AWS_DB_PASSWORD (and AWS_DB_USER)"
	}
	return "check the user and password in DATABASE_URL; percent-encode special characters in the password (@ as %40, : as %3A, / as %2F)"
}

func quoteIdent(s string) string { return pgx.Identifier{s}.Sanitize() }
