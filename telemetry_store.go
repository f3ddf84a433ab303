package dbmanager

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/gatewaykit/dbmanager/internal/telemetry"
)

// The Store's operations, as the dbmanager.operation attribute names them.
type storeOp int

const (
	opGet storeOp = iota
	opPut
	opDelete
	opList
	opPing
	numOps
)

var (
	opNames     = [numOps]string{"get", "put", "delete", "list", "ping"}
	opSpanNames = [numOps]string{"dbmanager.Get", "dbmanager.Put", "dbmanager.Delete", "dbmanager.List", "dbmanager.Ping"}
)

// The outcomes that are not failures: they carry no error.type and leave
// the span's status unset (a missing key or a failed condition is an
// answer, not an error).
const (
	outcomeOK       = "ok"
	outcomeNotFound = "not_found"
	outcomeConflict = "conflict"
)

// libraryCall marks a context as the library's own work: a Store call (op
// and collection set), or Init, recovery and moves (nil call). The pool's
// tracer reads it to leave out the library's short acquires from leak
// detection, to name the Store operation in slow-query logs, and to never
// record the arguments of the Store's statements (keys and values).
type libraryCall struct {
	op         string
	collection string
	// recording: the Store call's span records (set by begin before any
	// statement runs), so a statement knows whether to start a child
	// without looking its parent up in the context.
	recording bool
}

type libraryCallKey struct{}

func withLibraryCall(ctx context.Context, c *libraryCall) context.Context {
	if c == nil {
		c = &libraryCall{}
	}
	return context.WithValue(ctx, libraryCallKey{}, c)
}

// libraryCallOf returns the mark of ctx, or nil for the caller's own work.
func libraryCallOf(ctx context.Context) *libraryCall {
	c, _ := ctx.Value(libraryCallKey{}).(*libraryCall)
	return c
}

// storeSets caches the attribute sets of Store metrics and counts the
// calls for dbmanager.store.operations: the common outcomes are built up
// front, failures (and, when opted in, each collection) on first use.
// The count is kept here and read by the Manager's callback, so a call
// costs an atomic add instead of a counter's attribute lookup in the SDK.
type storeSets struct {
	common [2][numOps][3]storeSeries // backend (0 postgresql, 1 memory), op, ok/not_found/conflict
	other  sync.Map                  // storeSetKey -> *storeSeries
}

// storeSeries is one attribute set of the Store metrics, with its count of
// calls.
type storeSeries struct {
	set   attribute.Set
	opts  measureOpts
	calls atomic.Int64
}

type storeSetKey struct {
	backend    int
	op         storeOp
	outcome    string
	errType    string
	collection string
}

var backendNames = [2]string{BackendPostgreSQL, BackendMemory}

func newStoreSets() *storeSets {
	s := &storeSets{}
	for b := range 2 {
		for op := range numOps {
			for i, outcome := range []string{outcomeOK, outcomeNotFound, outcomeConflict} {
				s.common[b][op][i].init(storeAttrs(b, op, outcome, "", ""))
			}
		}
	}
	return s
}

func (ss *storeSeries) init(attrs []attribute.KeyValue) {
	ss.set = attribute.NewSet(attrs...)
	ss.opts = optsFor(ss.set)
}

func storeAttrs(backend int, op storeOp, outcome, errType, collection string) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		attribute.String(telemetry.AttrOperation, opNames[op]),
		attribute.String(telemetry.AttrBackend, backendNames[backend]),
		attribute.String(telemetry.AttrOutcome, outcome),
	}
	if errType != "" {
		attrs = append(attrs, attribute.String("error.type", errType))
	}
	if collection != "" {
		attrs = append(attrs, attribute.String(telemetry.AttrCollection, collection))
	}
	return attrs
}

// series returns the series of a call's attributes. collection is empty
// unless the collection attribute is opted in.
func (s *storeSets) series(backend int, op storeOp, outcome, errType, collection string) *storeSeries {
	if collection == "" {
		switch outcome {
		case outcomeOK:
			return &s.common[backend][op][0]
		case outcomeNotFound:
			return &s.common[backend][op][1]
		case outcomeConflict:
			return &s.common[backend][op][2]
		}
	}
	k := storeSetKey{backend, op, outcome, errType, collection}
	if v, ok := s.other.Load(k); ok {
		return v.(*storeSeries)
	}
	ss := &storeSeries{}
	ss.init(storeAttrs(backend, op, outcome, errType, collection))
	v, _ := s.other.LoadOrStore(k, ss)
	return v.(*storeSeries)
}

// observeCalls reports every series that has counted a call.
func (s *storeSets) observeCalls(o metric.Observer, inst metric.Int64Observable) {
	for b := range s.common {
		for op := range s.common[b] {
			for i := range s.common[b][op] {
				ss := &s.common[b][op][i]
				if n := ss.calls.Load(); n > 0 {
					o.ObserveInt64(inst, n, metric.WithAttributeSet(ss.set))
				}
			}
		}
	}
	s.other.Range(func(_, v any) bool {
		ss := v.(*storeSeries)
		if n := ss.calls.Load(); n > 0 {
			o.ObserveInt64(inst, n, metric.WithAttributeSet(ss.set))
		}
		return true
	})
}

// storeOutcome classifies a Store call's result: the outcome attribute,
// and the error.type (empty unless the call failed).
func storeOutcome(err error) (outcome, errType string) {
	switch {
	case err == nil:
		return outcomeOK, ""
	case errors.Is(err, ErrNotFound):
		return outcomeNotFound, ""
	case errors.Is(err, ErrConflict):
		return outcomeConflict, ""
	}
	t := errorType(err)
	return t, t
}

// instrumentedStore records a span and the dbmanager.store.* metrics for
// every call of the backend it wraps. The router wraps each backend it
// switches to (instrumentStore), so every Store call is seen once.
type instrumentedStore struct {
	s         Store
	t         *instrumentation
	backend   int // index in backendNames
	startOpts []trace.SpanStartOption
	spanAttrs [numOps][]attribute.KeyValue // operation, backend (and db.system.name)
}

// instrumentStore wraps s, the backend the router is switching to. The
// refusing stores (before Init, after Close) stay bare: nothing is
// recorded for them.
func (t *instrumentation) instrumentStore(s Store, primary bool) Store {
	if _, refusing := s.(refusingStore); refusing || t == nil {
		return s
	}
	is := &instrumentedStore{s: s, t: t, backend: 1}
	kind := trace.SpanKindInternal
	if primary {
		is.backend, kind = 0, trace.SpanKindClient
	}
	// Built once: a call passes them as they are, allocating nothing for
	// its options, and a span that is not sampled costs no attributes.
	is.startOpts = []trace.SpanStartOption{trace.WithSpanKind(kind)}
	for op := range numOps {
		attrs := []attribute.KeyValue{
			attribute.String(telemetry.AttrOperation, opNames[op]),
			attribute.String(telemetry.AttrBackend, backendNames[is.backend]),
		}
		if primary {
			attrs = append(attrs, telemetry.SystemPostgreSQL)
		}
		is.spanAttrs[op] = attrs
	}
	return is
}

// marksCalls reports whether a call's context needs the library-call mark
// when it starts no span: only the pool's tracer reads it (to leave the
// Store's connections to leak detection, name the call in a slow-statement
// log, and pick a measurement's context), so only on PostgreSQL, and only
// while the tracer does that work (see metering).
func (is *instrumentedStore) marksCalls() bool {
	return is.poolSettingsNeedMark() || (is.backend == 0 && is.t.metering())
}

// poolSettingsNeedMark reports whether DB_LEAK_DETECTION_MS or
// DB_SLOW_QUERY_MS makes the pool's tracer read the mark on PostgreSQL
// even without an SDK.
func (is *instrumentedStore) poolSettingsNeedMark() bool {
	return is.backend == 0 && (is.t.leak > 0 || is.t.slow > 0)
}

// unobserved reports whether nothing could see a call: no tracer that may
// record its span, no meter that reaches an SDK (see metering), and no
// pool tracer that needs the call's mark. Such a call goes straight to
// the store: no clock reads, no count, no span (on memory this is most of
// the wrapper's cost). Its counts in dbmanager.store.operations start
// when an SDK is installed, as every measurement does.
func (is *instrumentedStore) unobserved() bool {
	return !is.t.tracing() && !is.t.metering() && !is.poolSettingsNeedMark()
}

// storeCallState is one Store call in progress.
type storeCallState struct {
	start time.Time
	span  trace.Span
	op    storeOp
	coll  string
}

func (is *instrumentedStore) begin(ctx context.Context, op storeOp, collection string) (context.Context, storeCallState) {
	tracing := is.t.tracing()
	if !tracing && !is.marksCalls() {
		return ctx, storeCallState{start: time.Now(), op: op, coll: collection}
	}
	lc := &libraryCall{op: opNames[op], collection: collection}
	ctx = withLibraryCall(ctx, lc)
	if !tracing {
		return ctx, storeCallState{start: time.Now(), op: op, coll: collection}
	}
	ctx, span := is.t.tracer.Start(ctx, opSpanNames[op], is.startOpts...)
	if span.IsRecording() {
		lc.recording = true
		span.SetAttributes(is.spanAttrs[op]...)
		if is.t.collections && collection != "" {
			span.SetAttributes(attribute.String(telemetry.AttrCollection, collection))
		}
	}
	return ctx, storeCallState{start: time.Now(), span: span, op: op, coll: collection}
}

// end records the call's metrics and ends its span. key is scrubbed from
// the span's status message (the collection too unless opted in).
func (is *instrumentedStore) end(ctx context.Context, c storeCallState, key string, err error) {
	d := time.Since(c.start).Seconds()
	outcome, errType := storeOutcome(err)
	coll := ""
	if is.t.collections {
		coll = c.coll
	}
	ss := is.t.store.series(is.backend, c.op, outcome, errType, coll)
	ss.calls.Add(1)
	is.t.inst.StoreDuration.Record(measureContext(ctx, c.span != nil && c.span.IsRecording()), d, ss.opts.rec...)
	if c.span == nil {
		return
	}
	if c.span.IsRecording() {
		c.span.SetAttributes(attribute.String(telemetry.AttrOutcome, outcome))
		if errType != "" {
			c.span.SetAttributes(attribute.String("error.type", errType))
			scrub := []string{key}
			if !is.t.collections {
				scrub = append(scrub, c.coll)
			}
			c.span.SetStatus(codes.Error, storeErrorText(err, scrub))
		}
	}
	c.span.End()
}

// storeErrorText is the redacted one-line text of a Store error without
// the names the OpError adds, and with each of names (a key, a
// collection) masked wherever the cause mentions it.
func storeErrorText(err error, names []string) string {
	var oe *OpError
	if errors.As(err, &oe) {
		err = errors.Join(errors.New(oe.Op), oe.Err)
	}
	text := errorText(err)
	for _, n := range names {
		if n == "" {
			continue
		}
		text = strings.ReplaceAll(text, quote(n), `"?"`)
		if len(n) >= 4 {
			text = strings.ReplaceAll(text, n, "?")
		}
	}
	return text
}

func (is *instrumentedStore) Get(ctx context.Context, collection, key string) (Record, error) {
	if is.unobserved() {
		return is.s.Get(ctx, collection, key)
	}
	ctx, c := is.begin(ctx, opGet, collection)
	r, err := is.s.Get(ctx, collection, key)
	is.end(ctx, c, key, err)
	return r, err
}

func (is *instrumentedStore) Put(ctx context.Context, collection, key string, value []byte, opts ...WriteOption) (Record, error) {
	if is.unobserved() {
		return is.s.Put(ctx, collection, key, value, opts...)
	}
	ctx, c := is.begin(ctx, opPut, collection)
	r, err := is.s.Put(ctx, collection, key, value, opts...)
	is.end(ctx, c, key, err)
	return r, err
}

func (is *instrumentedStore) Delete(ctx context.Context, collection, key string, opts ...WriteOption) error {
	if is.unobserved() {
		return is.s.Delete(ctx, collection, key, opts...)
	}
	ctx, c := is.begin(ctx, opDelete, collection)
	err := is.s.Delete(ctx, collection, key, opts...)
	is.end(ctx, c, key, err)
	return err
}

func (is *instrumentedStore) List(ctx context.Context, collection string, opts ListOptions) (Page, error) {
	if is.unobserved() {
		return is.s.List(ctx, collection, opts)
	}
	ctx, c := is.begin(ctx, opList, collection)
	p, err := is.s.List(ctx, collection, opts)
	is.end(ctx, c, opts.After, err)
	return p, err
}

func (is *instrumentedStore) Ping(ctx context.Context) error {
	if is.unobserved() {
		return is.s.Ping(ctx)
	}
	ctx, c := is.begin(ctx, opPing, "")
	err := is.s.Ping(ctx)
	is.end(ctx, c, "", err)
	return err
}

func (is *instrumentedStore) Backend() string { return is.s.Backend() }
