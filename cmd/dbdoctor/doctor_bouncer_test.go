package main

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// TestDoctorBehindPgBouncer: PgBouncer in transaction pooling in front of
// the server makes the server step a warning that names the setting
// callers' SQL needs; with that setting, or in session pooling, it is ok.
func TestDoctorBehindPgBouncer(t *testing.T) {
	d := newDB(t, pgtest.URL(t), true)
	backend := net.JoinHostPort(d.host, strconv.Itoa(d.port))
	viaURL := func(b *pgtest.PgBouncer, params string) map[string]string {
		u := "postgres://" + url.QueryEscape(d.user) + ":" + url.QueryEscape(d.password) + "@" + b.Addr() + "/" + d.name + "?sslmode=disable" + params
		return map[string]string{"DATABASE_URL": u}
	}

	tx := pgtest.NewPgBouncer(t, backend, pgtest.WithPoolMode("transaction"), pgtest.WithBouncerUser(d.user, d.password))
	t.Run("transaction pooling", func(t *testing.T) {
		r := runDoctor(t, d.env("AWS_DB_PORT", strconv.Itoa(tx.Port())))
		r.want(t, 0, "auth", ok)
		r.want(t, 0, "server", warning, "a transaction pooler is in front", "cache_statement", "DB_QUERY_EXEC_MODE=exec")
		r.want(t, 0, "store", ok)
		r.noSecret(t, d.password)
	})
	t.Run("transaction pooling with DB_QUERY_EXEC_MODE=exec", func(t *testing.T) {
		r := runDoctor(t, d.env("AWS_DB_PORT", strconv.Itoa(tx.Port()), "DB_QUERY_EXEC_MODE", "exec"))
		r.want(t, 0, "server", ok, "a transaction pooler is in front", "exec, works behind it")
		r.noSecret(t, d.password)
	})
	t.Run("transaction pooling with default_query_exec_mode in the URL", func(t *testing.T) {
		r := runDoctor(t, viaURL(tx, "&default_query_exec_mode=cache_describe"))
		r.want(t, 0, "server", ok, "cache_describe, works behind it")
		r.noSecret(t, d.password)
	})

	session := pgtest.NewPgBouncer(t, backend, pgtest.WithPoolMode("session"), pgtest.WithBouncerUser(d.user, d.password))
	t.Run("session pooling", func(t *testing.T) {
		r := runDoctor(t, viaURL(session, ""))
		s := r.want(t, 0, "server", ok, "a pooler or proxy is in front", "session pooling", "if it pools transactions")
		if strings.Contains(s.Detail, "transaction pooler") {
			t.Errorf("session pooling taken for transaction pooling: %s", s.Detail)
		}
		r.noSecret(t, d.password)
	})
}
