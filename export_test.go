package dbmanager

// Unexported functions the external tests (package dbmanager_test) need.

// ClassifyConnectErrorForTest is classifyConnectError, for readme_test.go's
// samples of the errors the README quotes.
var ClassifyConnectErrorForTest = classifyConnectError

// WithExplicitOfForTest is cfg with from's record of which variables the
// environment set, so readme_test.go can compare two configurations on
// their values alone.
func WithExplicitOfForTest(cfg, from Config) Config {
	cfg.explicit = from.explicit
	return cfg
}
