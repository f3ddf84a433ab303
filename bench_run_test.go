package dbmanager

import (
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// packageBenchmarks is every benchmark of this package, run once by
// TestBenchmarksRun so that none can rot between the runs that produce the
// README's numbers.
var packageBenchmarks = map[string]func(*testing.B){
	"BenchmarkMemRatio":                   BenchmarkMemRatio,
	"BenchmarkMemList":                    BenchmarkMemList,
	"BenchmarkConnConfigTrust":            BenchmarkConnConfigTrust,
	"BenchmarkPGGet":                      BenchmarkPGGet,
	"BenchmarkPGPut":                      BenchmarkPGPut,
	"BenchmarkPGInterleaved":              BenchmarkPGInterleaved,
	"BenchmarkPGListFreshVsAnalyzed":      BenchmarkPGListFreshVsAnalyzed,
	"BenchmarkManagerGet":                 BenchmarkManagerGet,
	"BenchmarkManagerGetRequestContext":   BenchmarkManagerGetRequestContext,
	"BenchmarkManagerPut":                 BenchmarkManagerPut,
	"BenchmarkManagerList":                BenchmarkManagerList,
	"BenchmarkManagerVsPgbench":           BenchmarkManagerVsPgbench,
	"BenchmarkPGExecModes":                BenchmarkPGExecModes,
	"BenchmarkPGExecModesBehindPgBouncer": BenchmarkPGExecModesBehindPgBouncer,
	"BenchmarkTelemetryGet":               BenchmarkTelemetryGet,
	"BenchmarkTelemetrySDKFloor":          BenchmarkTelemetrySDKFloor,
	"BenchmarkReplicaReads":               BenchmarkReplicaReads,
	"BenchmarkReplicaPut":                 BenchmarkReplicaPut,
}

// TestBenchmarksRun runs every benchmark of the package once (as
// -benchtime=1x would, with the fixed-length ones cut to one short round)
// and fails if one fails (or one is missing from packageBenchmarks), so
// that CI exercises them with the ordinary test run. It measures nothing: the numbers come from
// go test -run '^$' -bench ... (see README, Performance).
func TestBenchmarksRun(t *testing.T) {
	pgtest.URL(t) // skip (or fail, with DBMANAGER_REQUIRE_POSTGRES=1) without PostgreSQL
	declared := declaredBenchmarks(t)
	for _, name := range declared {
		if packageBenchmarks[name] == nil {
			t.Errorf("%s is not in packageBenchmarks (bench_run_test.go), so CI does not run it", name)
		}
	}
	bt := flag.Lookup("test.benchtime")
	old := bt.Value.String()
	if err := bt.Value.Set("1x"); err != nil {
		t.Fatal(err)
	}
	benchQuick = true
	defer func() {
		_ = bt.Value.Set(old)
		benchQuick = false
	}()
	for _, name := range declared {
		bench := packageBenchmarks[name]
		if bench == nil {
			continue
		}
		var failed, skipped bool
		testing.Benchmark(func(b *testing.B) {
			defer func() { failed, skipped = b.Failed(), b.Skipped() }()
			bench(b)
		})
		switch {
		case failed:
			t.Errorf("%s failed; see why with: go test -run '^$' -bench '^%s$' -benchtime=1x ./", name, name)
		case skipped:
			// A tool it needs is missing (pgbench, PgBouncer); with
			// DBMANAGER_REQUIRE_POSTGRES=1 pgtest fails instead.
			t.Logf("%s skipped; see why with: go test -run '^$' -bench '^%s$' -benchtime=1x ./", name, name)
		}
	}
}

// declaredBenchmarks lists the Benchmark functions in this package's test
// files.
func declaredBenchmarks(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	fset := token.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Benchmark") {
				names = append(names, fn.Name.Name)
			}
		}
	}
	slices.Sort(names)
	return names
}
