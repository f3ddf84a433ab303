package credentials

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"
	"github.com/jackc/pgx/v5"
)

// IAM token lifetimes. RDS accepts a token for 15 minutes after it was
// signed, and checks it only at login.
const (
	IAMTokenLifetime       = 15 * time.Minute
	DefaultIAMRefreshAfter = 10 * time.Minute // a cached token is replaced after this long
)

// ErrIAMRequiresTLS is returned by IAM.BeforeConnect for a connection
// that could send the token without TLS, or over TLS that does not verify
// the server.
var ErrIAMRequiresTLS = errors.New("dbmanager: IAM authentication requires a verified TLS connection (sslmode=verify-full, e.g. AWS_REQUIRE_SSL=true: the embedded RDS roots verify an RDS endpoint without AWS_SSLROOTCERT)")

// IAM supplies RDS IAM authentication tokens as connection passwords
// (AWS_DB_IAM_AUTH=true). A token is signed locally with the AWS
// credentials of the default chain for one host:port and user; it is
// cached and replaced after RefreshAfter (10 minutes by default, well
// before its 15-minute expiry), with at most one refresh in flight per
// endpoint and user. Tokens never appear in its errors or logs. Safe for
// concurrent use.
type IAM struct {
	region       string
	creds        aws.CredentialsProvider
	refreshAfter time.Duration
	now          func() time.Time
	build        func(ctx context.Context, endpoint, region, user string, creds aws.CredentialsProvider) (string, error)

	mu     sync.Mutex
	tokens map[iamTokenKey]*iamToken
}

type iamTokenKey struct{ endpoint, user string }

// iamToken is a cached token, or one being built (done not yet closed).
type iamToken struct {
	done     chan struct{}
	token    string
	signedAt time.Time
	err      error
}

// IAMOption configures IAM.
type IAMOption func(*IAM)

// WithIAMRefreshAfter sets how long a token is reused before a new one is
// signed. Values outside (0, 14 min] keep the default of 10 minutes, so a
// token is never used close to its expiry.
func WithIAMRefreshAfter(d time.Duration) IAMOption {
	return func(a *IAM) {
		if d > 0 && d <= IAMTokenLifetime-time.Minute {
			a.refreshAfter = d
		}
	}
}

// WithIAMCredentials signs tokens with creds instead of the credentials
// of the default chain.
func WithIAMCredentials(creds aws.CredentialsProvider) IAMOption {
	return func(a *IAM) {
		if creds != nil {
			a.creds = creds
		}
	}
}

// withIAMClock replaces time.Now (tests).
func withIAMClock(now func() time.Time) IAMOption {
	return func(a *IAM) { a.now = now }
}

// NewIAM returns an IAM for region that signs with the credentials
// of config.LoadDefaultConfig (environment, shared files, web identity,
// ECS/EC2 roles). region is required: it must be the database's region.
// loadOpts are passed to LoadDefaultConfig; options configure the rest.
func NewIAM(ctx context.Context, region string, loadOpts []func(*config.LoadOptions) error, options ...IAMOption) (*IAM, error) {
	a := &IAM{
		region:       region,
		refreshAfter: DefaultIAMRefreshAfter,
		now:          time.Now,
		build: func(ctx context.Context, endpoint, region, user string, creds aws.CredentialsProvider) (string, error) {
			return auth.BuildAuthToken(ctx, endpoint, region, user, creds)
		},
		tokens: make(map[iamTokenKey]*iamToken),
	}
	for _, o := range options {
		o(a)
	}
	if a.creds == nil {
		opts := append([]func(*config.LoadOptions) error{config.WithRegion(region)}, loadOpts...)
		cfg, err := config.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("dbmanager: IAM authentication: load AWS configuration: %w", err)
		}
		if a.region == "" {
			a.region = cfg.Region
		}
		a.creds = cfg.Credentials
	}
	if a.region == "" {
		return nil, errors.New("dbmanager: IAM authentication needs the database's AWS region: set AWS_REGION")
	}
	if a.creds == nil {
		return nil, errors.New("dbmanager: IAM authentication: no AWS credentials found")
	}
	return a, nil
}

// IAMEndpoint is the host:port a token is signed for; port 0 means 5432.
// IPv6 literals are bracketed.
func IAMEndpoint(host string, port int) string {
	if port == 0 {
		port = 5432
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// Token returns a token for user at host:port (port 0 means 5432): the
// cached one while it is younger than RefreshAfter, else a newly signed
// one. Concurrent callers for the same endpoint and user share one
// signing. The error never contains a token.
func (a *IAM) Token(ctx context.Context, host string, port int, user string) (string, error) {
	if host == "" || user == "" {
		return "", errors.New("dbmanager: IAM authentication needs a host and a user")
	}
	key := iamTokenKey{endpoint: IAMEndpoint(host, port), user: user}
	for {
		a.mu.Lock()
		t := a.tokens[key]
		if t != nil {
			select {
			case <-t.done:
				if t.err == nil && a.now().Sub(t.signedAt) < a.refreshAfter {
					a.mu.Unlock()
					return t.token, nil
				}
				t = nil // expired or failed: sign again
			default: // being signed: wait below
			}
		}
		if t == nil {
			t = &iamToken{done: make(chan struct{})}
			a.tokens[key] = t
			a.mu.Unlock()
			a.sign(ctx, key, t)
		} else {
			a.mu.Unlock()
			select {
			case <-t.done:
			case <-ctx.Done():
				return "", fmt.Errorf("dbmanager: waiting for an IAM token: %w", ctx.Err())
			}
		}
		if t.err == nil {
			return t.token, nil
		}
		if isContextError(t.err) && ctx.Err() == nil {
			continue // the signer's context ended, not ours
		}
		return "", t.err
	}
}

// sign builds the token for key into t and closes t.done.
func (a *IAM) sign(ctx context.Context, key iamTokenKey, t *iamToken) {
	signedAt := a.now()
	token, err := a.build(ctx, key.endpoint, a.region, key.user, a.creds)
	if err != nil {
		// The SDK's messages carry no token; keep them for the cause.
		err = fmt.Errorf("dbmanager: build IAM token for %s@%s: %w", key.user, key.endpoint, err)
	}
	a.mu.Lock()
	t.token, t.signedAt, t.err = token, signedAt, err
	if err != nil {
		delete(a.tokens, key)
	}
	a.mu.Unlock()
	close(t.done)
}

// BeforeConnect is a pgxpool.Config.BeforeConnect hook: it refuses a
// connection that could carry the token in plaintext or to an unverified
// server (ErrIAMRequiresTLS) or that lists several hosts (a token is
// valid for one host:port), then sets Password to a token for the
// connection's host, port and user.
func (a *IAM) BeforeConnect(ctx context.Context, cc *pgx.ConnConfig) error {
	if err := CheckIAMTLS(cc); err != nil {
		return err
	}
	for _, fb := range cc.Fallbacks {
		if fb.Host != cc.Host || fb.Port != cc.Port {
			// The one token is signed for cc's host:port; another host
			// would reject it.
			return errors.New("dbmanager: IAM authentication supports a single host:port, not a multi-host connection string")
		}
	}
	token, err := a.Token(ctx, cc.Host, int(cc.Port), cc.User)
	if err != nil {
		return err
	}
	cc.Password = token
	return nil
}

// CheckIAMTLS returns ErrIAMRequiresTLS unless every address cc may try
// (its host and its fallbacks, e.g. the plaintext fallback of
// sslmode=prefer) uses TLS that verifies the server's certificate.
func CheckIAMTLS(cc *pgx.ConnConfig) error {
	if !verifiedTLS(cc.TLSConfig) {
		return ErrIAMRequiresTLS
	}
	for _, fb := range cc.Fallbacks {
		if !verifiedTLS(fb.TLSConfig) {
			return ErrIAMRequiresTLS
		}
	}
	return nil
}

// verifiedTLS reports whether t is TLS that checks the server certificate:
// Go's own verification, or pgx's verify-ca callback.
func verifiedTLS(t *tls.Config) bool {
	if t == nil {
		return false
	}
	return !t.InsecureSkipVerify || t.VerifyPeerCertificate != nil || t.VerifyConnection != nil
}
