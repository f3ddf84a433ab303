package dbmanager

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatewaykit/dbmanager/internal/walpos"
)

// Read replicas in a diagnosis: the config step lists them (addresses,
// never a password), each gets the per-host steps under names of its own
// (replica-dns ... replica-server), and its server step checks that it is
// a standby and how far it lags, as the Manager's replica checks do
// (replica_health.go). A replica that fails a step, or lags, is a warning:
// the Manager takes it out of rotation and reads go on elsewhere.

// readConfigProblems is what LoadConfig reports about the read
// configuration, for a Config built by hand (Diagnose).
func readConfigProblems(cfg Config) []error {
	errs := cfg.checkReadSources()
	if cfg.ReadURL.IsSet() {
		if err := checkReadURL(cfg.ReadURL.Reveal()); err != nil {
			errs = append(errs, err)
		}
	} else if len(cfg.ReadHosts) > 0 {
		if _, err := parseReadHosts(strings.Join(cfg.ReadHosts, ",")); err != nil {
			errs = append(errs, &ConfigError{Var: "AWS_DB_READ_HOST", Problem: err.Error()})
		}
	}
	return errs
}

// setReplicas records the read replicas of the writer target w with the
// pool configuration the Manager would build for each (openReplicas).
func (d *diagnosis) setReplicas(w connTarget) error {
	targets, err := resolveReadTargets(d.cfg, w)
	if err != nil {
		return err
	}
	d.replicas = nil
	for _, t := range targets {
		r, err := d.newTarget(roleReplica, t)
		if err != nil {
			return err
		}
		d.replicas = append(d.replicas, r)
	}
	return nil
}

// readSource names the variable the read replicas come from.
func readSource(cfg Config) string {
	if cfg.ReadURL.IsSet() {
		return "DATABASE_READ_URL"
	}
	return "AWS_DB_READ_HOST"
}

// readSummary describes the read replicas for the config and secret
// steps: where they come from, their addresses, and the lag limit.
func (d *diagnosis) readSummary() string {
	c := d.cfg
	if !c.HasReadReplicas() {
		return "read replicas: none configured (DATABASE_READ_URL and AWS_DB_READ_HOST unset): reads go to the writer"
	}
	var addrs []string
	for _, r := range d.replicas {
		addrs = append(addrs, r.target.Addr())
	}
	how := "each with the writer's user, password, database and TLS"
	if c.ReadURL.IsSet() {
		how += ", except what DATABASE_READ_URL (" + Redact(c.ReadURL.Reveal()) + ") names itself"
	}
	var list string
	switch {
	case len(addrs) > 0:
		list = plural(len(addrs), "replica") + ": " + strings.Join(addrs, ", ")
	case c.ReadURL.IsSet():
		list = "resolved with the writer once the secret is read"
	default:
		list = strings.Join(c.ReadHosts, ", ") + " (a port left out is the writer's)"
	}
	return "read replicas from " + readSource(c) + ", " + list + ", " + how + "; " + lagLimitText(c.ReadMaxLag)
}

// lagLimitText is DB_READ_MAX_LAG for a person.
func lagLimitText(limit time.Duration) string {
	if limit <= 0 {
		return "DB_READ_MAX_LAG -1 (no lag limit)"
	}
	return "DB_READ_MAX_LAG " + limit.String()
}

// sqlDiagReplicaState is what the replica's server step reads besides
// serverInfoSQL: whether it is in recovery, whether replay is paused, its
// replay position, and the age of the last transaction it replayed
// (microseconds).
const sqlDiagReplicaState = `SELECT pg_is_in_recovery(),
	CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END,
	(pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8,
	(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000000)::int8`

// sqlDiagWriterFlush is the writer's flushed WAL position: what a replica
// has replayed once it is fully caught up.
const sqlDiagWriterFlush = `SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::int8`

// replayPoll is how often the lag check reads the replica's position
// while it waits for it to reach the writer's.
const replayPoll = 50 * time.Millisecond

// The fixes of a replica's server step.
const (
	fixReplicaIsWriter = "point DATABASE_READ_URL or AWS_DB_READ_HOST at standbys (RDS: the read replicas' endpoints; Aurora: the cluster's reader endpoint), not at the writer; after a failover that promoted this node, replace it in the list with a replica of the new writer"
	fixReplicaLagging  = "find out why it falls behind (its load, long queries it replays around, the network from the writer, recovery_min_apply_delay) or, if reads may be that stale, raise DB_READ_MAX_LAG; until it catches up the Manager serves its reads from another replica or the writer"
	fixReplayPaused    = "WAL replay is paused on this replica: run SELECT pg_wal_replay_resume() on it"
)

// checkReplica adds to a replica's server step whether it is a standby
// and its lag against DB_READ_MAX_LAG; it warns on what takes it out of
// the Manager's rotation.
func (d *diagnosis) checkReplica(ctx context.Context, s *Step, conn *pgx.Conn, detail string) {
	simple := pgx.QueryExecModeSimpleProtocol
	var inRecovery bool
	var paused *bool
	var replay, ageMicros *int64
	if err := conn.QueryRow(ctx, sqlDiagReplicaState, simple).Scan(&inRecovery, &paused, &replay, &ageMicros); err != nil {
		s.warn(detail+"; cannot read its replay state: "+errorText(err), "check the replica's log; "+replicaOutOfRotation)
		return
	}
	limit := d.cfg.ReadMaxLag
	switch {
	case !inRecovery:
		s.warn(detail+"; not in recovery: this read replica is a writer (promoted by a failover, or the read configuration names the writer), and the Manager keeps it out of the read rotation", fixReplicaIsWriter)
		return
	case replay == nil:
		s.warn(detail+"; a standby without a replay position (pg_last_wal_replay_lsn() is NULL), which the Manager keeps out of the read rotation", "check the replica's log: it has not replayed any WAL yet")
		return
	}
	age := ""
	if ageMicros != nil {
		age = "its last replayed transaction committed " + ms(max(time.Duration(*ageMicros)*time.Microsecond, 0)) + " ago"
	}
	fix := fixReplicaLagging
	if paused != nil && *paused {
		detail += "; WAL replay is paused (pg_wal_replay_pause())"
		fix = fixReplayPaused + "; " + fixReplicaLagging
	}
	join := func(parts ...string) string {
		var out []string
		for _, p := range parts {
			if p != "" {
				out = append(out, p)
			}
		}
		return strings.Join(out, "; ")
	}
	if d.writerConn == nil {
		s.found(join(detail, "lag not measured: no writer node passed its steps to compare with", age, lagLimitText(limit)))
		return
	}
	var flush *int64
	sampled := time.Now()
	if err := d.writerConn.QueryRow(ctx, sqlDiagWriterFlush, simple).Scan(&flush); err != nil || flush == nil {
		s.found(join(detail, "lag not measured: cannot read the writer's WAL position", age, lagLimitText(limit)))
		return
	}
	if *replay >= *flush {
		detail = join(detail, "lag 0: it has replayed everything the writer had flushed", lagLimitText(limit))
		if paused != nil && *paused {
			s.warn(detail+"; with replay paused it falls behind with the writer's next write", fixReplayPaused)
			return
		}
		s.found(detail)
		return
	}
	behind := fmt.Sprintf("%d bytes of WAL behind the writer", *flush-*replay)
	if limit <= 0 {
		s.found(join(detail, behind, age, lagLimitText(limit)))
		return
	}
	// Wait, up to the limit, for it to replay what the writer had flushed:
	// if it does, its lag is at most the wait; if it does not, its lag is
	// past the limit.
	deadline := sampled.Add(limit)
	if dl, ok := ctx.Deadline(); ok && dl.Add(-time.Second).Before(deadline) {
		deadline = dl.Add(-time.Second)
	}
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
		case <-time.After(replayPoll):
		}
		var now *int64
		if err := conn.QueryRow(ctx, walpos.ReplayPositionSQL, simple).Scan(&now); err != nil || now == nil {
			break
		}
		if *now >= *flush {
			waited := time.Since(sampled)
			s.found(join(detail, fmt.Sprintf("lag under %s: it replayed the writer's position in that time (it was %s)", ms(waited), behind), "within "+lagLimitText(limit)))
			return
		}
	}
	waited := time.Since(sampled)
	if waited >= limit {
		s.warn(join(detail, fmt.Sprintf("lagging: %s later it still had not replayed what the writer had flushed (%s), so its lag is over %s", ms(waited), behind, lagLimitText(limit)), age,
			"the Manager keeps it out of the read rotation until it catches up"), fix)
		return
	}
	// The step's time ran out before the limit did: the age of its last
	// replayed transaction is the other bound the Manager uses.
	if ageMicros != nil && time.Duration(*ageMicros)*time.Microsecond > limit {
		s.warn(join(detail, behind, age, "lagging: lag over "+lagLimitText(limit)+" by that age", "the Manager keeps it out of the read rotation until it catches up"), fix)
		return
	}
	s.found(join(detail, behind, age, fmt.Sprintf("lag not settled against %s within the step's time", lagLimitText(limit))))
}
