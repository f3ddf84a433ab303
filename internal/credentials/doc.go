// Package credentials supplies the database login of a connection: the
// username and password read from a secret (cached, fetched again once
// per TTL, and followed through a password rotation by retrying logins
// that fail authentication), or an RDS IAM token signed for the
// connection's host. Neither a password nor a token ever appears in its
// errors or logs.
//
// The root package wires it into its pools; users configure it through
// dbmanager.Config and never import it.
package credentials
