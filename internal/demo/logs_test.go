package demo

import (
	"regexp"
	"strings"
	"testing"
)

// Tokens (JWTs, release JWSs), client and managed-identity secrets and key
// material must never reach the server log (style §6). A demo run handles
// every kind of them, so its log is the place to look.
var secretShapes = []*regexp.Regexp{
	regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}`),                               // JWT / JWS
	regexp.MustCompile(`(?i)(client_secret|clientsecret|x-identity-header|authorization)\s*[=:]`), // secret-bearing fields
	regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----`),                                      // PEM keys
	regexp.MustCompile(`"(d|k|p|q|dp|dq|qi|key_hsm)"\s*:`),                                        // private JWK members
}

func assertNoSecretsLogged(t *testing.T, logs string) {
	t.Helper()
	if !strings.Contains(logs, "msg=request") {
		t.Fatalf("the server log is empty or not captured; the check would prove nothing:\n%.500s", logs)
	}
	for _, re := range secretShapes {
		if m := re.FindString(logs); m != "" {
			t.Errorf("the server log contains a secret-shaped value %q (pattern %s)", m[:min(len(m), 24)], re)
		}
	}
}
