package pgtest

import (
	"errors"
	"fmt"
	"os"
)

// errNotConfigured is returned by a source that was not asked for (for
// example TEST_DATABASE_URL unset); it is left out of "not available"
// reasons.
var errNotConfigured = errors.New("not configured")

// source is one place the shared server of [URL] can come from.
type source struct {
	name string // for messages
	open func() (*sharedServer, error)
}

// sharedServer is a server that [URL] makes fresh databases on.
type sharedServer struct {
	host   *dbHost
	server *Server      // non-nil when pgtest started it from local binaries
	stop   func() error // non-nil when something else must be ended at exit
	source string       // for Source()
}

// sharedSources are the sources of the shared server, in order of
// preference: TEST_DATABASE_URL, the local binaries, a Docker container.
func sharedSources() []source {
	return []source{
		{name: DatabaseURLEnv, open: openExternal},
		{name: "local binaries", open: openLocal},
		{name: "Docker", open: func() (*sharedServer, error) { return openContainer(probeDocker) }},
	}
}

// pickSource opens the first source that works. When none does, the error
// names each source tried and why it failed.
func pickSource(sources []source) (*sharedServer, error) {
	var reasons []error
	for _, src := range sources {
		s, err := src.open()
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errNotConfigured) {
			reasons = append(reasons, fmt.Errorf("%s: %w", src.name, err))
		}
	}
	if len(reasons) == 0 {
		return nil, errors.New("no source of PostgreSQL configured")
	}
	return nil, errors.Join(reasons...)
}

// openExternal uses the server named by TEST_DATABASE_URL.
func openExternal() (*sharedServer, error) {
	raw := os.Getenv(DatabaseURLEnv)
	if raw == "" {
		return nil, errNotConfigured
	}
	host, err := externalHost(raw)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %s unusable, trying the other sources: %v\n", DatabaseURLEnv, err)
		return nil, err
	}
	return &sharedServer{host: host, source: DatabaseURLEnv}, nil
}

// openLocal starts a server from the local PostgreSQL binaries.
func openLocal() (*sharedServer, error) {
	env, err := localEnvironment()
	if err != nil {
		return nil, err
	}
	s, err := newServer(env, serverConfig{})
	if err != nil {
		return nil, err
	}
	if err := s.start(true); err != nil {
		s.destroy()
		return nil, err
	}
	return &sharedServer{host: &s.host, server: s, source: "local binaries in " + env.binDir}, nil
}

// openContainer starts a PostgreSQL container when probe says a Docker
// engine answers; otherwise it says why not without starting anything.
func openContainer(probe func() error) (*sharedServer, error) {
	if err := probe(); err != nil {
		return nil, fmt.Errorf("no Docker engine answered: %w", err)
	}
	return startContainer()
}
