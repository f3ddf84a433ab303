package dbmanager

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/gatewaykit/dbmanager/internal/tlstrust"
	"github.com/gatewaykit/dbmanager/internal/walpos"
)

// Timing of the replica checks.
const (
	replicaCheckInterval = time.Second            // each replica, and the writer's position
	replicaRecheckAfter  = 250 * time.Millisecond // after a failed check, to confirm it soon
	replicaFailuresOut   = 2                      // failed checks in a row that take a replica out
)

// replicaSet is the Manager's read replicas on one writer: a pool per
// replica, their health (replica_health.go), and the position a replica
// must have replayed to serve a read (internal/walpos). It exists only when
// read replicas are configured and the Store is on PostgreSQL; it belongs
// to the primary it was opened with, and closes with it.
type replicaSet struct {
	log            *slog.Logger
	maxLag         time.Duration // 0: no limit
	checkTimeout   time.Duration // bound of one health check
	attemptTimeout time.Duration // bound of one read on a replica (DB_CONNECT_TIMEOUT)
	writer         *pgxpool.Pool // for the writer's position
	pos            *walpos.Position
	replicas       []*replica
	next           atomic.Uint32 // round robin
	// writerSample is the writer's flushed WAL positions at its last
	// samples, for the lag rule (replica_health.go).
	writerSample atomic.Pointer[walSamples]
	// writerReads counts Store reads that went to the writer.
	writerReads atomic.Uint64

	tel *instrumentation    // the Manager's telemetry (nil in tests that build a set by hand)
	reg metric.Registration // the replicas' metrics callback, while started

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// walSample is the writer's flushed WAL position at a time.
type walSample struct {
	lsn uint64
	at  time.Time
}

// newReplicaSet returns a set without replicas and without goroutines.
func newReplicaSet(cfg Config, log *slog.Logger, tel *instrumentation, checkTimeout time.Duration, writer *pgxpool.Pool) *replicaSet {
	return &replicaSet{log: log, maxLag: cfg.ReadMaxLag, checkTimeout: checkTimeout,
		attemptTimeout: cfg.ConnectTimeout, writer: writer, pos: walpos.New(), tel: tel}
}

// newReplica returns the replica for t; its pool config pc gets the hook
// that forgets what was seen on a connection when it closes.
func newReplica(t connTarget, pc *pgxpool.Config, tls *tlstrust.Recorder) *replica {
	r := &replica{addr: t.Addr(), tls: tls, wake: make(chan struct{}, 1)}
	inner := pc.BeforeClose
	pc.BeforeClose = func(c *pgx.Conn) {
		r.replayedOn.Delete(c.PgConn())
		if inner != nil {
			inner(c)
		}
	}
	return r
}

// add adds r, on pool (which the set then owns; pt, its telemetry, may be
// nil).
func (rs *replicaSet) add(r *replica, pool *pgxpool.Pool, pt *poolTelemetry) {
	r.pool, r.tel = pool, pt
	rs.replicas = append(rs.replicas, r)
}

// start begins checking the replicas and learning the writer's position,
// until close (or ctx ends). Reads go to the writer until a replica's
// first check succeeds and the writer's position is known. Calling it
// again does nothing.
func (rs *replicaSet) start(ctx context.Context) {
	if rs == nil {
		return
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.started {
		return
	}
	rs.started = true
	ctx, rs.cancel = context.WithCancel(ctx)
	rs.reg = rs.tel.observeReplicas(rs)
	rs.wg.Add(1 + len(rs.replicas))
	go rs.learnWriter(ctx)
	for _, r := range rs.replicas {
		go rs.watch(ctx, r)
	}
}

// close stops every check, waits for them and closes every replica pool
// (waiting for connections in use).
func (rs *replicaSet) close() {
	if rs == nil {
		return
	}
	rs.mu.Lock()
	rs.started = true // a later start must not begin anything
	if rs.cancel != nil {
		rs.cancel()
	}
	reg := rs.reg
	rs.mu.Unlock()
	rs.wg.Wait()
	if reg != nil {
		if err := reg.Unregister(); err != nil {
			otel.Handle(err)
		}
	}
	for _, r := range rs.replicas {
		r.setUsable(false)
		r.tel.closePool(r.pool)
	}
}

// pick returns the replica a read should try, given the position it must
// have replayed: one known to have replayed that far (round robin among
// them), else the usable one that had replayed furthest when last seen
// (it may have caught up), else nil (read from the writer).
func (rs *replicaSet) pick(lsn uint64) *replica {
	n := len(rs.replicas)
	start := int(rs.next.Add(1))
	var best *replica
	var bestReplay uint64
	for i := range n {
		r := rs.replicas[(start+i)%n]
		if !r.usable.Load() {
			continue
		}
		replay := r.replay.Load()
		if replay >= lsn {
			return r
		}
		if best == nil || replay > bestReplay {
			best, bestReplay = r, replay
		}
	}
	return best
}

// poolFor returns the pool of a replica known to have replayed the
// latest acknowledged write, or nil.
func (rs *replicaSet) poolFor() *pgxpool.Pool {
	lsn, known := rs.pos.Current()
	if !known {
		return nil
	}
	if r := rs.pick(lsn); r != nil && r.replay.Load() >= lsn {
		return r.pool
	}
	return nil
}

// replica is one read replica: its pool, and what its checks and the
// reads on it found.
type replica struct {
	addr string // host:port, to show
	pool *pgxpool.Pool
	tel  *poolTelemetry // its pool's metrics (nil without)
	tls  *tlstrust.Recorder
	wake chan struct{} // asks for a check now (buffered, 1)

	// usable is what pick reads: in rotation and not suspected since.
	usable atomic.Bool
	// suspect is set by a read that failed for want of a connection,
	// until the next check succeeds.
	suspect atomic.Bool
	// replay is the replay position last seen (checks and reads): a hint
	// for pick, never trusted for consistency.
	replay atomic.Uint64
	reads  atomic.Uint64 // Store reads served
	// unnamed is set when a proxy or pooler stands between the Manager
	// and the replica (found at its first check, or by a refused prepared
	// statement): its reads then use no named prepared statement.
	unnamed    atomic.Bool
	proxyKnown bool // the first check looked (checker goroutine only)
	// replayedOn is, for each open connection of the pool (its
	// *pgconn.PgConn), the replay position a check on that connection
	// found. While a connection is open its server has not restarted, and
	// a running standby's replay only moves forward, so a read on it needs
	// no check for any position at or below that (see read).
	replayedOn sync.Map

	mu     sync.Mutex // guards the fields below
	state  string     // ReplicaStarting, ReplicaInRotation, ReplicaOutOfRotation
	why    outReason
	reason string
	lag    time.Duration
	last   time.Time // the last check that answered
}

// setUsable records whether pick may choose r.
func (r *replica) setUsable(v bool) { r.usable.Store(v) }

// sawReplay records the replay position r reported. It may go down: a
// replica rebuilt after a failover replays from an earlier point.
func (r *replica) sawReplay(lsn uint64) { r.replay.Store(lsn) }

// checkNow asks r's checker for a check at once.
func (r *replica) checkNow() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}
