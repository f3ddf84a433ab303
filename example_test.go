package dbmanager_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager"
)

// env is a fake environment for LoadConfig: a map instead of os.Getenv.
type env map[string]string

func (e env) get(name string) string { return e[name] }

// quiet is a logger that drops everything, so that example output is only
// what the example prints.
var quiet = slog.New(slog.DiscardHandler)

// A service's start-up: configuration, Manager, Init, Store, Close. Here the
// environment asks for memory on purpose (DATABASE_URL=memory://, as in
// tests); with a PostgreSQL DATABASE_URL the same code stores there.
func ExampleNew() {
	ctx := context.Background()
	cfg, err := dbmanager.LoadConfig(env{"DATABASE_URL": "memory://"}.get) // a service: dbmanager.ConfigFromEnv()
	if err != nil {
		fmt.Println(err)
		return
	}
	m := dbmanager.New(cfg, dbmanager.WithLogger(quiet))
	if err := m.Init(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close(ctx)

	store := m.Store() // keep it: it follows fallback and recovery
	rec, err := store.Put(ctx, "greetings", "hello", []byte(`{"text":"Hello, world"}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rec.Key, rec.Version, store.Backend(), m.Health(ctx).Status)
	// Output: hello 1 in-memory healthy
}

// The memory store keeps the Store contract: versions, conditional writes,
// sentinel errors.
func ExampleNewMemStore() {
	ctx := context.Background()
	store := dbmanager.NewMemStore()
	defer store.Close()

	first, _ := store.Put(ctx, "users", "ada", []byte(`{"name":"Ada"}`))
	second, _ := store.Put(ctx, "users", "ada", []byte(`{"name":"Ada Lovelace"}`), dbmanager.IfVersion(first.Version))
	fmt.Println("version", second.Version)

	_, err := store.Put(ctx, "users", "ada", []byte(`{"name":"stale"}`), dbmanager.IfVersion(first.Version))
	fmt.Println("stale write is a conflict:", errors.Is(err, dbmanager.ErrConflict))

	_, err = store.Get(ctx, "users", "grace")
	fmt.Println("missing key:", errors.Is(err, dbmanager.ErrNotFound))
	fmt.Println(err)

	_, err = store.Put(ctx, "users", "bad", []byte(`{not json}`))
	fmt.Println("not JSON:", errors.Is(err, dbmanager.ErrInvalid))

	rec, _ := store.Get(ctx, "users", "ada")
	fmt.Printf("%s\n", rec.Value)
	// Output:
	// version 2
	// stale write is a conflict: true
	// missing key: true
	// dbmanager: get "grace" in "users": not found
	// not JSON: true
	// {"name":"Ada Lovelace"}
}

// Route is the document type of the Collection example.
type Route struct {
	Path string `json:"path"`
	Hits int    `json:"hits"`
}

// A Collection stores Go values as JSON documents on any Store. Update is
// a read-modify-write that retries when another writer got in between.
func ExampleCollection() {
	ctx := context.Background()
	routes := dbmanager.NewCollection[Route](dbmanager.NewMemStore(), "routes")

	if _, err := routes.Create(ctx, "orders", Route{Path: "/orders"}); err != nil {
		fmt.Println(err)
		return
	}
	_, err := routes.Create(ctx, "orders", Route{Path: "/again"})
	fmt.Println("create twice is a conflict:", errors.Is(err, dbmanager.ErrConflict))

	for range 3 {
		if _, err := routes.Update(ctx, "orders", func(r *Route) error { r.Hits++; return nil }); err != nil {
			fmt.Println(err)
			return
		}
	}
	doc, err := routes.Get(ctx, "orders")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s: %+v (version %d)\n", doc.Key, doc.Value, doc.Version)
	// Output:
	// create twice is a conflict: true
	// orders: {Path:/orders Hits:3} (version 4)
}

// HealthHandler serves the seed service's /health JSON: 200 when healthy or
// degraded, 503 when unhealthy.
func ExampleHealthHandler() {
	ctx := context.Background()
	for _, e := range []env{
		{"DATABASE_URL": "memory://"}, // memory on purpose: healthy
		{},                            // nothing configured: degraded
	} {
		cfg, err := dbmanager.LoadConfig(e.get)
		if err != nil {
			fmt.Println(err)
			return
		}
		m := dbmanager.New(cfg, dbmanager.WithLogger(quiet))
		if err := m.Init(ctx); err != nil {
			fmt.Println(err)
			return
		}
		h := dbmanager.HealthHandler(m, "Gateway Management API", "1.0.0")

		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
		fmt.Print(rec.Code, " ", rec.Body.String())
		_ = m.Close(ctx)
	}
	// Output:
	// 200 {"status":"healthy","service":"Gateway Management API","version":"1.0.0","database":{"status":"healthy","type":"in-memory","message":"In-memory storage in use (DATABASE_URL=memory://)","using_primary":false}}
	// 200 {"status":"degraded","service":"Gateway Management API","version":"1.0.0","database":{"status":"degraded","type":"in-memory","message":"No database URL configured; using in-memory storage","using_primary":false}}
}

// List returns a page in bytewise key order; pass Page.Next as After for
// the next page, until it is "".
func ExampleStore_List() {
	ctx := context.Background()
	var store dbmanager.Store = dbmanager.NewMemStore()
	for _, key := range []string{"v1/orders", "v1/billing", "v2/orders", "v1/users", "v1/admin"} {
		if _, err := store.Put(ctx, "apis", key, []byte(`{}`)); err != nil {
			fmt.Println(err)
			return
		}
	}

	opts := dbmanager.ListOptions{Prefix: "v1/", Limit: 2}
	for {
		page, err := store.List(ctx, "apis", opts)
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, r := range page.Records {
			fmt.Print(r.Key, " ")
		}
		fmt.Printf("| next=%q\n", page.Next)
		if page.Next == "" {
			break
		}
		opts.After = page.Next
	}
	// Output:
	// v1/admin v1/billing | next="v1/billing"
	// v1/orders v1/users | next=""
}

// LoadConfig reads the environment through a function, so tests can pass
// a map. A variable that is set but wrong is an error naming it; it never
// falls back to the default.
func ExampleLoadConfig() {
	cfg, err := dbmanager.LoadConfig(env{
		"AWS_DB_HOST":     "mydb.abc123.eu-west-1.rds.amazonaws.com",
		"AWS_DB_NAME":     "gateway_db",
		"AWS_DB_USER":     "app",
		"AWS_DB_PASSWORD": "p@ss:w/rd?#%&=",
		"AWS_REQUIRE_SSL": "true",
		"DB_POOL_SIZE":    "10",
	}.get)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("source:", cfg.Source())
	fmt.Println("max connections:", cfg.MaxConns(), "pool timeout:", cfg.PoolTimeout)
	fmt.Printf("password: %v\n", cfg.DBPassword)

	_, err = dbmanager.LoadConfig(env{"AWS_DB_PORT": "abc", "DB_FALLBACK": "sqlite"}.get)
	fmt.Println(errors.Is(err, dbmanager.ErrConfig))
	fmt.Println(err)
	// Output:
	// source: AWS_DB_*
	// max connections: 20 pool timeout: 30s
	// password: REDACTED
	// true
	// dbmanager: invalid configuration: AWS_DB_PORT: "abc" is not a port; want an integer from 1 to 65535
	// dbmanager: invalid configuration: DB_FALLBACK: "sqlite" is not valid; want memory or none
}

// Redact makes a connection string fit to show a person.
func ExampleRedact() {
	fmt.Println(dbmanager.Redact("postgresql+asyncpg://app:s3cret@db.internal:5432/gateway_db?sslmode=verify-full"))
	fmt.Println(dbmanager.Redact("host=db.internal user=app password='s3cret' dbname=gateway_db"))
	// Output:
	// postgresql+asyncpg://app:xxxxx@db.internal:5432/gateway_db?sslmode=verify-full
	// host=db.internal user=app password=xxxxx dbname=gateway_db
}

// A service that wants only a pgxpool, with the library's configuration,
// Secrets Manager credentials, rotation handling, IAM tokens and TLS
// policy, and no Store. (Compiled, not run: it needs a PostgreSQL.)
func ExampleNewPool() {
	ctx := context.Background()
	cfg, err := dbmanager.ConfigFromEnv() // DATABASE_URL, AWS_DB_SECRET or AWS_DB_*
	if err != nil {
		fmt.Println(err)
		return
	}
	pool, err := dbmanager.NewPool(ctx, cfg, dbmanager.WithLogger(quiet))
	if err != nil {
		fmt.Println(err) // redacted; errors.Is(err, dbmanager.ErrConfig) for a bad configuration
		return
	}
	defer pool.Close()

	var now string
	if err := pool.QueryRow(ctx, "SELECT now()::text").Scan(&now); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("connected at", now)
}

// BuildURL encodes any character of a login, so a generated password can
// go into DATABASE_URL as it is; Redact is the form to log.
func ExampleBuildURL() {
	url := dbmanager.BuildURL("app", "p@ss:w/rd?#", "db.internal", 0, "gateway")
	fmt.Println(url)
	fmt.Println(dbmanager.Redact(url))
	// Output:
	// postgres://app:p%40ss%3Aw%2Frd%3F%23@db.internal:5432/gateway
	// postgres://app:xxxxx@db.internal:5432/gateway
}

// A service that wants one Manager for the whole process builds it at
// start-up and registers it; code elsewhere reaches it with Default
// instead of passing it around (the seed's get_database_manager()).
func ExampleSetDefault() {
	ctx := context.Background()
	cfg, err := dbmanager.LoadConfig(env{"DATABASE_URL": "memory://"}.get)
	if err != nil {
		fmt.Println(err)
		return
	}
	m := dbmanager.New(cfg, dbmanager.WithLogger(quiet))
	if err := m.Init(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close(ctx)
	dbmanager.SetDefault(m)
	defer dbmanager.SetDefault(nil)

	// Elsewhere in the service:
	store := dbmanager.Default().Store()
	_, _ = store.Put(ctx, "apis", "orders", []byte(`{"path":"/orders"}`))
	rec, _ := store.Get(ctx, "apis", "orders")
	fmt.Println(dbmanager.Default() == m, string(rec.Value))
	// Output: true {"path":"/orders"}
}

// A service that already opens its own pgxpool (its own tracer, its own
// credentials) can still use the Store on it. NewPGStore creates the
// Store's table if it is missing; the pool stays the caller's to close.
func ExampleNewPGStore() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	store, err := dbmanager.NewPGStore(ctx, pool, dbmanager.WithStoreSchema("gateway"))
	if err != nil {
		fmt.Println(err) // redacted, and classified: errors.As(err, new(*dbmanager.ConnectionError))
		return
	}
	rec, err := store.Put(ctx, "apis", "orders", []byte(`{"path":"/orders"}`))
	fmt.Println(rec.Version, err)
}

// ValidateConnection is a pre-flight check for a connection string: it
// connects once, pings and closes, and its error says why not (its
// Reason: dns, refused, timeout, tls, auth, ...) without the password.
// Diagnose checks a whole Config instead, TLS policy included.
func ExampleValidateConnection() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := dbmanager.ValidateConnection(ctx, os.Getenv("DATABASE_URL")); err != nil {
		var ce *dbmanager.ConnectionError
		if errors.As(err, &ce) {
			fmt.Println("cannot reach the database:", ce.Reason)
		}
		fmt.Println(err)
		return
	}
	fmt.Println("ok")
}
