package dbmanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/smithy-go"
)

// The secret step: the Manager's own secret cache reads the secret
// (through a recorder that notes how long the fetch took and which field
// names the secret has), then resolveTarget and newPoolConfig build the
// writer target from it, exactly as the Manager does at start-up.

// secretRecorder is a SecretSource that passes every call to src and
// remembers what the diagnosis may show (field names, timing) and what
// it must scrub (the values).
type secretRecorder struct {
	src SecretSource

	mu      sync.Mutex
	fetched bool // a value was read (it may still be malformed)
	took    time.Duration
	fields  []string // key names of the secret's JSON object; nil if not an object
	values  []string // every value that may be secret
}

func (r *secretRecorder) SecretString(ctx context.Context, id string) (string, error) {
	start := time.Now()
	v, err := r.src.SecretString(ctx, id)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.took = time.Since(start)
	if err == nil {
		r.fetched = true
		r.fields, r.values = secretContents(v)
	}
	return v, err
}

// nonSecretFields are RDS secret fields whose values may be shown.
var nonSecretFields = []string{"username", "host", "port", "dbname", "engine", "dbInstanceIdentifier", "dbClusterIdentifier", "masterarn"}

// secretContents returns the key names of a secret's JSON object (sorted)
// and the values to scrub: the whole string and every string value of a
// field that is not known to be harmless.
func secretContents(v string) (names, values []string) {
	values = []string{v, strings.TrimSpace(v)}
	var fields map[string]json.RawMessage
	if json.Unmarshal([]byte(v), &fields) != nil {
		return nil, values
	}
	for k, raw := range fields {
		names = append(names, k)
		var s string
		if json.Unmarshal(raw, &s) == nil && !slices.Contains(nonSecretFields, k) {
			values = append(values, s)
		}
	}
	slices.Sort(names)
	return names, values
}

// manager returns the throwaway Manager whose secret cache and credential
// hook the diagnosis uses (built once; it never connects).
func (d *diagnosis) manager(src SecretSource) *Manager {
	if d.m == nil {
		d.m = New(d.cfg, WithLogger(slog.New(slog.DiscardHandler)), WithSecretSource(src), WithStoreSchema(d.opts.schema))
		m := d.m
		d.cleanup = append(d.cleanup, func() { _ = m.Close(context.Background()) })
	}
	return d.m
}

// checkSecret is the secret step.
func (d *diagnosis) checkSecret(ctx context.Context, s *Step) {
	if d.cfg.Source() != SourceSecret {
		s.Status = StepSkipped
		s.found("no secret configured (source " + string(d.cfg.Source()) + ")")
		return
	}
	id := d.cfg.SecretID
	src := d.opts.secrets
	if src == nil {
		aws, err := NewAWSSecretSource(ctx, d.cfg.Region)
		if err != nil {
			s.fail(fmt.Sprintf("secret %q: %s", id, errorText(err)),
				"set AWS_REGION to the secret's region and give the process AWS credentials (an IAM role, AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
			return
		}
		src = aws
	}
	rec := &secretRecorder{src: src}
	cache, err := d.manager(rec).secretCache(ctx)
	if err != nil {
		s.fail(errorText(err), "set AWS_REGION and give the process AWS credentials")
		return
	}
	d.cache = cache
	t, err := resolveTarget(ctx, d.cfg, cache.Current)
	rec.mu.Lock()
	fetched, took, names, values := rec.fetched, rec.took, rec.fields, rec.values
	rec.mu.Unlock()
	for _, v := range values {
		d.addSecret(v)
	}
	fields := "fields: " + strings.Join(names, ", ")
	if names == nil {
		fields = "not a JSON object"
	}
	if err != nil {
		detail, fix := explainSecretError(err, id, d.cfg.Region)
		if fetched {
			detail += "; " + fields
		}
		s.fail(detail, fix)
		return
	}
	creds, _ := cache.Current(ctx) // cached: no second fetch
	d.addSecret(creds.Password)
	if err := d.setWriter(t); err != nil {
		s.fail(errorText(err), fixForConfigError(err))
		return
	}
	parts := []string{fmt.Sprintf("secret %q read in %s", id, ms(took)), fields}
	if IsRDSManagedSecret(id) {
		parts = append(parts, "RDS-managed (rds!...)")
	} else {
		parts = append(parts, "not RDS-managed")
	}
	var fromEnv []string
	if creds.Host == "" {
		fromEnv = append(fromEnv, "host from AWS_DB_HOST")
	}
	if creds.Port == 0 {
		fromEnv = append(fromEnv, fmt.Sprintf("port from AWS_DB_PORT (%d)", d.cfg.DBPort))
	}
	if creds.DBName == "" {
		if d.cfg.DBName != "" {
			fromEnv = append(fromEnv, "database from AWS_DB_NAME")
		} else {
			fromEnv = append(fromEnv, "no database named (PostgreSQL uses the user name)")
		}
	}
	if len(fromEnv) > 0 {
		parts = append(parts, strings.Join(fromEnv, ", "))
	} else {
		parts = append(parts, "host, port and database from the secret")
	}
	if d.cfg.IAMAuth {
		parts = append(parts, "its password is not used (AWS_DB_IAM_AUTH: an IAM token instead)")
	}
	parts = append(parts, "target "+t.Redacted, d.policySummary(), d.readSummary())
	s.found(strings.Join(parts, "; "))
}

// explainSecretError says what went wrong reading or using the secret and
// how to fix it. Its texts never contain the secret.
func explainSecretError(err error, id, region string) (detail, fix string) {
	detail = errorText(err)
	where := "AWS_DB_SECRET/AWS_SECRET_NAME (" + fmt.Sprintf("%q", id) + ") and AWS_REGION (" + fmt.Sprintf("%q", region) + ")"
	var api smithy.APIError
	var ce *ConfigError
	switch {
	case errors.Is(err, ErrSecretNotFound):
		return fmt.Sprintf("secret %q not found in region %q", id, region),
			"check " + where + ": secrets are regional, and a name must match exactly (or use the full ARN)"
	case errors.Is(err, ErrMalformedSecret):
		return detail, `store the secret as a JSON object with at least "username" and "password" (RDS's layout: username, password, host, port, dbname, engine)`
	case errors.As(err, &ce):
		return detail, fixForConfigError(err)
	case errors.As(err, &api):
		switch api.ErrorCode() {
		case "AccessDeniedException":
			return detail, "allow secretsmanager:GetSecretValue on the secret (and kms:Decrypt on its KMS key) for the process's IAM role"
		case "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException":
			return detail, "the AWS credentials are not valid: check the IAM role, AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN"
		case "DecryptionFailure":
			return detail, "allow kms:Decrypt on the secret's KMS key for the process's IAM role"
		}
	case isContextError(err):
		return fmt.Sprintf("Secrets Manager did not answer in time (secret %q): %s", id, detail),
			"from a private subnet Secrets Manager needs a NAT gateway or a VPC endpoint (com.amazonaws." + region + ".secretsmanager); AWS_ENDPOINT_URL_SECRETS_MANAGER names a custom endpoint"
	case strings.Contains(detail, "credentials"):
		return detail, "give the process AWS credentials: an IAM role (EC2, ECS, EKS), AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
	}
	return detail, "check " + where + ", the AWS credentials, and that Secrets Manager is reachable from this host"
}
