package dbmanager

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager/internal/tlstrust"
)

// openReplicas opens a pool per configured read replica of the writer
// target (none, and a nil set, without read configuration). The pools do
// not dial: a replica that is down at start-up is only out of rotation.
// Its errors are misconfigurations (*ConfigError).
func (m *Manager) openReplicas(writer connTarget, writerPool *pgxpool.Pool, beforeConnect func(context.Context, *pgx.ConnConfig) error) (*replicaSet, error) {
	targets, err := resolveReadTargets(m.cfg, writer)
	if err != nil || len(targets) == 0 {
		return nil, err
	}
	rs := newReplicaSet(m.cfg, m.log, m.tel, m.opts.healthTimeout, writerPool)
	for _, t := range targets {
		rec := &tlstrust.Recorder{}
		pc, err := newPoolConfig(m.cfg, t, withPoolLogger(m.log), withBeforeConnect(beforeConnect), withTLSRecorder(rec))
		if err != nil {
			rs.close()
			return nil, err
		}
		r := newReplica(t, pc, rec)
		pt := m.tel.instrumentPool(pc) // db.client.connection.* with the replica's pool name
		pool, err := pgxpool.NewWithConfig(context.Background(), pc)
		if err != nil {
			rs.close()
			return nil, safeError(err)
		}
		rs.add(r, pool, pt.observe(pool))
	}
	return rs, nil
}

// ReadPool returns a pool for the caller's own read-only SQL and true
// while the Store serves from PostgreSQL (nil and false otherwise): the
// pool of a read replica in rotation that has replayed the latest write
// the Store acknowledged, else the writer's pool (as Pool returns it).
// Without read replicas it is always the writer's.
//
// Ask for it for each unit of work rather than keeping it: the choice
// follows the replicas' health. Each query on a replica's pool is not
// checked the way the Store's reads are, so it sees what the replica has
// replayed (at most DB_READ_MAX_LAG behind the writer, and at least the
// Store's latest acknowledged write when ReadPool chose it). Writes on a
// replica's pool fail with SQLSTATE 25006. The pools belong to the
// Manager: do not close them.
func (m *Manager) ReadPool() (*pgxpool.Pool, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mode != modePrimary {
		return nil, false
	}
	if p := m.primary.replicas.poolForReads(); p != nil {
		return p, true
	}
	return m.primary.pool, true
}

// poolForReads is poolFor on a possibly nil set.
func (rs *replicaSet) poolForReads() *pgxpool.Pool {
	if rs == nil {
		return nil
	}
	return rs.poolFor()
}

// ReplicaInfo describes one read replica in Info and Health.
type ReplicaInfo struct {
	// Address is the replica's host:port (never a password).
	Address string `json:"address"`
	// State is ReplicaStarting, ReplicaInRotation or ReplicaOutOfRotation.
	State string `json:"state"`
	// Reason says why it is out of rotation ("" otherwise).
	Reason string `json:"reason,omitempty"`
	// Lag is how far behind the writer its last check found it (an
	// upper bound; 0 when it had replayed everything the writer had
	// flushed a moment before).
	Lag time.Duration `json:"lag_ms"`
	// Reads counts the Store reads it served.
	Reads uint64 `json:"reads"`
	// LastCheck is when a check last got an answer from it (zero if
	// never).
	LastCheck time.Time `json:"last_check,omitzero"`
}

// MarshalJSON writes Lag in milliseconds.
func (ri ReplicaInfo) MarshalJSON() ([]byte, error) {
	type plain ReplicaInfo
	return json.Marshal(struct {
		plain
		Lag float64 `json:"lag_ms"`
	}{plain(ri), float64(ri.Lag.Microseconds()) / 1000})
}

// infos describes every replica, in configuration order.
func (rs *replicaSet) infos() []ReplicaInfo {
	if rs == nil {
		return nil
	}
	out := make([]ReplicaInfo, len(rs.replicas))
	for i, r := range rs.replicas {
		r.mu.Lock()
		out[i] = ReplicaInfo{Address: r.addr, State: r.state, Reason: r.reason, Lag: r.lag, LastCheck: r.last}
		r.mu.Unlock()
		if out[i].State == "" {
			out[i].State = ReplicaStarting
		}
		out[i].Reads = r.reads.Load()
	}
	return out
}

// healthSummary is the replicas' part of the health message: how many
// are in rotation, which are not and why, and where reads go.
func replicaSummary(infos []ReplicaInfo) string {
	in := 0
	var out []string
	for _, ri := range infos {
		switch ri.State {
		case ReplicaInRotation:
			in++
		case ReplicaStarting:
			out = append(out, ri.Address+" starting")
		default:
			out = append(out, ri.Address+" "+ri.Reason)
		}
	}
	s := fmt.Sprintf("read replicas: %d of %d in rotation", in, len(infos))
	if len(out) == 0 {
		return s
	}
	s += " (out: " + strings.Join(out, "; ") + ")"
	if in == 0 {
		return s + "; reads go to the primary"
	}
	return s + "; reads go to the others or the primary"
}
