package kvhttp_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/cvault/cvault/internal/app"
	"github.com/cvault/cvault/internal/cvaulttest"
	"github.com/cvault/cvault/internal/guest/skr"
	relpolicy "github.com/cvault/cvault/internal/release/policy"
	"github.com/cvault/cvault/internal/sim"
)

const azureMAA = "https://sharedweu.weu.attest.azure.net"

func releaseErr(t *testing.T, err error) (int, string) {
	t.Helper()
	if err == nil {
		return http.StatusOK, ""
	}
	var re *skr.ReleaseError
	if !errors.As(err, &re) {
		t.Fatalf("not a release refusal: %v", err)
	}
	return re.Status, re.InnerCode
}

// TestReleasePolicyTable runs policies × tokens through the release endpoint
// with the guest agent: every operator, nesting, an aliased Azure authority,
// an authority nobody trusts.
func TestReleasePolicyTable(t *testing.T) {
	e := newEnv(t, withSim(t), cvaulttest.WithConfig(func(c *app.Config) {
		c.AuthorityAliases = map[string]string{azureMAA + "/": "default"}
	}))
	c := e.createVault(t, "pol-kv", false)
	own := e.srv.App.Attestation.Issuer("default")
	tokens := map[string]string{"normal": attest(t, e.srv, sim.Options{}), "debug": attest(t, e.srv, sim.Options{Debug: true})}
	one := func(auth, group string) []byte {
		return []byte(`{"version":"1.0.0","anyOf":[{"authority":"` + auth + `",` + group + `}]}`)
	}
	agent := &skr.Agent{Client: e.srv.HTTPClient, Roots: e.srv.CAPool, Credential: e.cred}
	for _, tc := range []struct {
		name     string
		policy   []byte
		want     map[string]int
		wantCode string // inner code of the refusals
	}{
		{"cvm-default", relpolicy.CVMDefault(own), map[string]int{"normal": 200, "debug": 403}, "ReleasePolicyNotSatisfied"},
		{"azure-default-aliased", relpolicy.CVMDefault(azureMAA), map[string]int{"normal": 200, "debug": 403}, "ReleasePolicyNotSatisfied"},
		{"nested-any-all", one(own, `"anyOf":[{"allOf":[{"claim":"x-ms-sevsnpvm-is-debuggable","equals":"true"},{"claim":"x-ms-sevsnpvm-vmpl","equals":0}]},{"claim":"x-ms-attestation-type","equals":"tdxvm"}]`),
			map[string]int{"normal": 403, "debug": 200}, "ReleasePolicyNotSatisfied"},
		{"notEquals", one(own, `"allOf":[{"claim":"x-ms-sevsnpvm-is-debuggable","notEquals":false}]`), map[string]int{"normal": 403, "debug": 200}, "ReleasePolicyNotSatisfied"},
		{"ordering-exists", one(own, `"allOf":[{"claim":"x-ms-sevsnpvm-guestsvn","greaterOrEquals":0},{"claim":"x-ms-sevsnpvm-guestsvn","less":"100"},{"claim":"x-ms-sevsnpvm-reportid","exists":true},{"claim":"x-ms-runtime.keys","exists":true}]`),
			map[string]int{"normal": 200, "debug": 200}, ""},
		{"greater-fails", one(own, `"allOf":[{"claim":"x-ms-sevsnpvm-guestsvn","greater":5}]`), map[string]int{"normal": 403, "debug": 403}, "ReleasePolicyNotSatisfied"},
		{"refuse-simulated", one(own, `"allOf":[{"claim":"x-cvault-simulated","equals":"false"}]`), map[string]int{"normal": 403, "debug": 403}, "ReleasePolicyNotSatisfied"},
		{"unaliased-azure", relpolicy.CVMDefault("https://sharedeus.eus.attest.azure.net"), map[string]int{"normal": 403, "debug": 403}, "UntrustedAttestationAuthority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub := exportableKey(t, c, tc.name, tc.policy, nil)
			for tokName, want := range tc.want {
				out, err := agent.ReleaseWithToken(t.Context(), e.srv.VaultURL("pol-kv")+"/keys/"+tc.name, ephemeral(t), tokens[tokName])
				status, code := releaseErr(t, err)
				if status != want || (want == 403 && code != tc.wantCode) {
					t.Errorf("%s token: %d %s (%v), want %d %s", tokName, status, code, err, want, tc.wantCode)
				}
				if err == nil && (out.Key.RSA == nil || string(out.Key.RSA.N.Bytes()) != string(pub.N)) {
					t.Errorf("%s token: released key does not match", tokName)
				}
			}
		})
	}
}

// TestReleaseSingleUseAuditAndTamper: a single-use key refuses a replayed
// token; the audit log has one entry per attempt; the agent refuses a
// tampered JWS; malformed requests are 400.
func TestReleaseSingleUseAuditAndTamper(t *testing.T) {
	e := newEnv(t, withSim(t))
	c := e.createVault(t, "once-kv", false)
	own := e.srv.App.Attestation.Issuer("default")
	exportableKey(t, c, "once", relpolicy.CVMDefault(own), map[string]*string{"cvault-release-single-use": to.Ptr("true")})
	exportableKey(t, c, "many", relpolicy.CVMDefault(own), nil)
	tok := attest(t, e.srv, sim.Options{})
	agent := &skr.Agent{Client: e.srv.HTTPClient, Roots: e.srv.CAPool, Credential: e.cred}
	ctx := t.Context()
	once := e.srv.VaultURL("once-kv") + "/keys/once"

	if _, err := agent.ReleaseWithToken(ctx, once, ephemeral(t), tok); err != nil {
		t.Fatalf("first release: %v", err)
	}
	_, err := agent.ReleaseWithToken(ctx, once, ephemeral(t), tok)
	if s, code := releaseErr(t, err); s != 403 || code != "AttestationTokenReplayed" {
		t.Errorf("replay: %d %s (%v)", s, code, err)
	}
	// Without the tag a token may release repeatedly, as on Azure.
	for range 2 {
		if _, err := agent.ReleaseWithToken(ctx, e.srv.VaultURL("once-kv")+"/keys/many", ephemeral(t), tok); err != nil {
			t.Fatalf("repeat release of an ordinary key: %v", err)
		}
	}
	// Malformed requests.
	for _, tc := range []struct{ target, enc string }{{"not-a-jwt", ""}, {tok, "A256KW"}, {"", ""}} {
		_, err := c.Release(ctx, "once", "", azkeys.ReleaseParameters{TargetAttestationToken: to.Ptr(tc.target),
			Algorithm: to.Ptr(azkeys.KeyEncryptionAlgorithm(tc.enc))}, nil)
		if code := respCode(err); code != "BadParameter" {
			t.Errorf("target %.10q enc %q: %v", tc.target, tc.enc, err)
		}
	}
	// Audit: 2 + 3 attempts on "once", 2 on "many".
	for key, want := range map[string][2]int{"once": {1, 4}, "many": {2, 0}} {
		entries := audit(t, e, "once-kv", key)
		var got [2]int
		for _, en := range entries {
			if en.Decision == "allowed" {
				got[0]++
			} else {
				got[1]++
			}
			if en.Caller.ObjectID != e.srv.App.Bootstrap.AdminObjectID || en.Reason == "" {
				t.Errorf("entry %+v", en)
			}
			if en.Decision == "allowed" && (en.Measurement == "" || en.ReportID == "" || en.Version == "") {
				t.Errorf("allowed entry lacks claims: %+v", en)
			}
		}
		if got != want {
			t.Errorf("%s: audit allowed/refused = %v, want %v", key, got, want)
		}
	}

	// Tampered JWS: flip a payload byte; the agent must refuse it.
	value, err := agent.CallRelease(ctx, e.srv.VaultURL("once-kv")+"/keys/many", tok)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(value, ".")
	b := []byte(parts[1])
	b[10] ^= 1
	tampered := parts[0] + "." + string(b) + "." + parts[2]
	host := strings.TrimPrefix(e.srv.VaultURL("once-kv"), "https://")
	if _, err := skr.VerifyRelease(tampered, e.srv.CAPool, host, time.Now()); !errors.Is(err, skr.ErrReleaseJWS) {
		t.Errorf("tampered payload: %v", err)
	}
	if _, err := skr.VerifyRelease(value, e.srv.CAPool, "other-kv.vault.localhost", time.Now()); !errors.Is(err, skr.ErrReleaseJWS) {
		t.Errorf("wrong vault host: %v", err)
	}
	if _, err := skr.VerifyRelease(value, e.srv.CAPool, host, time.Now()); err != nil {
		t.Errorf("untampered: %v", err)
	}
}

type auditEntry struct {
	Decision, Reason, Version, Measurement, ReportID string
	Caller                                           struct{ ObjectID string }
}

func audit(t *testing.T, e *env, vault, key string) []auditEntry {
	t.Helper()
	at, err := e.cred.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{skr.VaultScope}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", e.srv.VaultURL(vault)+"/keys/"+key+"/releaseaudit?api-version=7.4", nil)
	req.Header.Set("Authorization", "Bearer "+at.Token)
	res, err := e.srv.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var page struct{ Value []auditEntry }
	if res.StatusCode != 200 {
		t.Fatalf("releaseaudit: %s", res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(&page); err != nil {
		t.Fatal(err)
	}
	return page.Value
}

// TestReleaseTrustedExternalAuthority: an MAA-compatible authority the
// operator trusts (--trusted-authority) is verified through its OpenID
// metadata and JWKS; expired tokens and unknown kids are refused.
func TestReleaseTrustedExternalAuthority(t *testing.T) {
	signKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	var iss string
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": iss + "/certs"})
		case "/certs":
			json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &signKey.PublicKey, KeyID: "k1", Algorithm: "RS256"}}})
		default:
			http.NotFound(w, r)
		}
	}))
	defer ts.Close()
	iss = ts.URL
	e := newEnv(t, cvaulttest.WithConfig(func(c *app.Config) {
		c.TrustedAuthorities = []string{iss}
		c.AuthorityClient = ts.Client()
	}))
	c := e.createVault(t, "ext-kv", false)
	exportableKey(t, c, "ext", []byte(`{"version":"1.0.0","anyOf":[{"authority":"`+iss+`/","allOf":[{"claim":"sdk-test","equals":"true"}]}]}`), nil)
	rd, err := ephemeral(t).RuntimeData()
	if err != nil {
		t.Fatal(err)
	}
	var runtime map[string]any
	json.Unmarshal(rd, &runtime)
	mint := func(kid string, exp time.Time) string {
		sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: signKey, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			t.Fatal(err)
		}
		// The SDK mock attestation service's token shape (wire §2.6).
		tok, err := jwt.Signed(sg).Claims(map[string]any{"iss": iss + "/", "iat": time.Now().Unix(), "exp": exp.Unix(),
			"sdk-test": true, "x-ms-inittime": map[string]any{}, "x-ms-runtime": runtime}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	agent := &skr.Agent{Client: e.srv.HTTPClient, Roots: e.srv.CAPool, Credential: e.cred}
	kid := e.srv.VaultURL("ext-kv") + "/keys/ext"
	for _, tc := range []struct {
		name, tok string
		want      int
		code      string
	}{
		{"valid", mint("k1", time.Now().Add(time.Hour)), 200, ""},
		{"expired", mint("k1", time.Now().Add(-time.Hour)), 403, "AttestationNotVerified"},
		{"unknown kid", mint("k2", time.Now().Add(time.Hour)), 403, "AttestationNotVerified"},
	} {
		_, err := agent.ReleaseWithToken(t.Context(), kid, ephemeral(t), tc.tok)
		if s, code := releaseErr(t, err); s != tc.want || code != tc.code {
			t.Errorf("%s: %d %s (%v), want %d %s", tc.name, s, code, err, tc.want, tc.code)
		}
	}
}
