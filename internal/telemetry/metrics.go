// Package telemetry names what dbmanager reports to OpenTelemetry: the
// instruments (name, unit, kind, description), the attribute keys and
// values, and the static summaries of SQL statements that name spans.
// It depends on the OpenTelemetry API only.
//
// To add an instrument: declare a Metric below, list it in All, add a
// field to Instruments and create it in NewInstruments (or, for an
// observable one, register it with the callback that reads its source).
package telemetry

import (
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// ScopeName is the instrumentation scope of every meter and tracer.
const ScopeName = "github.com/gatewaykit/dbmanager"

// Kind is an instrument's kind.
type Kind string

// Instrument kinds.
const (
	Counter         Kind = "counter"            // synchronous, monotonic
	Histogram       Kind = "histogram"          // synchronous
	ObservedCounter Kind = "observable counter" // read in a callback, monotonic
	ObservedUpDown  Kind = "observable updown"  // read in a callback, goes up and down
	ObservedGauge   Kind = "observable gauge"   // read in a callback
)

// Metric describes one instrument.
type Metric struct {
	Name        string
	Unit        string
	Kind        Kind
	Description string
	// Attributes lists the attribute keys its points carry ("?" marks
	// one carried only sometimes: error.type on failures, the collection
	// when opted in).
	Attributes []string
}

// The semantic conventions' database client metrics
// (https://opentelemetry.io/docs/specs/semconv/database/database-metrics/).
// Only db.client.operation.duration is stable; the connection pool
// metrics are still in development and may be renamed there.
var (
	OperationDuration = Metric{"db.client.operation.duration", "s", Histogram,
		"Duration of database client operations.",
		[]string{"db.system.name", "db.operation.name", "db.collection.name?", "db.query.summary", "db.namespace?", "server.address", "server.port?", "error.type?", "db.response.status_code?"}}
	ConnectionCount = Metric{"db.client.connection.count", "{connection}", ObservedUpDown,
		"The number of connections that are currently in state described by the state attribute.",
		[]string{"db.client.connection.pool.name", "db.client.connection.state"}}
	ConnectionMax = Metric{"db.client.connection.max", "{connection}", ObservedUpDown,
		"The maximum number of open connections allowed.",
		[]string{"db.client.connection.pool.name"}}
	ConnectionIdleMin = Metric{"db.client.connection.idle.min", "{connection}", ObservedUpDown,
		"The minimum number of idle open connections allowed.",
		[]string{"db.client.connection.pool.name"}}
	ConnectionPending = Metric{"db.client.connection.pending_requests", "{request}", ObservedUpDown,
		"The number of current pending requests for an open connection.",
		[]string{"db.client.connection.pool.name"}}
	ConnectionTimeouts = Metric{"db.client.connection.timeouts", "{timeout}", ObservedCounter,
		"The number of connection timeouts that have occurred trying to obtain a connection from the pool.",
		[]string{"db.client.connection.pool.name"}}
	ConnectionWaitTime = Metric{"db.client.connection.wait_time", "s", Histogram,
		"The time it took to obtain an open connection from the pool.",
		[]string{"db.client.connection.pool.name"}}
	ConnectionUseTime = Metric{"db.client.connection.use_time", "s", Histogram,
		"The time between borrowing a connection and returning it to the pool.",
		[]string{"db.client.connection.pool.name"}}
	ConnectionCreateTime = Metric{"db.client.connection.create_time", "s", Histogram,
		"The time it took to create a new connection.",
		[]string{"db.client.connection.pool.name"}}
)

// dbmanager's own metrics: what only this library knows.
var (
	StoreOperations = Metric{"dbmanager.store.operations", "{operation}", ObservedCounter,
		"Store calls, by operation, backend and outcome.",
		[]string{AttrOperation, AttrBackend, AttrOutcome, "error.type?", AttrCollection + "?"}}
	StoreDuration = Metric{"dbmanager.store.operation.duration", "s", Histogram,
		"Duration of Store calls, by operation, backend and outcome.",
		[]string{AttrOperation, AttrBackend, AttrOutcome, "error.type?", AttrCollection + "?"}}
	StoreBackend = Metric{"dbmanager.store.backend", "{backend}", ObservedGauge,
		"1 for the backend the Store serves from, 0 for the other.",
		[]string{AttrBackend}}
	Fallbacks = Metric{"dbmanager.fallbacks", "{fallback}", Counter,
		"Times the Store fell back to memory because the primary could not be reached.",
		[]string{"error.type"}}
	RecoveryAttempts = Metric{"dbmanager.recovery.attempts", "{attempt}", Counter,
		"Attempts to reach the primary again during a fallback.",
		[]string{AttrOutcome, "error.type?"}}
	Recoveries = Metric{"dbmanager.recoveries", "{recovery}", Counter,
		"Moves back to the primary that completed.",
		nil}
	RecordsMoved = Metric{"dbmanager.recovery.records_moved", "{record}", Counter,
		"Records written to the primary by moves back from memory.",
		nil}
	Conflicts = Metric{"dbmanager.recovery.conflicts", "{record}", Counter,
		"Records written in memory whose key the primary also held with other content (the primary's record was kept).",
		nil}
	MoveDuration = Metric{"dbmanager.recovery.move.duration", "s", Histogram,
		"Duration of moves back to the primary, writes held included.",
		[]string{AttrOutcome}}
	SecretFetches = Metric{"dbmanager.secret.fetches", "{fetch}", Counter,
		"Fetches of the database secret from Secrets Manager, by outcome.",
		[]string{AttrOutcome, "error.type?"}}
	RotationRetries = Metric{"dbmanager.secret.rotation_retries", "{retry}", Counter,
		"Logins retried with a refreshed secret after an authentication failure (password rotation).",
		nil}
	ConnectionsClosed = Metric{"dbmanager.connections.closed", "{connection}", Counter,
		"Connections the pool closed, by reason.",
		[]string{"db.client.connection.pool.name", AttrCloseReason}}
	SlowQueries = Metric{"dbmanager.slow_queries", "{statement}", Counter,
		"Statements slower than DB_SLOW_QUERY_MS.",
		[]string{"db.client.connection.pool.name", "db.operation.name", "db.collection.name?"}}
	ConnectionLeaks = Metric{"dbmanager.connection.leaks", "{connection}", Counter,
		"Connections taken from Pool() and held longer than DB_LEAK_DETECTION_MS.",
		[]string{"db.client.connection.pool.name"}}
	ReplicaInRotation = Metric{"dbmanager.replica.in_rotation", "{replica}", ObservedGauge,
		"1 while a read replica is in rotation (serves the reads it can answer consistently), 0 otherwise.",
		[]string{AttrReplica}}
	ReplicaLag = Metric{"dbmanager.replica.lag", "s", ObservedGauge,
		"How far behind the writer a read replica's last check found it (an upper bound).",
		[]string{AttrReplica}}
	ReplicaReads = Metric{"dbmanager.replica.reads", "{read}", ObservedCounter,
		"Store reads (Get, List) by where they were served: a replica, or the primary (none caught up or in rotation, ReadFromWriter, a replica failed).",
		[]string{AttrReplica}}
)

// All lists every instrument the library creates.
var All = []Metric{
	OperationDuration, ConnectionCount, ConnectionMax, ConnectionIdleMin, ConnectionPending,
	ConnectionTimeouts, ConnectionWaitTime, ConnectionUseTime, ConnectionCreateTime,
	StoreOperations, StoreDuration, StoreBackend, Fallbacks, RecoveryAttempts, Recoveries,
	RecordsMoved, Conflicts, MoveDuration, SecretFetches, RotationRetries, ConnectionsClosed,
	SlowQueries, ConnectionLeaks, ReplicaInRotation, ReplicaLag, ReplicaReads,
}

// Bucket boundaries, in seconds. SQL round trips and pool waits use the
// semantic conventions' advice; Store calls add finer buckets, since a
// call served from memory takes microseconds.
var (
	sqlBuckets   = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10}
	storeBuckets = []float64{0.00001, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10}
)

// Instruments are the synchronous instruments, created once per Manager.
// The observable ones are created with the callback that reads them (see
// PoolObservables and BackendGauge).
type Instruments struct {
	OperationDuration  metric.Float64Histogram
	ConnectionWait     metric.Float64Histogram
	ConnectionUse      metric.Float64Histogram
	ConnectionCreate   metric.Float64Histogram
	StoreOperations    metric.Int64ObservableCounter
	StoreDuration      metric.Float64Histogram
	Fallbacks          metric.Int64Counter
	RecoveryAttempts   metric.Int64Counter
	Recoveries         metric.Int64Counter
	RecordsMoved       metric.Int64Counter
	Conflicts          metric.Int64Counter
	MoveDuration       metric.Float64Histogram
	SecretFetches      metric.Int64Counter
	RotationRetries    metric.Int64Counter
	ConnectionsClosed  metric.Int64Counter
	SlowQueries        metric.Int64Counter
	ConnectionLeaks    metric.Int64Counter
	ConnectionCount    metric.Int64ObservableUpDownCounter
	ConnectionMax      metric.Int64ObservableUpDownCounter
	ConnectionIdleMin  metric.Int64ObservableUpDownCounter
	ConnectionPending  metric.Int64ObservableUpDownCounter
	ConnectionTimeouts metric.Int64ObservableCounter
	StoreBackend       metric.Int64ObservableGauge
	ReplicaInRotation  metric.Int64ObservableGauge
	ReplicaLag         metric.Float64ObservableGauge
	ReplicaReads       metric.Int64ObservableCounter
}

// NewInstruments creates every instrument on m. An instrument the meter
// refuses is replaced by a no-op one; the errors are returned joined (the
// caller hands them to otel.Handle).
func NewInstruments(m metric.Meter) (*Instruments, error) {
	var errs []error
	counter := func(d Metric) metric.Int64Counter {
		c, err := m.Int64Counter(d.Name, metric.WithUnit(d.Unit), metric.WithDescription(d.Description))
		errs = append(errs, err)
		return c
	}
	histogram := func(d Metric, buckets []float64) metric.Float64Histogram {
		h, err := m.Float64Histogram(d.Name, metric.WithUnit(d.Unit), metric.WithDescription(d.Description),
			metric.WithExplicitBucketBoundaries(buckets...))
		errs = append(errs, err)
		return h
	}
	updown := func(d Metric) metric.Int64ObservableUpDownCounter {
		c, err := m.Int64ObservableUpDownCounter(d.Name, metric.WithUnit(d.Unit), metric.WithDescription(d.Description))
		errs = append(errs, err)
		return c
	}
	i := &Instruments{
		OperationDuration: histogram(OperationDuration, sqlBuckets),
		ConnectionWait:    histogram(ConnectionWaitTime, sqlBuckets),
		ConnectionUse:     histogram(ConnectionUseTime, sqlBuckets),
		ConnectionCreate:  histogram(ConnectionCreateTime, sqlBuckets),
		StoreDuration:     histogram(StoreDuration, storeBuckets),
		Fallbacks:         counter(Fallbacks),
		RecoveryAttempts:  counter(RecoveryAttempts),
		Recoveries:        counter(Recoveries),
		RecordsMoved:      counter(RecordsMoved),
		Conflicts:         counter(Conflicts),
		MoveDuration:      histogram(MoveDuration, storeBuckets),
		SecretFetches:     counter(SecretFetches),
		RotationRetries:   counter(RotationRetries),
		ConnectionsClosed: counter(ConnectionsClosed),
		SlowQueries:       counter(SlowQueries),
		ConnectionLeaks:   counter(ConnectionLeaks),
		ConnectionCount:   updown(ConnectionCount),
		ConnectionMax:     updown(ConnectionMax),
		ConnectionIdleMin: updown(ConnectionIdleMin),
		ConnectionPending: updown(ConnectionPending),
	}
	var err error
	i.ConnectionTimeouts, err = m.Int64ObservableCounter(ConnectionTimeouts.Name,
		metric.WithUnit(ConnectionTimeouts.Unit), metric.WithDescription(ConnectionTimeouts.Description))
	errs = append(errs, err)
	i.StoreOperations, err = m.Int64ObservableCounter(StoreOperations.Name,
		metric.WithUnit(StoreOperations.Unit), metric.WithDescription(StoreOperations.Description))
	errs = append(errs, err)
	i.StoreBackend, err = m.Int64ObservableGauge(StoreBackend.Name,
		metric.WithUnit(StoreBackend.Unit), metric.WithDescription(StoreBackend.Description))
	errs = append(errs, err)
	i.ReplicaInRotation, err = m.Int64ObservableGauge(ReplicaInRotation.Name,
		metric.WithUnit(ReplicaInRotation.Unit), metric.WithDescription(ReplicaInRotation.Description))
	errs = append(errs, err)
	i.ReplicaLag, err = m.Float64ObservableGauge(ReplicaLag.Name,
		metric.WithUnit(ReplicaLag.Unit), metric.WithDescription(ReplicaLag.Description))
	errs = append(errs, err)
	i.ReplicaReads, err = m.Int64ObservableCounter(ReplicaReads.Name,
		metric.WithUnit(ReplicaReads.Unit), metric.WithDescription(ReplicaReads.Description))
	errs = append(errs, err)
	return i, errors.Join(errs...)
}

// Attribute keys of dbmanager's own metrics and spans.
const (
	AttrOperation   = "dbmanager.operation"    // get, put, delete, list, ping
	AttrBackend     = "dbmanager.backend"      // postgresql, in-memory
	AttrOutcome     = "dbmanager.outcome"      // ok, not_found, conflict, or the error type
	AttrCollection  = "dbmanager.collection"   // only with WithCollectionAttribute
	AttrCloseReason = "dbmanager.close.reason" // lifetime, idle, dead_peer, read_only, ...
	AttrAttempt     = "dbmanager.recovery.attempt"
	// AttrReplica is a read replica's host:port (from the configuration:
	// a fixed, small set), or "primary" for the reads the writer served.
	AttrReplica = "dbmanager.replica"
)

// Attribute values shared by metrics and spans.
var (
	SystemPostgreSQL = semconv.DBSystemNamePostgreSQL
	StateIdle        = semconv.DBClientConnectionStateIdle
	StateUsed        = semconv.DBClientConnectionStateUsed
)

// PoolName is the db.client.connection.pool.name attribute.
func PoolName(name string) attribute.KeyValue { return semconv.DBClientConnectionPoolName(name) }
