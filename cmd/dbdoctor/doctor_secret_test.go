package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/gatewaykit/dbmanager/internal/fakesm"
	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// awsEnv is the environment that points the AWS SDK at the fake Secrets
// Manager (static test credentials, no shared files, no IMDS).
func awsEnv(t *testing.T, sm *fakesm.Server, extra ...string) map[string]string {
	t.Helper()
	empty := filepath.Join(t.TempDir(), "empty-aws-config")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	m := map[string]string{
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": sm.URL(), "AWS_ACCESS_KEY_ID": fakesm.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY": fakesm.SecretAccessKey, "AWS_REGION": fakesm.Region,
		"AWS_CONFIG_FILE": empty, "AWS_SHARED_CREDENTIALS_FILE": empty,
	}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

func secretJSON(t *testing.T, fields map[string]any) string {
	t.Helper()
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDoctorSecrets: a Secrets Manager secret read through the fake
// Secrets Manager (the AWS SDK's own client, signing and parsing): a full
// RDS secret, an RDS-managed one completed by AWS_DB_*, a malformed one, a
// missing one, one whose password is wrong.
func TestDoctorSecrets(t *testing.T) {
	d := newDB(t, pgtest.URL(t), true)
	sm := fakesm.New(t)
	full := map[string]any{"username": d.user, "password": d.password, "host": d.host, "port": d.port,
		"dbname": d.name, "engine": "postgres", "dbInstanceIdentifier": "doctor-db"}
	sm.SetSecretString("app/db", secretJSON(t, full))

	t.Run("RDS secret", func(t *testing.T) {
		r := runDoctor(t, awsEnv(t, sm, "AWS_DB_SECRET", "app/db"))
		r.want(t, 0, "config", ok, `source secret`, `"app/db"`)
		r.want(t, 0, "secret", ok, "fields: dbInstanceIdentifier, dbname, engine, host, password, port, username", "not RDS-managed",
			"host, port and database from the secret")
		r.want(t, 0, "auth", ok, `the password of secret "app/db"`)
		r.want(t, 0, "store", ok)
		r.noSecret(t, d.password, fakesm.SecretAccessKey)
	})
	t.Run("RDS-managed secret", func(t *testing.T) {
		sm.SetSecretString("rds!db-0123-doctor", secretJSON(t, map[string]any{"username": d.user, "password": d.password}))
		r := runDoctor(t, awsEnv(t, sm, "AWS_SECRET_NAME", "rds!db-0123-doctor",
			"AWS_DB_HOST", d.host, "AWS_DB_PORT", strconv.Itoa(d.port), "AWS_DB_NAME", d.name))
		r.want(t, 0, "secret", ok, "fields: password, username", "RDS-managed", "host from AWS_DB_HOST", "database from AWS_DB_NAME")
		r.want(t, 0, "auth", ok)
		r.noSecret(t, d.password, fakesm.SecretAccessKey)
	})
	t.Run("RDS-managed secret without AWS_DB_HOST", func(t *testing.T) {
		r := runDoctor(t, awsEnv(t, sm, "AWS_SECRET_NAME", "rds!db-0123-doctor"))
		r.want(t, 1, "secret", failed, "the secret has no host", "AWS_DB_HOST")
		r.want(t, 1, "dns", skipped)
		r.noSecret(t, d.password, fakesm.SecretAccessKey)
	})
	t.Run("malformed secret", func(t *testing.T) {
		for name, value := range map[string]string{
			"not JSON":        "user=app password=" + marker,
			"password number": `{"username": "app", "password": 12345, "note": "` + marker + `"}`,
			"no password":     `{"username": "app", "pass": "` + marker + `"}`,
		} {
			t.Run(name, func(t *testing.T) {
				sm.SetSecretString("bad/db", value)
				r := runDoctor(t, awsEnv(t, sm, "AWS_DB_SECRET", "bad/db"))
				r.want(t, 1, "secret", failed, "malformed secret", `"username" and "password"`)
				r.want(t, 1, "auth", skipped)
				r.noSecret(t, value)
			})
		}
	})
	t.Run("missing secret", func(t *testing.T) {
		r := runDoctor(t, awsEnv(t, sm, "AWS_DB_SECRET", "no/such/secret"))
		r.want(t, 1, "secret", failed, `secret "no/such/secret" not found in region "`+fakesm.Region+`"`, "secrets are regional")
		r.noSecret(t, fakesm.SecretAccessKey)
	})
	t.Run("no region", func(t *testing.T) {
		env := awsEnv(t, sm, "AWS_DB_SECRET", "app/db")
		delete(env, "AWS_REGION")
		r := runDoctor(t, env)
		r.want(t, 1, "secret", failed, "no AWS region", "set AWS_REGION")
		r.noSecret(t, d.password, fakesm.SecretAccessKey)
	})
	t.Run("wrong password in the secret", func(t *testing.T) {
		wrong := map[string]any{}
		for k, v := range full {
			wrong[k] = v
		}
		wrong["password"] = "old-" + marker
		sm.SetSecretString("stale/db", secretJSON(t, wrong))
		r := runDoctor(t, awsEnv(t, sm, "AWS_DB_SECRET", "stale/db"))
		r.want(t, 1, "secret", ok)
		r.want(t, 1, "auth", failed, "wrong password", `secret "stale/db"`, "rotated")
		r.noSecret(t, d.password, "old-"+marker, fakesm.SecretAccessKey)
	})
}
