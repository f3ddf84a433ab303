package dbmanager

import (
	"strings"
	"testing"
)

// TestOutageEndsOnlyWithACallStartedDuringIt: a write a dying primary
// still acknowledged, from a call that started before the first failure,
// does not end the outage (seen under a killed primary: "lost", "restored"
// 1 ms later, then "lost" again); a success of a call started during the
// outage does, once. A failure of a call that started before the outage
// ended does not open a new one.
func TestOutageEndsOnlyWithACallStartedDuringIt(t *testing.T) {
	m, logs := newTestManager(t, envConfig(t))
	down := &ConnectionError{Reason: ReasonNetwork}

	before := m.outage.Epoch()
	m.observePrimary(before, true, down)
	if !m.outage.Down() {
		t.Fatal("a lost connection did not mark the primary down")
	}
	m.observePrimary(before, true, nil) // in flight when the server died
	if !m.outage.Down() {
		t.Fatal("a call that started before the outage ended it")
	}
	during := m.outage.Epoch()
	m.observePrimary(during, true, down) // more failures of the same outage
	m.observePrimary(during, true, nil)
	if m.outage.Down() {
		t.Fatal("a success of a call started during the outage did not end it")
	}
	m.observePrimary(during, true, down) // a straggler, after the end
	if m.outage.Down() {
		t.Fatal("a straggler of the ended outage opened a new one")
	}
	out := logs.String()
	if n, r := strings.Count(out, "Primary database connection lost"), strings.Count(out, "Primary database connection restored"); n != 1 || r != 1 {
		t.Errorf("%d 'lost' and %d 'restored' lines for one outage; want one each:\n%s", n, r, out)
	}
}
