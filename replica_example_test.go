package dbmanager_test

import (
	"context"
	"fmt"

	"github.com/gatewaykit/dbmanager"
)

// Read replicas are configured next to the writer; they share its login,
// database and TLS policy.
func ExampleLoadConfig_readReplicas() {
	cfg, err := dbmanager.LoadConfig(env{
		"DATABASE_URL":     "postgres://app:secret@writer.example:5432/gateway",
		"AWS_DB_READ_HOST": "reader-1.example,reader-2.example:5433",
		"DB_READ_MAX_LAG":  "500ms",
	}.get)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.HasReadReplicas(), cfg.ReadHosts, cfg.ReadMaxLag)
	// Output: true [reader-1.example reader-2.example:5433] 500ms
}

// A read that must see what other processes wrote the moment they were
// acknowledged goes to the writer. Without replicas (here: memory) the
// option changes nothing.
func ExampleReadFromWriter() {
	ctx := context.Background()
	m := dbmanager.New(dbmanager.Config{MemoryOnly: true}, dbmanager.WithLogger(quiet))
	if err := m.Init(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close(ctx)
	store := m.Store()
	if _, err := store.Put(ctx, "apis", "orders", []byte(`{"path":"/orders"}`)); err != nil {
		fmt.Println(err)
		return
	}
	rec, err := store.Get(dbmanager.ReadFromWriter(ctx), "apis", "orders")
	fmt.Println(string(rec.Value), err)
	// Output: {"path":"/orders"} <nil>
}

// Your own read-only SQL on a replica that has replayed the Store's latest
// write, or on the writer.
func ExampleManager_ReadPool() {
	ctx := context.Background()
	m := dbmanager.Default() // DATABASE_URL and DATABASE_READ_URL from the environment
	if err := m.Init(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close(ctx)
	pool, ok := m.ReadPool() // ask again for each unit of work
	if !ok {
		fmt.Println("serving from memory: no SQL")
		return
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM dbmanager.records WHERE collection = $1`, "apis").Scan(&n); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(n, "APIs")
}
