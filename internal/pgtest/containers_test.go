package pgtest

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fakeSource records that it was opened and answers with err, or with a
// server named name when err is nil.
func fakeSource(name string, err error, opened *[]string) source {
	return source{name: name, open: func() (*sharedServer, error) {
		*opened = append(*opened, name)
		if err != nil {
			return nil, err
		}
		return &sharedServer{source: name}, nil
	}}
}

func TestSharedSourcesOrder(t *testing.T) {
	var names []string
	for _, s := range sharedSources() {
		names = append(names, s.name)
	}
	want := []string{DatabaseURLEnv, "local binaries", "Docker"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("sources = %q, want %q", names, want)
	}
}

// The first source that works wins and later ones are not even tried, so
// Docker is asked only when TEST_DATABASE_URL and the local binaries fail.
func TestPickSourceFirstThatWorks(t *testing.T) {
	noBinaries := errors.New("no binaries")
	cases := []struct {
		name              string
		external, binary  error
		docker            error
		wantSource        string
		wantOpened        []string
		wantErrSubstrings []string
	}{
		{name: "url set", wantSource: DatabaseURLEnv,
			wantOpened: []string{DatabaseURLEnv}},
		{name: "url unset, binaries", external: errNotConfigured, wantSource: "local binaries",
			wantOpened: []string{DatabaseURLEnv, "local binaries"}},
		{name: "url unset, no binaries, docker", external: errNotConfigured, binary: noBinaries, wantSource: "Docker",
			wantOpened: []string{DatabaseURLEnv, "local binaries", "Docker"}},
		{name: "url unusable, no binaries, docker", external: errors.New("refused"), binary: noBinaries, wantSource: "Docker",
			wantOpened: []string{DatabaseURLEnv, "local binaries", "Docker"}},
		{name: "nothing", external: errNotConfigured, binary: noBinaries, docker: errors.New("no Docker engine answered"),
			wantOpened:        []string{DatabaseURLEnv, "local binaries", "Docker"},
			wantErrSubstrings: []string{"local binaries: no binaries", "Docker: no Docker engine answered"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var opened []string
			s, err := pickSource([]source{
				fakeSource(DatabaseURLEnv, tc.external, &opened),
				fakeSource("local binaries", tc.binary, &opened),
				fakeSource("Docker", tc.docker, &opened),
			})
			if !reflect.DeepEqual(opened, tc.wantOpened) {
				t.Errorf("opened %q, want %q", opened, tc.wantOpened)
			}
			if tc.wantSource != "" {
				if err != nil || s.source != tc.wantSource {
					t.Fatalf("picked %+v, %v; want %s", s, err, tc.wantSource)
				}
				return
			}
			if err == nil {
				t.Fatalf("picked %+v, want an error", s)
			}
			for _, sub := range tc.wantErrSubstrings {
				if !strings.Contains(err.Error(), sub) {
					t.Errorf("error %q does not say %q", err, sub)
				}
			}
			if strings.Contains(err.Error(), DatabaseURLEnv) {
				t.Errorf("error %q mentions the unset %s", err, DatabaseURLEnv)
			}
		})
	}
}

// Without a Docker engine the container source says so and starts nothing.
func TestContainerSourceWithoutDocker(t *testing.T) {
	probed := false
	_, err := openContainer(func() error {
		probed = true
		return errors.New("Cannot connect to the Docker daemon")
	})
	if !probed || err == nil || !strings.Contains(err.Error(), "no Docker engine answered: Cannot connect") {
		t.Fatalf("probed=%v err=%v", probed, err)
	}
}

// The real probe answers within its timeout (plus a generous margin for a
// loaded machine) whether or not a Docker engine exists, so machines
// without Docker skip quickly instead of hanging.
func TestProbeDockerIsBounded(t *testing.T) {
	start := time.Now()
	err := probeDocker()
	took := time.Since(start)
	if limit := dockerProbeTimeout + 25*time.Second; took > limit {
		t.Fatalf("probeDocker took %v, more than %v", took, limit)
	}
	if err == nil {
		t.Logf("a Docker engine answered in %v", took)
		return
	}
	if err.Error() == "" {
		t.Fatal("probeDocker failed without a reason")
	}
	t.Logf("no Docker engine (%v): %v", took, err)
}

// A check that ignores its context (a socket that accepts and never
// answers) still ends the probe at the timeout.
func TestProbeWithinTimesOut(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	err := probeWithin(20*time.Millisecond, func(context.Context) error {
		<-release
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "no answer within") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	err = probeWithin(time.Minute, func(context.Context) error { panic("boom") })
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("panicking check: err = %v", err)
	}
}

func TestContainerImage(t *testing.T) {
	t.Setenv(ImageEnv, "")
	if got := containerImage(); got != "postgres:15-alpine" {
		t.Fatalf("default image = %q", got)
	}
	t.Setenv(ImageEnv, "registry.example/postgres:17")
	if got := containerImage(); got != "registry.example/postgres:17" {
		t.Fatalf("%s image = %q", ImageEnv, got)
	}
}

func TestScrubHidesSecret(t *testing.T) {
	const pw = "S3cret-Visible-If-Leaked"
	base := context.DeadlineExceeded
	err := scrub(errors.Join(errors.New("env POSTGRES_PASSWORD="+pw), base), pw)
	if strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "POSTGRES_PASSWORD=xxxxx") {
		t.Fatalf("scrubbed message = %q", err)
	}
	if !errors.Is(err, base) {
		t.Fatal("scrub lost the wrapped error")
	}
	if scrub(nil, pw) != nil {
		t.Fatal("scrub(nil) != nil")
	}
}
