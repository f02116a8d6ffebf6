package attesthttp_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-tdx-guest/testing/testdata"

	"github.com/cvault/cvault/internal/app"
	"github.com/cvault/cvault/internal/attest/snp"
	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/cvaulttest"
	"github.com/cvault/cvault/internal/sim"
)

var simPlatform = sync.OnceValues(func() (*sim.Platform, error) { return sim.New(sim.Config{}) })

func platform(t testing.TB) *sim.Platform {
	t.Helper()
	p, err := simPlatform()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tokens stands in for the identity service: the bearer token names the principal.
type tokens struct {
	mu sync.Mutex
	m  map[string]*authn.Principal
}

func (tk *tokens) Authenticate(_ context.Context, token string, _ []string) (*authn.Principal, error) {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if p, ok := tk.m[token]; ok {
		return p, nil
	}
	return nil, authn.ErrInvalidToken
}

// start boots cvault; trustSim passes the simulated root as `--trust-sim-root` does.
func start(t testing.TB, trustSim bool, opts ...cvaulttest.Option) *cvaulttest.Server {
	t.Helper()
	tk := &tokens{m: map[string]*authn.Principal{}}
	opts = append(opts, cvaulttest.WithConfig(func(c *app.Config) {
		c.Authenticator = tk
		if trustSim {
			c.SimulatedRootsPEM = platform(t).RootPEM()
		}
	}))
	srv := cvaulttest.Start(t, opts...)
	tk.mu.Lock()
	tk.m["admin"] = &authn.Principal{TenantID: srv.App.Bootstrap.TenantID, ObjectID: srv.App.Bootstrap.AdminObjectID, Type: authn.ServicePrincipal}
	tk.m["other"] = &authn.Principal{TenantID: srv.App.Bootstrap.TenantID, ObjectID: "00000000-0000-0000-0000-0000000000aa", Type: authn.ServicePrincipal}
	tk.mu.Unlock()
	return srv
}

type resp struct {
	Status int
	Body   []byte
}

func (r resp) token(t testing.TB) string {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	var out struct{ Token string }
	if err := json.Unmarshal(r.Body, &out); err != nil || out.Token == "" {
		t.Fatalf("no token in %s", r.Body)
	}
	return out.Token
}

type cloudError struct {
	Error struct {
		Code, Message string
		InnerError    struct{ Code string } `json:"innererror"`
	} `json:"error"`
}

func (r resp) cloudError(t testing.TB) cloudError {
	t.Helper()
	var e cloudError
	if err := json.Unmarshal(r.Body, &e); err != nil || e.Error.Code == "" {
		t.Fatalf("status %d, not a CloudError: %s", r.Status, r.Body)
	}
	return e
}

func do(t testing.TB, srv *cvaulttest.Server, method, path, bearer, body string) resp {
	t.Helper()
	// Servers sharing a store share the base URL; address this one's own listener.
	_, port, _ := net.SplitHostPort(srv.App.Addr().String())
	req, err := http.NewRequestWithContext(context.Background(), method, "https://localhost:"+port+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := srv.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{res.StatusCode, b}
}

const runtimeJSON = `{"keys":[{"kid":"TpmEphemeralEncryptionKey","kty":"RSA","key_ops":["encrypt"],"e":"AQAB","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}]}`

// evidence returns a SevSnpVm request body for a simulated report with o and runtime data.
func evidence(t testing.TB, o sim.Options, runtime string) ([]byte, []byte) {
	t.Helper()
	if runtime != "" {
		sum := sha256.Sum256([]byte(runtime))
		copy(o.ReportData[:], sum[:])
	}
	raw, chain, err := platform(t).Report(o)
	if err != nil {
		t.Fatal(err)
	}
	body, err := snp.Request{Report: raw, CertChain: chain.PEM(), RuntimeData: []byte(runtime), Nonce: "n-42"}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return body, raw
}

// verifyToken checks tok with golang-jwt against the keys of the instance's /certs only.
func verifyToken(t testing.TB, srv *cvaulttest.Server, instance, tok string) jwt.MapClaims {
	t.Helper()
	r := do(t, srv, "GET", "/attestation/"+instance+"/certs", "", "")
	if r.Status != http.StatusOK {
		t.Fatalf("certs: %d %s", r.Status, r.Body)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(r.Body, &set); err != nil {
		t.Fatal(err)
	}
	issuer := srv.URL + "/attestation/" + instance
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(tok, claims, func(tk *jwt.Token) (any, error) {
		if tk.Header["jku"] != issuer+"/certs" {
			return nil, fmt.Errorf("jku %v", tk.Header["jku"])
		}
		keys := set.Key(fmt.Sprint(tk.Header["kid"]))
		if len(keys) != 1 {
			return nil, fmt.Errorf("kid %v not in /certs", tk.Header["kid"])
		}
		return keys[0].Key.(*rsa.PublicKey), nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(issuer), jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	if err != nil {
		t.Fatalf("token does not verify against /certs: %v", err)
	}
	return claims
}

const attestPath = "/attestation/%s/attest/SevSnpVm?api-version=2022-08-01"

func attest(t testing.TB, srv *cvaulttest.Server, instance string, body []byte) resp {
	t.Helper()
	return do(t, srv, "POST", fmt.Sprintf(attestPath, instance), "", string(body))
}

func TestAttestSimulatedEvidence(t *testing.T) {
	srv := start(t, true)
	var meas [48]byte
	meas[0] = 0xaa
	body, raw := evidence(t, sim.Options{Measurement: meas, GuestSVN: 7}, runtimeJSON)
	// The sidecar's spelling and api-version.
	r := do(t, srv, "POST", "/attestation/default/attest/SevSnpVM?api-version=2020-10-01", "", string(body))
	claims := verifyToken(t, srv, "default", r.token(t))

	report, err := snp.ParseRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"x-ms-attestation-type":           "sevsnpvm",
		"x-ms-compliance-status":          "azure-compliant-cvm",
		"x-cvault-simulated":              true,
		"x-ms-sevsnpvm-launchmeasurement": hex.EncodeToString(meas[:]),
		"x-ms-sevsnpvm-reportdata":        hex.EncodeToString(raw[0x50:0x90]),
		"x-ms-sevsnpvm-guestsvn":          float64(7),
		"x-ms-sevsnpvm-vmpl":              float64(0),
		"x-ms-sevsnpvm-is-debuggable":     false,
		"x-ms-sevsnpvm-reportid":          hex.EncodeToString(raw[0x140:0x160]),
		"nonce":                           "n-42",
		"x-ms-ver":                        "1.0",
	}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("claim %s = %#v, want %#v", k, claims[k], v)
		}
	}
	if len(report.Report) != len(raw) {
		t.Errorf("ParseRaw kept %d of %d bytes", len(report.Report), len(raw))
	}
	rt, _ := claims["x-ms-runtime"].(map[string]any)
	if keys, _ := rt["keys"].([]any); len(keys) != 1 {
		t.Errorf("x-ms-runtime = %v, want the runtime data with one key", claims["x-ms-runtime"])
	}
	if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat != 8*3600 {
		t.Errorf("lifetime %v s, want 8 h", exp-iat)
	}

	md := do(t, srv, "GET", "/attestation/default/.well-known/openid-configuration", "", "")
	var meta struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(md.Body, &meta); err != nil || meta.Issuer != srv.URL+"/attestation/default" || meta.JWKSURI != meta.Issuer+"/certs" {
		t.Errorf("openid-configuration = %d %s", md.Status, md.Body)
	}
	if r := do(t, srv, "GET", "/attestation/nope/certs", "", ""); r.Status != http.StatusNotFound {
		t.Errorf("unknown instance: %d %s", r.Status, r.Body)
	}
}

func TestAlwaysChecksRefuse(t *testing.T) {
	trusting := start(t, true)
	untrusting := start(t, false)
	good, _ := evidence(t, sim.Options{}, runtimeJSON)

	flipped := func() []byte {
		_, raw := evidence(t, sim.Options{}, runtimeJSON)
		raw[0x90] ^= 1 // a measurement bit, inside the signed part
		_, chain, err := platform(t).Report(sim.Options{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := snp.Request{Report: raw, CertChain: chain.PEM(), RuntimeData: []byte(runtimeJSON)}.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()
	otherRuntime, _ := evidence(t, sim.Options{}, `{"keys":[]}`)
	var swapped map[string]any
	if err := json.Unmarshal(otherRuntime, &swapped); err != nil {
		t.Fatal(err)
	}
	var goodMap map[string]any
	if err := json.Unmarshal(good, &goodMap); err != nil {
		t.Fatal(err)
	}
	swapped["runtimeData"] = goodMap["runtimeData"] // report binds other runtime data
	wrongData, _ := json.Marshal(swapped)

	for _, tc := range []struct {
		name  string
		srv   *cvaulttest.Server
		body  []byte
		check string
	}{
		{"bad signature", trusting, flipped, snp.CheckSignature},
		{"sim root not trusted without --trust-sim-root", untrusting, good, snp.CheckChain},
		{"wrong report data", trusting, wrongData, snp.CheckReportData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := attest(t, tc.srv, "default", tc.body)
			if r.Status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", r.Status, r.Body)
			}
			e := r.cloudError(t)
			if e.Error.Code != "EvidenceVerificationFailed" || e.Error.InnerError.Code != tc.check || !strings.Contains(e.Error.Message, "expected") {
				t.Errorf("error = %+v, want EvidenceVerificationFailed/%s with expected vs seen", e.Error, tc.check)
			}
		})
	}
	if r := attest(t, trusting, "default", []byte(`{"report":"!!"}`)); r.Status != http.StatusBadRequest || r.cloudError(t).Error.Code != "BadRequest" {
		t.Errorf("malformed request: %d %s", r.Status, r.Body)
	}
	if r := attest(t, trusting, "default", good); r.Status != http.StatusOK {
		t.Errorf("good evidence after refusals: %d %s", r.Status, r.Body)
	}
	m := do(t, trusting, "GET", "/metrics", "", "")
	for _, c := range []string{snp.CheckSignature, snp.CheckReportData} {
		line := fmt.Sprintf(`cvault_attestation_refusals_total{check=%q,type="SevSnpVm"} 1`, c)
		if !strings.Contains(string(m.Body), line) {
			t.Errorf("metrics lack %s", line)
		}
	}
}

func TestPolicyChecks(t *testing.T) {
	srv := start(t, true)
	var good, bad [48]byte
	good[0], bad[0] = 1, 2
	strict := fmt.Sprintf(`{"policy":{"maxVmpl":0,"allowSmt":true,"minimumTcb":{"bootloader":3,"tee":0,"snpFirmware":8,"microcode":100},"referenceValues":{"measurements":[%q]}},"tokenLifetimeSeconds":600}`,
		hex.EncodeToString(good[:]))
	if r := do(t, srv, "PUT", "/attestation/strict?api-version=2022-08-01", "other", strict); r.Status != http.StatusForbidden {
		t.Fatalf("non-admin PUT: %d %s", r.Status, r.Body)
	}
	if r := do(t, srv, "PUT", "/attestation/strict?api-version=2022-08-01", "admin", strict); r.Status != http.StatusCreated {
		t.Fatalf("PUT strict: %d %s", r.Status, r.Body)
	}
	// A permissive instance with the same reference values: describes, never refuses.
	refs := fmt.Sprintf(`{"policy":{"allowDebug":true,"allowMigrationAgent":true,"allowSmt":true,"maxVmpl":3,"allowReferenceMismatch":true,"referenceValues":{"measurements":[%q]}}}`, hex.EncodeToString(good[:]))
	if r := do(t, srv, "PUT", "/attestation/refs?api-version=2022-08-01", "admin", refs); r.Status != http.StatusCreated {
		t.Fatalf("PUT refs: %d %s", r.Status, r.Body)
	}
	if r := do(t, srv, "PUT", "/attestation/bad?api-version=2022-08-01", "admin", `{"policy":{"referenceValues":{"measurements":["abcd"]}}}`); r.Status != http.StatusBadRequest {
		t.Errorf("PUT with a short measurement: %d %s", r.Status, r.Body)
	}

	highTCB := kds.TCBParts{BlSpl: 9, TeeSpl: 9, SnpSpl: 30, UcodeSpl: 250}
	lowTCB := kds.TCBParts{BlSpl: 1, SnpSpl: 1, UcodeSpl: 1}
	ok, _ := evidence(t, sim.Options{Measurement: good, TCB: highTCB, SMT: true}, runtimeJSON)
	r := attest(t, srv, "strict", ok)
	if c := verifyToken(t, srv, "strict", r.token(t)); c["exp"].(float64)-c["iat"].(float64) != 600 {
		t.Errorf("strict lifetime: %v", c["exp"].(float64)-c["iat"].(float64))
	}

	for _, tc := range []struct {
		name       string
		o          sim.Options
		check      string
		compliance bool // on the permissive instances
	}{
		{"debug on", sim.Options{Measurement: good, TCB: highTCB, Debug: true}, "debug", false},
		{"low TCB", sim.Options{Measurement: good, TCB: lowTCB}, "minimum-tcb", true},
		{"wrong measurement", sim.Options{Measurement: bad, TCB: highTCB}, "measurement", false},
		{"VMPL 2", sim.Options{Measurement: good, TCB: highTCB, VMPL: 2}, "vmpl", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, _ := evidence(t, tc.o, runtimeJSON)
			r := attest(t, srv, "strict", body)
			if r.Status != http.StatusBadRequest {
				t.Fatalf("strict: status %d: %s", r.Status, r.Body)
			}
			if e := r.cloudError(t); e.Error.Code != "PolicyEvaluationFailed" || e.Error.InnerError.Code != tc.check {
				t.Errorf("strict: error %+v, want PolicyEvaluationFailed/%s", e.Error, tc.check)
			}
			// `default` has no reference values, so a wrong measurement alone stays compliant there.
			for _, inst := range []string{"default", "refs"} {
				want := tc.compliance || (inst == "default" && tc.check == "measurement")
				c := verifyToken(t, srv, inst, attest(t, srv, inst, body).token(t))
				if got := c["x-ms-compliance-status"] == "azure-compliant-cvm"; got != want {
					t.Errorf("%s: compliant = %v, want %v", inst, got, want)
				}
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	srv := start(t, true)
	body, _ := evidence(t, sim.Options{}, runtimeJSON)
	old := attest(t, srv, "default", body).token(t)
	if r := do(t, srv, "POST", "/attestation/default/rotateKey?api-version=2022-08-01", "admin", ""); r.Status != http.StatusOK {
		t.Fatalf("rotate: %d %s", r.Status, r.Body)
	}
	fresh := attest(t, srv, "default", body).token(t)
	kid := func(tok string) string {
		p, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
		if err != nil {
			t.Fatal(err)
		}
		return p.Header["kid"].(string)
	}
	if kid(old) == kid(fresh) {
		t.Fatal("rotation kept the signing key")
	}
	verifyToken(t, srv, "default", old) // the old kid stays in /certs
	verifyToken(t, srv, "default", fresh)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(do(t, srv, "GET", "/attestation/default/certs", "", "").Body, &set); err != nil || len(set.Keys) != 2 || set.Keys[0].KeyID != kid(fresh) {
		t.Errorf("certs after rotation: %+v (%v)", set.Keys, err)
	}
	r := do(t, srv, "GET", "/attestation?api-version=2022-08-01", "admin", "")
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"currentKeyId":"`+kid(fresh)) {
		t.Errorf("list: %d %s", r.Status, r.Body)
	}
}

func TestTwoServersOnePostgres(t *testing.T) {
	pg := cvaulttest.Postgres(t)
	a := start(t, true, pg.Option())
	b := start(t, true, pg.Option(), cvaulttest.WithConfig(func(c *app.Config) { c.URL = a.URL }))
	body, _ := evidence(t, sim.Options{}, runtimeJSON)
	verifyToken(t, b, "default", attest(t, a, "default", body).token(t))
	// A rotation on b is used by a at once (the store's change counter drops a's cache).
	if r := do(t, b, "POST", "/attestation/default/rotateKey?api-version=2022-08-01", "admin", ""); r.Status != http.StatusOK {
		t.Fatalf("rotate on b: %d %s", r.Status, r.Body)
	}
	tok := attest(t, a, "default", body).token(t)
	verifyToken(t, b, "default", tok)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(do(t, b, "GET", "/attestation/default/certs", "", "").Body, &set); err != nil || len(set.Keys) != 2 {
		t.Fatalf("certs on b: %v %v", set.Keys, err)
	}
	p, _, _ := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if p.Header["kid"] != set.Keys[0].KeyID {
		t.Errorf("a signed with %v, b's current key is %s", p.Header["kid"], set.Keys[0].KeyID)
	}
}

func TestTdxRefused(t *testing.T) {
	srv := start(t, false)
	q := bytes.Clone(testdata.RawQuote)
	q[10] ^= 1 // a header byte under the quote signature
	body := fmt.Sprintf(`{"quote":%q}`, base64.RawURLEncoding.EncodeToString(q))
	r := do(t, srv, "POST", "/attestation/default/attest/TdxVm?api-version=2023-04-01-preview", "", body)
	if r.Status != http.StatusBadRequest {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	if e := r.cloudError(t); e.Error.Code != "EvidenceVerificationFailed" || e.Error.InnerError.Code != "signature" {
		t.Errorf("error %+v", e.Error)
	}
}
