package credentials

import "errors"

// ErrSecretNotFound is wrapped by the error of a Source when the named
// secret does not exist (Secrets Manager's ResourceNotFoundException).
var ErrSecretNotFound = errors.New("dbmanager: secret not found")

// ErrMalformedSecret is wrapped by every error of ParseRDSSecret and by the
// error for a secret that holds binary data or no value at all. Such errors
// never contain the secret's contents.
var ErrMalformedSecret = errors.New("dbmanager: malformed secret")
