package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"

	"github.com/gatewaykit/dbmanager/internal/credentials"
)

// ErrSecretNotFound is wrapped by the error of a SecretSource when the
// named secret does not exist (Secrets Manager's ResourceNotFoundException).
var ErrSecretNotFound = credentials.ErrSecretNotFound

// ErrMalformedSecret is wrapped by the error for a secret that is not a
// database secret (not JSON, no username or password, a bad port) and by
// the error for a secret that holds binary data or no value at all. Such
// errors never contain the secret's contents.
var ErrMalformedSecret = credentials.ErrMalformedSecret

// ErrIAMRequiresTLS is returned for a connection with IAM authentication
// (AWS_DB_IAM_AUTH=true) that could send the token without TLS, or over
// TLS that does not verify the server; the token is never sent.
var ErrIAMRequiresTLS = credentials.ErrIAMRequiresTLS

// SecretSource fetches the current value of a named secret. The AWS Secrets
// Manager implementation is NewAWSSecretSource; tests and other secret
// stores can supply their own. Implementations must not put the secret's
// value in their errors.
type SecretSource interface {
	SecretString(ctx context.Context, secretID string) (string, error)
}

// AWSSecretSource is the SecretSource backed by AWS Secrets Manager. It
// reads SecretString values with GetSecretValue. It is safe for concurrent
// use. It does no caching of its own: the Manager caches what it reads
// (DB_SECRET_CACHE_TTL).
type AWSSecretSource struct {
	client *secretsmanager.Client
}

// NewAWSSecretSource loads the AWS configuration the standard way
// (config.LoadDefaultConfig: environment, shared files, IMDS, ...) for
// region and returns a Secrets Manager source. An empty region leaves the
// choice to the SDK (AWS_REGION, AWS_DEFAULT_REGION, the shared config);
// if it finds none, this is an error. optFns are passed to
// LoadDefaultConfig after the region, so they can override it.
//
// The SDK's standard endpoint override works unchanged: set
// AWS_ENDPOINT_URL_SECRETS_MANAGER (or AWS_ENDPOINT_URL) to reach a VPC
// endpoint or a stand-in. Request and response body logging is always
// switched off, whatever the options say, because the response body is
// the secret.
func NewAWSSecretSource(ctx context.Context, region string, optFns ...func(*config.LoadOptions) error) (*AWSSecretSource, error) {
	var opts []func(*config.LoadOptions) error
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	opts = append(opts, optFns...)
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("dbmanager: load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("dbmanager: no AWS region for Secrets Manager: set AWS_REGION")
	}
	cfg.ClientLogMode = withoutBodyLogging(cfg.ClientLogMode)
	client := secretsmanager.NewFromConfig(cfg, func(o *secretsmanager.Options) {
		o.ClientLogMode = withoutBodyLogging(o.ClientLogMode)
	})
	return &AWSSecretSource{client: client}, nil
}

// withoutBodyLogging clears the SDK log modes that would print a secret.
func withoutBodyLogging(m aws.ClientLogMode) aws.ClientLogMode {
	return m &^ (aws.LogResponseWithBody | aws.LogRequestWithBody | aws.LogResponseEventMessage | aws.LogRequestEventMessage)
}

// SecretString returns the SecretString of the current version of
// secretID. A missing secret wraps ErrSecretNotFound; a secret stored as
// SecretBinary, or with no value, wraps ErrMalformedSecret. Errors name the
// secret but never contain its value.
func (s *AWSSecretSource) SecretString(ctx context.Context, secretID string) (string, error) {
	if strings.TrimSpace(secretID) == "" {
		return "", errors.New("dbmanager: empty secret name")
	}
	out, err := s.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(secretID)})
	if err != nil {
		var de *smithy.DeserializationError
		if errors.As(err, &de) {
			// Its Snapshot field holds part of the response body, which is
			// the secret: keep neither it nor the decoder's message.
			return "", fmt.Errorf("dbmanager: get secret %q: the Secrets Manager response could not be parsed", secretID)
		}
		var nf *types.ResourceNotFoundException
		if errors.As(err, &nf) {
			return "", fmt.Errorf("dbmanager: get secret %q: %w: %w", secretID, ErrSecretNotFound, err)
		}
		return "", fmt.Errorf("dbmanager: get secret %q: %w", secretID, err)
	}
	if out.SecretString == nil {
		if out.SecretBinary != nil {
			return "", fmt.Errorf("dbmanager: secret %q holds binary data (SecretBinary); a database secret must be a SecretString holding JSON: %w", secretID, ErrMalformedSecret)
		}
		return "", fmt.Errorf("dbmanager: secret %q has no SecretString value: %w", secretID, ErrMalformedSecret)
	}
	return *out.SecretString, nil
}

// Secret holds a sensitive string (a password or a connection string that
// may carry one). Printing a Secret with any fmt verb, logging it with slog
// or encoding it as JSON shows "REDACTED" (or "" when empty); only Reveal
// returns the value. The value sits behind a pointer, so even a reflective
// print of a struct that holds a Secret in an unexported field shows an
// address, never the text.
type Secret struct{ p *string }

// NewSecret wraps s. NewSecret("") is the empty (unset) Secret.
func NewSecret(s string) Secret {
	if s == "" {
		return Secret{}
	}
	return Secret{p: &s}
}

// Reveal returns the secret value. Use it only to hand the value to the
// code that needs it (a driver), never to print it.
func (s Secret) Reveal() string {
	if s.p == nil {
		return ""
	}
	return *s.p
}

// IsSet reports whether the secret is non-empty.
func (s Secret) IsSet() bool { return s.p != nil && *s.p != "" }

// String returns "REDACTED" for a set secret and "" for an empty one.
func (s Secret) String() string {
	if s.IsSet() {
		return "REDACTED"
	}
	return ""
}

// GoString keeps %#v from showing the value.
func (s Secret) GoString() string { return fmt.Sprintf("dbmanager.Secret(%q)", s.String()) }

// Format makes every fmt verb print String.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, s.GoString())
		return
	}
	fmt.Fprint(f, s.String())
}

// LogValue keeps the value out of slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON encodes the redacted form.
func (s Secret) MarshalJSON() ([]byte, error) { return fmt.Appendf(nil, "%q", s.String()), nil }

// MarshalText encodes the redacted form (used by encoding/xml, slog, ...).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
