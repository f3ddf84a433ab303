package dbmanager

import "github.com/gatewaykit/dbmanager/internal/connstr"

// Redact returns dsn (a URL or key=value connection string) fit to show a
// person: the userinfo password, ?password= and ?sslpassword= query values
// and password = '...' pairs, in any spelling or case, are replaced by
// "xxxxx". A string it cannot parse is masked generously rather than shown.
func Redact(dsn string) string { return connstr.Redact(dsn) }
