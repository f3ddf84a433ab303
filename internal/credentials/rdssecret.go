package credentials

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseRDSSecret reads the JSON of a Secrets Manager database secret into
// Credentials. It accepts the RDS secret layout (username, password,
// host, port as a JSON number or a string of digits, dbname, engine;
// other keys such as dbInstanceIdentifier are ignored) and the
// RDS-managed master secrets (rds!db-..., rds!cluster-...) that hold only
// username and password, in which case Host, Port and DBName stay empty
// for the caller to fill from AWS_DB_*. A JSON null counts as absent.
//
// username and password are required. Every error wraps
// ErrMalformedSecret, names at most the offending field, and never
// contains any part of s: the messages are built here, not taken from
// encoding/json, whose syntax errors can quote the input.
func ParseRDSSecret(s string) (Credentials, error) {
	trimmed := bytes.TrimSpace([]byte(s))
	if len(trimmed) == 0 {
		return Credentials{}, secretErr("the secret is empty")
	}
	if trimmed[0] != '{' || !json.Valid(trimmed) {
		return Credentials{}, secretErr("the secret is not a JSON object")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &fields); err != nil {
		return Credentials{}, secretErr("the secret is not a JSON object")
	}
	var c Credentials
	var err error
	if c.Username, err = stringField(fields, "username"); err != nil {
		return Credentials{}, err
	}
	if c.Password, err = stringField(fields, "password"); err != nil {
		return Credentials{}, err
	}
	if c.Username == "" {
		return Credentials{}, secretErr(`the secret has no "username"`)
	}
	if c.Password == "" {
		return Credentials{}, secretErr(`the secret has no "password"`)
	}
	if c.Host, err = stringField(fields, "host"); err != nil {
		return Credentials{}, err
	}
	if c.DBName, err = stringField(fields, "dbname"); err != nil {
		return Credentials{}, err
	}
	if c.Engine, err = stringField(fields, "engine"); err != nil {
		return Credentials{}, err
	}
	if c.Port, err = portField(fields, "port"); err != nil {
		return Credentials{}, err
	}
	return c, nil
}

// secretErr builds a ParseRDSSecret error from a fixed message.
func secretErr(msg string) error {
	return fmt.Errorf("dbmanager: parse database secret: %s: %w", msg, ErrMalformedSecret)
}

// stringField returns fields[name] as a string; absent or null is "".
func stringField(fields map[string]json.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok || isNull(raw) {
		return "", nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", secretErr(fmt.Sprintf("%q must be a JSON string", name))
	}
	return v, nil
}

// portField returns fields[name] as a TCP port; absent, null or "" is 0.
func portField(fields map[string]json.RawMessage, name string) (int, error) {
	raw, ok := fields[name]
	if !ok || isNull(raw) {
		return 0, nil
	}
	notNumber := secretErr(fmt.Sprintf("%q must be a port number (1-65535)", name))
	var text string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &text); err != nil {
			return 0, notNumber
		}
		text = strings.TrimSpace(text)
		if text == "" {
			return 0, nil
		}
	} else {
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil {
			return 0, notNumber
		}
		if f != math.Trunc(f) || f < 1 || f > 65535 {
			return 0, notNumber
		}
		return int(f), nil
	}
	p, err := strconv.Atoi(text)
	if err != nil || p < 1 || p > 65535 {
		return 0, notNumber
	}
	return p, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// IsRDSManagedSecret reports whether secretID names a secret that RDS
// manages for a master user ("rds!db-..." or "rds!cluster-...", also
// inside an ARN). Such secrets hold only username and password; the host,
// port and database come from the AWS_DB_* variables.
func IsRDSManagedSecret(secretID string) bool {
	name := secretID
	if strings.HasPrefix(name, "arn:") {
		if i := strings.LastIndex(name, ":secret:"); i >= 0 {
			name = name[i+len(":secret:"):]
		}
	}
	return strings.HasPrefix(name, "rds!db-") || strings.HasPrefix(name, "rds!cluster-")
}
