package dbmanager

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/gatewaykit/dbmanager/internal/testcert"
	"github.com/gatewaykit/dbmanager/internal/tlstrust"
)

// iamTLSServer starts a PostgreSQL with TLS (the given certificate) that
// trusts the role iam_app over TLS, since PostgreSQL cannot check IAM
// tokens (RDS does), and asks every other role for a password. It returns
// the server and its database, where iam_app may create schemas.
func iamTLSServer(t *testing.T, certFile, keyFile string) (*pgtest.Server, string) {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} { // the server runs as the postgres user
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	hba := filepath.Join(dir, "pg_hba.conf")
	rules := "hostssl all iam_app 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(hba, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := pgtest.NewServer(t, pgtest.WithTLS(certFile, keyFile), pgtest.WithSetting("hba_file", hba))
	_, _, db := serverParts(t, srv.URL(t))
	srv.Exec(t, "CREATE ROLE iam_app LOGIN")
	srv.Exec(t, "GRANT CREATE ON DATABASE "+pgx.Identifier{db}.Sanitize()+" TO iam_app")
	return srv, db
}

// setTestAWSCredentials gives the AWS SDK static credentials and no
// configuration files or instance metadata for the rest of the test.
func setTestAWSCredentials(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "none"))
}

// TestEmbeddedRootsAgainstServer: a real PostgreSQL with TLS whose
// certificate (for "localhost" only) comes from a throwaway CA that the
// test adds to the embedded RDS roots, through the path the RDS bundle
// takes.
func TestEmbeddedRootsAgainstServer(t *testing.T) {
	ctx := context.Background()
	ca := testcert.NewCA(t, "embedded-roots-test-ca")
	other := testcert.NewCA(t, "other-ca")
	certFile, keyFile := ca.ServerCert(t, []string{"localhost"}, nil)
	expires := certExpiry(t, certFile)
	srv, db := iamTLSServer(t, certFile, keyFile)
	port := srv.Port()
	password := "roots-" + leakMarker
	role := roleWithPassword(t, srv.AdminURL(), password)
	srv.Exec(t, "GRANT CREATE ON DATABASE "+pgx.Identifier{db}.Sanitize()+" TO "+role)
	trustAsEmbedded(t, ca)

	base := []string{"AWS_DB_HOST", "localhost", "AWS_DB_PORT", strconv.Itoa(port), "AWS_DB_NAME", db,
		"AWS_DB_USER", role, "AWS_DB_PASSWORD", password, "DB_CONNECT_TIMEOUT", "3"}
	required := append(append([]string{}, base...), "AWS_REQUIRE_SSL", "true")
	urlOf := func(host, query string) string {
		return "postgres://" + url.UserPassword(role, password).String() + "@" + host + "/" + db + "?" + query
	}
	hostPort := net.JoinHostPort("localhost", strconv.Itoa(port))
	// connect makes one connection with the configuration of vars and
	// returns what it recorded about TLS.
	connect := func(t *testing.T, vars ...string) (TLSInfo, error) {
		t.Helper()
		cfg := envConfig(t, vars...)
		tg, err := resolveTarget(ctx, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		cc, rec, err := newConnConfigRecording(cfg, tg.DSN.Reveal())
		if err != nil {
			t.Fatal(err)
		}
		err = validateConnConfig(ctx, cc)
		info := tlsInfoOf(rec)
		assertNothingLeaks(t, "TLSInfo", info)
		return info, err
	}
	wantEmbedded := func(t *testing.T, info TLSInfo, mode string) {
		t.Helper()
		want := TLSInfo{Mode: mode, Roots: tlstrust.EmbeddedBundleName(), RootCA: "embedded-roots-test-ca", ServerCertExpires: expires}
		if info != want {
			t.Errorf("TLS info %+v, want %+v", info, want)
		}
	}

	t.Run("verify-full with no AWS_SSLROOTCERT", func(t *testing.T) {
		info, err := connect(t, required...)
		if err != nil {
			t.Fatal(err)
		}
		wantEmbedded(t, info, TLSModeVerifyFull)
	})
	t.Run("AWS_SSLROOTCERT of another CA fails", func(t *testing.T) {
		_, err := connect(t, append(required, "AWS_SSLROOTCERT", other.File)...)
		wantReason(t, err, ReasonTLS)
	})
	t.Run("AWS_SSLROOTCERT=system turns the embedded roots off", func(t *testing.T) {
		_, err := connect(t, append(required, "AWS_SSLROOTCERT", "system")...)
		wantReason(t, err, ReasonTLS)
	})
	t.Run("the host name is still checked", func(t *testing.T) {
		_, err := connect(t, append(required, "AWS_DB_HOST", "127.0.0.1")...)
		wantReason(t, err, ReasonTLS)
	})
	t.Run("AWS_SSLROOTCERT means exactly that file", func(t *testing.T) {
		info, err := connect(t, append(required, "AWS_SSLROOTCERT", ca.File)...)
		if err != nil {
			t.Fatal(err)
		}
		if info.Roots != "file "+ca.File || info.ServerCertExpires != expires {
			t.Errorf("TLS info %+v; want roots from the file", info)
		}
	})
	t.Run("sslmode=verify-full in the URL alone", func(t *testing.T) {
		info, err := connect(t, "DATABASE_URL", urlOf(hostPort, "sslmode=verify-full"))
		if err != nil {
			t.Fatal(err)
		}
		wantEmbedded(t, info, TLSModeVerifyFull)
	})
	t.Run("sslmode=verify-ca in the URL alone: chain checked, name not", func(t *testing.T) {
		ip := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		info, err := connect(t, "DATABASE_URL", urlOf(ip, "sslmode=verify-ca"))
		if err != nil {
			t.Fatal(err)
		}
		wantEmbedded(t, info, TLSModeVerifyCA)
		_, err = connect(t, "DATABASE_URL", urlOf(ip, "sslmode=verify-ca"), "AWS_SSLROOTCERT", "system")
		wantReason(t, err, ReasonTLS)
	})
	t.Run("every host of a multi-host URL", func(t *testing.T) {
		// The first host refuses; pgx's fallback for the second must carry the roots.
		dead := refusedAddr(t)
		_, deadPort, _ := net.SplitHostPort(dead)
		hosts := "localhost:" + deadPort + "," + hostPort
		info, err := connect(t, "DATABASE_URL", urlOf(hosts, "sslmode=verify-full"))
		if err != nil {
			t.Fatal(err)
		}
		wantEmbedded(t, info, TLSModeVerifyFull)
	})
	t.Run("sslmode=require does not verify and records nothing", func(t *testing.T) {
		info, err := connect(t, "DATABASE_URL", urlOf(hostPort, "sslmode=require"))
		if err != nil {
			t.Fatal(err)
		}
		if info != (TLSInfo{Mode: TLSModeUnverified}) {
			t.Errorf("TLS info %+v; want unverified", info)
		}
	})

	t.Run("Manager: Info and the start-up log name the roots and the expiry", func(t *testing.T) {
		m, logs := newTestManager(t, envConfig(t, append(required, "DB_FALLBACK", "none")...))
		if err := m.Init(ctx); err != nil {
			t.Fatal(err)
		}
		info := m.Info()
		if info.TLS == nil {
			t.Fatal("Info has no TLS")
		}
		wantEmbedded(t, *info.TLS, TLSModeVerifyFull)
		js, _ := json.Marshal(info)
		if !strings.Contains(string(js), `"tls":{"mode":"verify-full","roots":"`+tlstrust.EmbeddedBundleName()+`","root_ca":"embedded-roots-test-ca","server_cert_expires":"`) {
			t.Errorf("Info JSON: %s", js)
		}
		assertNothingLeaks(t, "Info", info)
		var line string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "Primary database initialized successfully") {
				line = l
			}
		}
		want := `tls.mode=verify-full tls.roots="` + tlstrust.EmbeddedBundleName() + `" tls.root_ca=embedded-roots-test-ca tls.server_cert_expires=` + expires.Format("2006-01-02")
		if !strings.Contains(line, want) {
			t.Errorf("start-up log line %q lacks %q", line, want)
		}
		if strings.Contains(logs.String(), leakMarker) {
			t.Error("the log shows the password")
		}
	})
	t.Run("Manager: AWS_SSLROOTCERT=system refuses, never plaintext", func(t *testing.T) {
		m, _ := newTestManager(t, envConfig(t, append(required, "AWS_SSLROOTCERT", "system", "DB_FALLBACK", "none")...))
		wantReason(t, m.Init(ctx), ReasonTLS)
	})

	t.Run("IAM authentication uses the same roots", func(t *testing.T) {
		setTestAWSCredentials(t)
		iam := []string{"AWS_DB_HOST", "localhost", "AWS_DB_PORT", strconv.Itoa(port), "AWS_DB_NAME", db,
			"AWS_DB_USER", "iam_app", "AWS_DB_IAM_AUTH", "true", "AWS_REGION", "us-east-1",
			"DB_CONNECT_TIMEOUT", "3", "DB_FALLBACK", "none"}
		m, logs := newTestManager(t, envConfig(t, iam...), WithStoreSchema("iam_app"))
		if err := m.Init(ctx); err != nil {
			t.Fatalf("IAM over verify-full with the embedded roots: %v", err)
		}
		if info := m.Info(); info.TLS == nil || info.TLS.Roots != tlstrust.EmbeddedBundleName() {
			t.Errorf("Info TLS = %+v; want the embedded roots", info.TLS)
		}
		if _, err := m.Store().Put(ctx, "apis", "k", []byte(`1`)); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(logs.String(), "X-Amz-Signature") {
			t.Error("an IAM token appears in the logs")
		}
		strict, _ := newTestManager(t, envConfig(t, append(iam, "AWS_SSLROOTCERT", "system")...))
		err := strict.Init(ctx)
		wantReason(t, err, ReasonTLS)
		if strings.Contains(err.Error(), "X-Amz-Signature") {
			t.Error("the error shows an IAM token")
		}
		if errors.Is(err, ErrIAMRequiresTLS) {
			t.Error("refused as IAM-without-TLS; want the certificate check")
		}
	})
}
