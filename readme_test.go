package dbmanager_test

// TestREADME keeps README.md from going stale: its Go code compiles, its
// commands, variables, defaults, paths, log lines and error messages are
// the ones the code has.
//
// Go blocks are compiled (go vet, so type errors and vet findings both
// fail) in a throwaway module that replaces github.com/gatewaykit/dbmanager
// with this directory; no network is needed. A block is either a whole
// program (it starts with "package") or is preceded by a wrapper:
//
//	<!-- go:wrap
//	func example(ctx context.Context) error {
//	BLOCK
//		return nil
//	}
//	-->
//
// BLOCK is replaced by the block; the imports the result uses (context,
// errors, fmt, log, slog, http, os, testing, time, pgxpool, dbmanager,
// storetest) are added. Every block must also be gofmt-formatted.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager"
	"github.com/jackc/pgx/v5/pgconn"
)

const modulePath = "github.com/gatewaykit/dbmanager"

// readmeBlock is one fenced code block of the README.
type readmeBlock struct {
	line int    // 1-based line of the opening fence
	lang string // after the fence: go, sh, json, ...
	body string
	wrap string // the go:wrap template before it, if any
}

// readmeTable is one Markdown table (outside code blocks).
type readmeTable struct {
	line   int
	header []string
	rows   [][]string
}

// readmeDoc is README.md split into what the checks look at.
type readmeDoc struct {
	lines  []string
	blocks []readmeBlock
	tables []readmeTable
	prose  []string // lines outside code blocks and HTML comments
}

func loadReadme(t *testing.T) readmeDoc {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	d := readmeDoc{lines: strings.Split(string(data), "\n")}
	var comment []string // the last HTML comment, kept until the next block
	inComment := false
	for i := 0; i < len(d.lines); i++ {
		l := d.lines[i]
		switch {
		case inComment:
			if strings.TrimSpace(l) == "-->" || strings.HasSuffix(l, "-->") {
				inComment = false
			} else {
				comment = append(comment, l)
			}
		case strings.HasPrefix(l, "<!--"):
			comment = []string{strings.TrimPrefix(l, "<!--")}
			inComment = !strings.HasSuffix(l, "-->")
		case strings.HasPrefix(l, "```"):
			b := readmeBlock{line: i + 1, lang: strings.TrimSpace(strings.TrimPrefix(l, "```"))}
			var body []string
			for i++; i < len(d.lines) && !strings.HasPrefix(d.lines[i], "```"); i++ {
				body = append(body, d.lines[i])
			}
			b.body = strings.Join(body, "\n") + "\n"
			if len(comment) > 0 && strings.TrimSpace(comment[0]) == "go:wrap" {
				b.wrap = strings.Join(comment[1:], "\n") + "\n"
			}
			comment = nil
			d.blocks = append(d.blocks, b)
		case strings.HasPrefix(l, "|"):
			tb := readmeTable{line: i + 1, header: splitRow(l)}
			for i++; i < len(d.lines) && strings.HasPrefix(d.lines[i], "|"); i++ {
				if !strings.HasPrefix(d.lines[i], "|---") && !strings.HasPrefix(d.lines[i], "| ---") {
					tb.rows = append(tb.rows, splitRow(d.lines[i]))
				}
				d.prose = append(d.prose, d.lines[i])
			}
			i--
			d.tables = append(d.tables, tb)
		default:
			if strings.TrimSpace(l) != "" {
				comment = nil
			}
			d.prose = append(d.prose, l)
		}
	}
	return d
}

func splitRow(l string) []string {
	cells := strings.Split(strings.Trim(strings.TrimSpace(l), "|"), "|")
	for i := range cells {
		cells[i] = strings.TrimSpace(cells[i])
	}
	return cells
}

// column returns the cells of the column whose header is name, or nil.
func (tb readmeTable) column(name string) []string {
	i := slices.Index(tb.header, name)
	if i < 0 {
		return nil
	}
	var out []string
	for _, r := range tb.rows {
		if i < len(r) {
			out = append(out, r[i])
		}
	}
	return out
}

var (
	spanRE   = regexp.MustCompile("`([^`]+)`")
	envVarRE = regexp.MustCompile("^[A-Z][A-Z0-9_]*[A-Z0-9]$")
	levelRE  = regexp.MustCompile("\\b(?:INFO|WARN|ERROR) `([^`]+)`")
	pathRE   = regexp.MustCompile(`^(examples/[a-z]+|internal/[a-z]+|storetest|\.ci/run)$`)
)

func spans(s string) []string {
	var out []string
	for _, m := range spanRE.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

func TestREADME(t *testing.T) {
	d := loadReadme(t)

	t.Run("FirstScreen", func(t *testing.T) {
		if len(d.blocks) == 0 {
			t.Fatal("README has no code block")
		}
		b := d.blocks[0]
		if b.lang != "sh" || b.line > 30 {
			t.Errorf("the first code block (line %d, %q) must be the sh block of the first screen (within 30 lines)", b.line, b.lang)
		}
		want := "go run ./examples/gateway\ngo test -race ./...\n"
		if b.body != want {
			t.Errorf("first-screen commands are\n%s\nwant exactly\n%s", b.body, want)
		}
		if _, err := os.Stat("examples"); err == nil {
			if _, err := os.Stat("examples/gateway/main.go"); err != nil {
				t.Errorf("the README runs ./examples/gateway: %v", err)
			}
		} else {
			t.Log("examples/ is not in this tree yet: not checking that ./examples/gateway exists")
		}
	})

	t.Run("Install", func(t *testing.T) {
		gomod, err := os.ReadFile("go.mod")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(gomod), "module "+modulePath+"\n") {
			t.Fatalf("go.mod is not module %s", modulePath)
		}
		var found bool
		for _, b := range d.blocks {
			found = found || b.body == "go get "+modulePath+"\n"
		}
		if !found {
			t.Errorf("no sh block with exactly: go get %s", modulePath)
		}
	})

	t.Run("EnvVars", func(t *testing.T) {
		loadConfigVars := varsReadByLoadConfig(t)
		documented := map[string]bool{}
		elsewhere := map[string]string{} // variable -> "Read by" cell
		for _, tb := range d.tables {
			readBy := tb.column("Read by")
			for i, cell := range tb.column("Variable") {
				for _, v := range spans(cell) {
					if !envVarRE.MatchString(v) {
						continue
					}
					if readBy != nil {
						elsewhere[v] = readBy[i]
						continue
					}
					documented[v] = true
					if !loadConfigVars[v] {
						t.Errorf("README (table at line %d) documents %s as a LoadConfig variable, but LoadConfig does not read it (list it under \"Variables read elsewhere\")", tb.line, v)
					}
				}
			}
		}
		for v := range loadConfigVars {
			if !documented[v] {
				t.Errorf("LoadConfig reads %s, but no README table documents it", v)
			}
		}
		for v, readBy := range elsewhere {
			if loadConfigVars[v] {
				t.Errorf("README lists %s as read by %s, but LoadConfig reads it", v, readBy)
			}
			dir := strings.Trim(readBy, "`")
			if !strings.Contains(readBy, "`") {
				continue // e.g. "AWS SDK": not in this repository
			}
			if _, err := os.Stat(dir); err != nil {
				if strings.HasPrefix(dir, "examples/") {
					t.Logf("%s is not in this tree yet: not checking %s", dir, v)
					continue
				}
				t.Errorf("README says %s is read by %s, which does not exist", v, dir)
				continue
			}
			if !dirMentions(t, dir, `"`+v+`"`) {
				t.Errorf("README says %s is read by %s, but no Go file there names it", v, dir)
			}
		}
	})

	t.Run("Defaults", func(t *testing.T) {
		base, err := dbmanager.LoadConfig(func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		for _, tb := range d.tables {
			defaults := tb.column("Default")
			if defaults == nil {
				continue
			}
			for i, cell := range tb.column("Variable") {
				vars, defs := spans(cell), spans(defaults[i])
				if len(vars) != 1 || len(defs) != 1 {
					continue // no literal default ("–", "SDK default", "user name")
				}
				v, def := vars[0], defs[0]
				cfg, err := dbmanager.LoadConfig(func(name string) string {
					if name == v {
						return def
					}
					return ""
				})
				if err != nil {
					t.Errorf("README says %s defaults to %s, but LoadConfig rejects that value: %v", v, def, err)
					continue
				}
				cfg = dbmanager.WithExplicitOfForTest(cfg, base)
				if !reflect.DeepEqual(cfg, base) {
					t.Errorf("README says %s defaults to %s, but setting it to that changes the configuration:\n got %+v\nwant %+v", v, def, cfg, base)
				}
			}
		}
	})

	t.Run("LogMessages", func(t *testing.T) {
		lits := sourceLiterals(t)
		var msgs []string
		for _, tb := range d.tables {
			for _, col := range []string{"Message", "Logged"} {
				for _, cell := range tb.column(col) {
					msgs = append(msgs, spans(cell)...)
				}
			}
		}
		for _, l := range d.prose {
			for _, m := range levelRE.FindAllStringSubmatch(l, -1) {
				msgs = append(msgs, m[1])
			}
		}
		if len(msgs) < 10 {
			t.Fatalf("found only %d log messages in the README; the check is not seeing them", len(msgs))
		}
		slices.Sort(msgs)
		for _, m := range slices.Compact(msgs) {
			fixed := m
			if i := strings.IndexAny(fixed, "<…"); i >= 0 {
				fixed = fixed[:i]
			}
			fixed = strings.TrimSpace(fixed)
			if !slices.ContainsFunc(lits, func(s string) bool { return strings.Contains(s, fixed) }) {
				t.Errorf("README names the log message or attribute %q, but no string in the package's code contains %q", m, fixed)
			}
		}
	})

	t.Run("ErrorMessages", func(t *testing.T) {
		real := sampleErrors(t)
		var checked int
		for _, l := range d.prose {
			for _, s := range spans(l) {
				if !strings.HasPrefix(s, "dbmanager: ") {
					continue
				}
				checked++
				re := messagePattern(s)
				if !slices.ContainsFunc(real, re.MatchString) {
					t.Errorf("README quotes the error %q, which matches none of the errors the code gives:\n%s", s, strings.Join(real, "\n"))
				}
			}
		}
		if checked == 0 {
			t.Error("no error message quoted in the README was checked")
		}
	})

	t.Run("Paths", func(t *testing.T) {
		_, errExamples := os.Stat("examples")
		for _, l := range d.prose {
			for _, s := range spans(l) {
				if !pathRE.MatchString(s) {
					continue
				}
				if _, err := os.Stat(s); err != nil {
					if strings.HasPrefix(s, "examples/") && errExamples != nil {
						continue // examples/ not in this tree yet
					}
					t.Errorf("README names %s, which does not exist", s)
				}
			}
		}
	})

	t.Run("GoBlocks", func(t *testing.T) {
		if testing.Short() {
			t.Skip("-short: not compiling the README's Go blocks (needs go vet, a few seconds)")
		}
		compileGoBlocks(t, d.blocks)
	})
}

// varsReadByLoadConfig returns the environment variables named in
// LoadConfig's body in config.go.
func varsReadByLoadConfig(t *testing.T) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "config.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "LoadConfig" || fn.Recv != nil {
			continue
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && envVarRE.MatchString(s) {
					vars[s] = true
				}
			}
			return true
		})
	}
	if len(vars) < 20 {
		t.Fatalf("found only %d variables in LoadConfig: %v", len(vars), vars)
	}
	return vars
}

// sourceLiterals returns every string literal in the non-test Go files of
// the package and of the internal packages it imports (where its machinery
// lives; the test-only ones, such as pgtest, do not count).
func sourceLiterals(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range libraryInternalDirs(t) {
		internal, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, internal...)
	}
	var lits []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					lits = append(lits, s)
				}
			}
			return true
		})
	}
	return lits
}

// libraryInternalDirs lists the internal/ directories whose packages the
// root package's non-test files import.
func libraryInternalDirs(t *testing.T) []string {
	t.Helper()
	const prefix = "github.com/gatewaykit/dbmanager/"
	seen := map[string]bool{}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if dir, ok := strings.CutPrefix(p, prefix); ok && strings.HasPrefix(dir, "internal/") && !seen[dir] {
				seen[dir] = true
				dirs = append(dirs, dir)
			}
		}
	}
	return dirs
}

// dirMentions reports whether a Go file under dir contains s.
func dirMentions(t *testing.T, dir, s string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(path, ".go") || found {
			return err
		}
		data, err := os.ReadFile(path)
		found = found || strings.Contains(string(data), s)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// sampleErrors produces the errors the README's troubleshooting quotes.
func sampleErrors(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	poolErr := func(env map[string]string) string {
		cfg, err := dbmanager.LoadConfig(func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		pool, err := dbmanager.NewPool(ctx, cfg)
		if err == nil {
			pool.Close()
			t.Fatalf("NewPool with %v: no error", env)
		}
		return err.Error()
	}
	return []string{
		poolErr(map[string]string{
			"DATABASE_URL":    "postgres://app@db.example.com:5432/gateway_db",
			"AWS_SSLROOTCERT": filepath.Join(t.TempDir(), "rds-global-bundle.pem"),
		}),
		poolErr(map[string]string{
			"DATABASE_URL":    "postgres://app@db.example.com:5432/gateway_db?sslmode=require",
			"AWS_REQUIRE_SSL": "true",
		}),
		(&dbmanager.PoolExhaustedError{Wait: dbmanager.DefaultPoolTimeout, Stats: dbmanager.PoolStats{Max: 15, Acquired: 15}}).Error(),
		dbmanager.ClassifyConnectErrorForTest(context.DeadlineExceeded, "db.example.com:5432").Error(),
		dbmanager.ClassifyConnectErrorForTest(errors.Join(errors.New("dial"), fmt.Errorf("%w", os.ErrDeadlineExceeded)), "db.example.com:5432").Error(),
		dbmanager.ClassifyConnectErrorForTest(fmt.Errorf("ValidateConnect failed: %w", pgconn.ErrReadOnlyConnection), "db.example.com:5432").Error(),
	}
}

// messagePattern turns a quoted message into a regexp: "<...>" stands for
// any text without spaces, "..." for any text.
func messagePattern(s string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for len(s) > 0 {
		switch {
		case strings.HasPrefix(s, "..."):
			b.WriteString(".*")
			s = s[3:]
		case s[0] == '<' && strings.IndexByte(s, '>') > 0:
			b.WriteString(`\S+?`)
			s = s[strings.IndexByte(s, '>')+1:]
		default:
			b.WriteString(regexp.QuoteMeta(s[:1]))
			s = s[1:]
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// blockImports are the imports a wrapped block may use, by the name it
// uses them with.
var blockImports = map[string]string{
	"context":   "context",
	"errors":    "errors",
	"fmt":       "fmt",
	"log":       "log",
	"slog":      "log/slog",
	"http":      "net/http",
	"os":        "os",
	"testing":   "testing",
	"time":      "time",
	"pgxpool":   "github.com/jackc/pgx/v5/pgxpool",
	"dbmanager": modulePath,
	"storetest": modulePath + "/storetest",
}

// goSource returns the Go file for block b, or an error saying why it
// cannot be compiled.
func goSource(b readmeBlock) (string, error) {
	if strings.HasPrefix(b.body, "package ") {
		return b.body, nil
	}
	if b.wrap == "" {
		return "", errors.New("a Go fragment needs a <!-- go:wrap ... BLOCK ... --> comment before it (or start with package)")
	}
	if !strings.Contains(b.wrap, "BLOCK\n") {
		return "", errors.New("its go:wrap template has no BLOCK line")
	}
	code := strings.Replace(b.wrap, "BLOCK\n", b.body, 1)
	var src strings.Builder
	fmt.Fprintf(&src, "package readme\n\n// README.md line %d\n\nimport (\n", b.line)
	names := make([]string, 0, len(blockImports))
	for name := range blockImports {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if regexp.MustCompile(`\b` + name + `\.`).MatchString(code) {
			fmt.Fprintf(&src, "\t%q\n", blockImports[name])
		}
	}
	src.WriteString(")\n\n")
	src.WriteString(code)
	return src.String(), nil
}

// compileGoBlocks writes every Go block into a throwaway module and runs
// go vet on all of them at once.
func compileGoBlocks(t *testing.T, blocks []readmeBlock) {
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go \S+$`).Find(gomod)
	// The module's own requirements, copied, keep the throwaway module's
	// graph pruned like the module's: without them the go command wants
	// go.mod files of old, unpruned dependencies (pgpassfile's testify
	// v1.3.0) that a fresh module cache does not hold, and GOPROXY=off
	// cannot fetch.
	requires := regexp.MustCompile(`(?ms)^require \(.*?^\)$`).FindAll(gomod, -1)
	dir := t.TempDir()
	mod := fmt.Sprintf("module readmecheck\n\n%s\n\nrequire %s v0.0.0\n\n%s\n\nreplace %s => %s\n", goLine, modulePath, bytes.Join(requires, []byte("\n\n")), modulePath, root)
	write := func(name, content string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", mod)
	sum, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	write("go.sum", string(sum))

	n := 0
	for _, b := range blocks {
		if b.lang != "go" {
			continue
		}
		n++
		if formatted, err := format.Source([]byte(b.body)); err != nil {
			t.Errorf("README.md:%d: Go block does not parse: %v", b.line, err)
			continue
		} else if string(formatted) != b.body {
			t.Errorf("README.md:%d: Go block is not gofmt-formatted; gofmt gives:\n%s", b.line, formatted)
		}
		src, err := goSource(b)
		if err != nil {
			t.Errorf("README.md:%d: %v", b.line, err)
			continue
		}
		write(fmt.Sprintf("line%d/line%d.go", b.line, b.line), src)
	}
	if n == 0 {
		t.Fatal("README has no Go block")
	}

	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Skipf("no go command to compile the README's blocks: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "vet", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off", "GOTOOLCHAIN=local")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("the README's Go blocks do not compile (lineN/ is the block at README.md line N):\n%s\n%v", out, err)
	}
	t.Logf("compiled %d Go blocks", n)
}
