package dbmanager

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// FuzzLoadReadConfig feeds the read replica variables to LoadConfig and,
// when it accepts them, resolves the replicas: accepted settings must
// resolve, each replica must be what pgx reads from its DSN (one host, its
// port), and no error or print may show the writer's password.
func FuzzLoadReadConfig(f *testing.F) {
	f.Add("postgres://r1:5433,r2/db", "", "1s", "secret")
	f.Add("postgresql+psycopg2://u:p%40ss@r1/db?sslmode=disable", "r2:5432", "-1", "p@ss:w/rd?#%&=")
	f.Add("host=r1,r2 port=5433 user=ro password='x y'", "", "0.5", "'")
	f.Add("", "r1, [::1]:5433 ,::2,10.0.0.1:6000", "250ms", "x")
	f.Add("", "r1,,r2", "0", "x")
	f.Add("memory://", "r1:0", "NaN", "")
	f.Add("postgres://u:pw@[::1]:5432/db", "[r1]:5", "1e300", "pw")
	f.Add("mysql://u:p@h/db", "postgres://r1", "soon", "word")
	f.Add("postgres://r1/db?host=r2&port=5433", "", "", "x")
	f.Add("postgres://%72%31:5433/db", "", "", "x")
	f.Add("postgres://r1:5432,/db", "", "", "x")
	f.Add("postgres://u@r1/db#frag", "", "", "x")
	f.Add("postgres://r1/db?hostaddr=10.0.0.1", "", "", "x")
	f.Add("postgres://r1/db?target_session_attrs=read-write", "", "", "x")
	f.Fuzz(func(t *testing.T, readURL, readHosts, maxLag, password string) {
		pw := "Qz7" + password + "7zQ"
		writerURL := BuildURL("u", pw, "w", 5432, "db") + "?sslmode=disable&target_session_attrs=read-write"
		env := map[string]string{"DATABASE_URL": writerURL, "DATABASE_READ_URL": readURL, "AWS_DB_READ_HOST": readHosts, "DB_READ_MAX_LAG": maxLag}
		others := readURL + readHosts + maxLag
		leaks := func(s string) bool { return strings.Contains(s, pw) && !strings.Contains(others, pw) }
		cfg, err := LoadConfig(envOf(env))
		if err != nil {
			if leaks(err.Error()) {
				t.Fatalf("error shows the password: %v", err)
			}
			return
		}
		if cfg.ReadMaxLag < 0 {
			t.Fatalf("negative DB_READ_MAX_LAG accepted: %v", cfg.ReadMaxLag)
		}
		for _, s := range []string{cfg.LogValue().String(), sprintAll(cfg)} {
			if leaks(s) {
				t.Fatalf("Config print shows the password: %s", s)
			}
		}
		writer, err := resolveTarget(t.Context(), cfg, nil)
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
		targets, err := resolveReadTargets(cfg, writer)
		if err != nil {
			t.Fatalf("accepted read configuration does not resolve: %v", err)
		}
		if cfg.HasReadReplicas() != (len(targets) > 0) {
			t.Fatalf("%d targets for read configuration %v", len(targets), cfg.HasReadReplicas())
		}
		for _, tg := range targets {
			if leaks(tg.Redacted) || leaks(tg.Addr()) || leaks(sprintAll(tg)) {
				t.Fatalf("replica target shows the password: %s", tg.Redacted)
			}
			cc, err := pgconn.ParseConfig(tg.DSN.Reveal())
			if err != nil {
				continue // e.g. a parameter pgx refuses; newPoolConfig reports it redacted
			}
			if cc.Host != tg.Host || int(cc.Port) != tg.Port || len(cc.Fallbacks) != 0 {
				t.Fatalf("pgx reads the replica as %s:%d (+%d fallbacks), the Manager shows %s", cc.Host, cc.Port, len(cc.Fallbacks), tg.Addr())
			}
		}
	})
}
