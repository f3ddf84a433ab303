package credentials

import (
	"context"
	"fmt"
	"log/slog"
)

// Credentials are a database login and, where the source gives them, the
// server's address. A secret, the AWS_DB_* variables or DATABASE_URL
// provide them. Printing Credentials (with any fmt verb or slog) never
// shows the password.
type Credentials struct {
	Username string
	Password string
	Host     string
	Port     int // 0: not given
	DBName   string
	Engine   string // "postgres" in RDS secrets; informational
}

// String describes c without its password.
func (c Credentials) String() string {
	pw := ""
	if c.Password != "" {
		pw = " password=REDACTED"
	}
	return fmt.Sprintf("user=%q host=%q port=%d dbname=%q%s", c.Username, c.Host, c.Port, c.DBName, pw)
}

// GoString is String, so %#v does not show the password either.
func (c Credentials) GoString() string { return "dbmanager.Credentials{" + c.String() + "}" }

// Format makes every fmt verb (%v, %+v, %s, %q, ...) print String.
func (c Credentials) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, c.GoString())
		return
	}
	fmt.Fprint(f, c.String())
}

// LogValue keeps the password out of slog output.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("user", c.Username),
		slog.String("host", c.Host),
		slog.Int("port", c.Port),
		slog.String("dbname", c.DBName),
	)
}

// Source fetches the current value of a named secret (the root package's
// SecretSource: AWS Secrets Manager in practice, or what tests and other
// secret stores supply). Implementations must not put the secret's value
// in their errors.
type Source interface {
	SecretString(ctx context.Context, secretID string) (string, error)
}
