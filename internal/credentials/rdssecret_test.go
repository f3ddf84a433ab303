package credentials

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
)

// smTestPassword is recognisable so a test can assert it never leaks.
const smTestPassword = "Sekr3t-p@ss:w/rd?#%&=-LEAKCHECK"

func TestParseRDSSecret(t *testing.T) {
	pw, _ := json.Marshal(smTestPassword)
	tests := []struct {
		name string
		in   string
		want Credentials
	}{
		{"full RDS secret, numeric port", `{"username":"app","password":` + string(pw) + `,"engine":"postgres","host":"db.example.com","port":5432,"dbname":"gw","dbInstanceIdentifier":"db-1"}`,
			Credentials{Username: "app", Password: smTestPassword, Host: "db.example.com", Port: 5432, DBName: "gw", Engine: "postgres"}},
		{"string port", `{"username":"app","password":"x","host":"h","port":"6543"}`,
			Credentials{Username: "app", Password: "x", Host: "h", Port: 6543}},
		{"port as float without fraction", `{"username":"app","password":"x","port":5432.0}`,
			Credentials{Username: "app", Password: "x", Port: 5432}},
		{"extra keys ignored", `{"username":"app","password":"x","masterarn":"arn:...","dbClusterIdentifier":"c","proxy":{"a":[1,2]}}`,
			Credentials{Username: "app", Password: "x"}},
		{"rds-managed master secret", `{"username":"postgres","password":` + string(pw) + `}`,
			Credentials{Username: "postgres", Password: smTestPassword}},
		{"nulls are absent", `{"username":"app","password":"x","host":null,"port":null,"dbname":null}`,
			Credentials{Username: "app", Password: "x"}},
		{"empty string port", `{"username":"app","password":"x","port":""}`,
			Credentials{Username: "app", Password: "x"}},
		{"surrounding whitespace", " \n{\"username\":\"app\",\"password\":\"x\"}\n",
			Credentials{Username: "app", Password: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRDSSecret(tt.in)
			if err != nil {
				t.Fatalf("ParseRDSSecret: %v", err)
			}
			if got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseRDSSecretMalformed(t *testing.T) {
	pw, _ := json.Marshal(smTestPassword)
	p := string(pw)
	tests := []struct {
		name, in, wantMsg string
	}{
		{"empty", "", "empty"},
		{"blank", "  \n", "empty"},
		{"not JSON", "password=" + smTestPassword, "not a JSON object"},
		{"truncated JSON", `{"username":"app","password":` + p, "not a JSON object"},
		{"JSON array", `["app",` + p + `]`, "not a JSON object"},
		{"JSON string", p, "not a JSON object"},
		{"missing password", `{"username":"app"}`, `no "password"`},
		{"empty password", `{"username":"app","password":""}`, `no "password"`},
		{"missing username", `{"password":` + p + `}`, `no "username"`},
		{"password not a string", `{"username":"app","password":12345678}`, `"password" must be a JSON string`},
		{"username not a string", `{"username":["app"],"password":` + p + `}`, `"username" must be a JSON string`},
		{"host not a string", `{"username":"app","password":` + p + `,"host":` + p[:len(p)-1] + `x"` + `,"host":7}`, `"host" must be a JSON string`},
		{"port not a number", `{"username":"app","password":` + p + `,"port":"` + smTestPassword[:6] + `"}`, `"port" must be a port number`},
		{"port out of range", `{"username":"app","password":` + p + `,"port":70000}`, `"port" must be a port number`},
		{"port zero", `{"username":"app","password":` + p + `,"port":0}`, `"port" must be a port number`},
		{"port negative string", `{"username":"app","password":` + p + `,"port":"-1"}`, `"port" must be a port number`},
		{"port fraction", `{"username":"app","password":` + p + `,"port":5432.5}`, `"port" must be a port number`},
		{"port object", `{"username":"app","password":` + p + `,"port":{"n":1}}`, `"port" must be a port number`},
		{"port bool", `{"username":"app","password":` + p + `,"port":true}`, `"port" must be a port number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRDSSecret(tt.in)
			if err == nil {
				t.Fatalf("ParseRDSSecret accepted a malformed secret: %v", got)
			}
			if !errors.Is(err, ErrMalformedSecret) {
				t.Errorf("error does not wrap ErrMalformedSecret: %v", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantMsg)
			}
			assertSecretAbsent(t, err.Error(), smTestPassword)
			if got != (Credentials{}) {
				t.Errorf("partial credentials returned with an error")
			}
		})
	}
}

// assertSecretAbsent fails if text contains secret or a recognisable piece of it.
// The failure message never repeats the text itself.
func assertSecretAbsent(t testing.TB, text, secret string) {
	t.Helper()
	for _, piece := range []string{secret, secret[:8], secret[len(secret)-8:]} {
		if strings.Contains(text, piece) {
			t.Errorf("output (%d bytes) contains the secret or a piece of it", len(text))
			return
		}
	}
}

// parseErrorPattern is the only shape a ParseRDSSecret error may have: a
// fixed message naming at most one of the known fields.
var parseErrorPattern = regexp.MustCompile(`^dbmanager: parse database secret: (the secret is empty|the secret is not a JSON object|the secret has no "(username|password)"|"(username|password|host|dbname|engine)" must be a JSON string|"port" must be a port number \(1-65535\)): dbmanager: malformed secret$`)

func FuzzParseRDSSecret(f *testing.F) {
	for _, seed := range []string{
		`{"username":"app","password":"pw-123456","host":"h","port":5432,"dbname":"d","engine":"postgres"}`,
		`{"username":"app","password":"pw-123456","port":"5432"}`,
		`{"username":"app","password":"pw-123456","port":"x5432"}`,
		`{"username":"app","password":"pw-123456","port":1e400}`,
		`{"username":"app","password":"pw-123456","port":-0}`,
		`{"username":"app","password":"\ud800"}`,
		`{"password":"pw-123456"`,
		`password=pw-123456`,
		``,
		`null`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ParseRDSSecret(in)
		if err != nil {
			if !parseErrorPattern.MatchString(err.Error()) {
				t.Fatalf("unexpected error shape (%d bytes)", len(err.Error()))
			}
			if c != (Credentials{}) {
				t.Fatal("credentials returned with an error")
			}
			return
		}
		if c.Username == "" || c.Password == "" {
			t.Fatal("accepted without username or password")
		}
		if c.Port < 0 || c.Port > 65535 {
			t.Fatalf("port %d out of range", c.Port)
		}
		if strings.Contains(c.String(), c.Password) && !strings.Contains(c.String(), "REDACTED") {
			t.Fatal("String shows the password")
		}
	})
}
