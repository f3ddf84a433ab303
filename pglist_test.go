package dbmanager

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// bulkRows is the size of the collection the List plan tests and
// benchmarks fill at once, as a move back from memory does.
const bulkRows = 200_000

// bulkKey is the i-th key of a bulk-filled collection: api-000000 ...
func bulkKey(i int) string { return fmt.Sprintf("api-%06d", i) }

// bulkFill writes n records (keys bulkKey(0) ..., values of about pad+20
// bytes) into collection in one statement, in random physical order (a
// move writes them in map order), and leaves the table without
// statistics: pgtest runs with autovacuum off and nothing here analyses
// it.
func bulkFill(t testing.TB, pool *pgxpool.Pool, schema, collection string, n, pad int) {
	t.Helper()
	table := pgx.Identifier{schema, "records"}.Sanitize()
	_, err := pool.Exec(context.Background(), `INSERT INTO `+table+` (collection, key, value, version, created_at, updated_at)
		SELECT $1, 'api-' || lpad(i::text, 6, '0'), convert_to('{"n":' || i || ',"pad":"' || repeat('x', $3) || '"}', 'UTF8'), 1, now(), now()
		FROM generate_series(0, $2 - 1) AS i ORDER BY random()`, collection, n, pad)
	if err != nil {
		t.Fatal(err)
	}
}

// reltuples is the planner's row count for the store's table: -1 while it
// has never been analysed (or vacuumed).
func reltuples(t testing.TB, pool *pgxpool.Pool, schema string) float64 {
	t.Helper()
	var n float64
	err := pool.QueryRow(context.Background(), `SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = 'records'`, schema).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// planNode is the part of EXPLAIN (FORMAT JSON) the tests read.
type planNode struct {
	NodeType  string     `json:"Node Type"`
	IndexName string     `json:"Index Name"`
	Plans     []planNode `json:"Plans"`
	// With ANALYZE and BUFFERS: the pages the node and those below it read.
	SharedHit  int `json:"Shared Hit Blocks"`
	SharedRead int `json:"Shared Read Blocks"`
}

func (n planNode) walk(visit func(planNode)) {
	visit(n)
	for _, c := range n.Plans {
		c.walk(visit)
	}
}

// explainPrepared prepares sql on conn as the server infers its parameter
// types (as pgx prepares it), and returns the plan of executing it with
// args under plan_cache_mode mode (force_custom_plan or
// force_generic_plan), having run it (EXPLAIN ANALYZE) to count the pages
// it reads.
func explainPrepared(t *testing.T, conn *pgxpool.Conn, sql string, args []any, mode string) planNode {
	t.Helper()
	ctx := context.Background()
	exec := func(q string) {
		t.Helper()
		if _, err := conn.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`DEALLOCATE ALL`)
	exec(`SET plan_cache_mode = ` + mode)
	exec(`PREPARE list_page AS ` + sql)
	lits := make([]string, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			lits[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
		case int:
			lits[i] = strconv.Itoa(v)
		default:
			t.Fatalf("argument %d: %T", i, a)
		}
	}
	var out string
	err := conn.QueryRow(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE list_page(`+strings.Join(lits, ", ")+`)`,
		pgx.QueryExecModeSimpleProtocol).Scan(&out)
	if err != nil {
		t.Fatal(err)
	}
	var plans []struct{ Plan planNode }
	if err := json.Unmarshal([]byte(out), &plans); err != nil || len(plans) != 1 {
		t.Fatalf("EXPLAIN output %q: %v", out, err)
	}
	exec(`RESET plan_cache_mode`)
	return plans[0].Plan
}

// listPageShapes are the List calls whose statements the plan tests check:
// every statement pgsql.ListQuery can choose, from the start, the middle and the
// end of a bulk-filled collection.
func listPageShapes() []ListOptions {
	shapes := []ListOptions{
		{},                             // first page
		{After: bulkKey(bulkRows / 2)}, // from the middle
		{After: bulkKey(bulkRows - 50)},
		{Prefix: "api-1"},    // half the collection
		{Prefix: "api-0123"}, // 100 keys
		{Prefix: "api-1", After: bulkKey(150_000)},
		{Prefix: "api-", After: "api-"},
		{Prefix: "\U0010FFFF"}, // no upper bound
	}
	for _, o := range shapes[:len(shapes):len(shapes)] {
		o.Limit = MaxListLimit
		shapes = append(shapes, o)
	}
	return shapes
}

// assertOrderedIndexScan fails unless plan reads the primary key index in
// order, an index scan on records_pkey and no sort, bitmap or sequential
// scan anywhere, and stops in time: a page of limit rows reads at most one
// heap page per row plus the index pages on the way, not the rest of the
// collection.
func assertOrderedIndexScan(t *testing.T, what string, plan planNode, limit int) {
	t.Helper()
	if pages := plan.SharedHit + plan.SharedRead; pages > 2*limit+32 {
		out, _ := json.Marshal(plan)
		t.Errorf("%s: read %d pages for a page of at most %d rows; plan %s", what, pages, limit, out)
	}
	var index bool
	var bad []string
	plan.walk(func(n planNode) {
		switch n.NodeType {
		case "Index Scan", "Index Only Scan":
			index = index || n.IndexName == "records_pkey"
		case "Sort", "Incremental Sort", "Bitmap Heap Scan", "Bitmap Index Scan", "Seq Scan":
			bad = append(bad, n.NodeType)
		}
	})
	if !index || len(bad) > 0 {
		out, _ := json.Marshal(plan)
		t.Errorf("%s: want an ordered index scan of records_pkey and no %v; plan %s", what, bad, out)
	}
}

// TestPGListPlansAreOrderedIndexScans checks that every List statement is
// planned as an ordered scan of the primary key that reads O(limit) pages
// (so O(log n + limit) time), on a freshly filled table that has never
// been analysed (the moment right after a move back from memory) and after
// ANALYZE, both as the custom plan of the first executions and as the
// generic plan PostgreSQL may switch to after five, and as if the table
// were much larger than the cache.
func TestPGListPlansAreOrderedIndexScans(t *testing.T) {
	ctx := context.Background()
	pool := newTestPool(t)
	s, err := newPGStore(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	bulkFill(t, pool, s.Schema(), "apis", bulkRows, 0)
	if n := reltuples(t, pool, s.Schema()); n >= 0 {
		t.Fatalf("the table has statistics (reltuples %v) before any ANALYZE", n)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	check := func(stats string) {
		for _, o := range listPageShapes() {
			o, _ := resolveListOptions(o)
			sql, args := s.pg.sql.ListQuery(s.pg.execMode(), "apis", o.Prefix, o.After, o.Limit+1)
			args = args[1:] // the exec mode
			for _, cache := range []string{"4GB", "8MB"} {
				// 8MB: as if the table were much larger than the cache,
				// where reading it whole looks cheap next to random reads.
				if _, err := conn.Exec(ctx, `SET effective_cache_size = '`+cache+`'`, pgx.QueryExecModeSimpleProtocol); err != nil {
					t.Fatal(err)
				}
				for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
					what := fmt.Sprintf("%s, cache %s, %s, List(%+v)", stats, cache, mode, o)
					assertOrderedIndexScan(t, what, explainPrepared(t, conn, sql, args, mode), o.Limit+1)
				}
			}
			if _, err := conn.Exec(ctx, `RESET effective_cache_size`, pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatal(err)
			}
			// And what the store really returns for that page.
			p, err := s.List(ctx, "apis", o)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range p.Records {
				if !strings.HasPrefix(r.Key, o.Prefix) || r.Key <= o.After || (i > 0 && r.Key <= p.Records[i-1].Key) {
					t.Fatalf("%s: List(%+v) returned %q at %d", stats, o, r.Key, i)
				}
			}
		}
	}
	check("never analysed")
	if _, err := pool.Exec(ctx, `ANALYZE `+pgx.Identifier{s.Schema(), "records"}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if n := reltuples(t, pool, s.Schema()); n < bulkRows/2 {
		t.Fatalf("reltuples %v after ANALYZE", n)
	}
	check("analysed")
	// Small collections on either side of the large one.
	for _, c := range []string{"a", "zz"} {
		bulkFill(t, pool, s.Schema(), c, 20, 0)
	}
	if _, err := pool.Exec(ctx, `ANALYZE `+pgx.Identifier{s.Schema(), "records"}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	check("analysed, small collections around")
}
