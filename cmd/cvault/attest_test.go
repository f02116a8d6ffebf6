package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cvault/cvault/internal/app"
	"github.com/cvault/cvault/internal/cvaulttest"
)

// TestSimReportIntoAttest pipes `cvault sim report` into an attest call on a server started
// with the output of `cvault sim root`, then lets `cvault guest attest --sim` do it all.
func TestSimReportIntoAttest(t *testing.T) {
	dir := t.TempDir()
	rootFile := filepath.Join(dir, "sim-root.pem")
	if out, err := run(t, "sim", "root", "--out", rootFile); err != nil {
		t.Fatalf("sim root: %v %s", err, out)
	}
	roots, err := os.ReadFile(rootFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := cvaulttest.Start(t, cvaulttest.WithConfig(func(c *app.Config) { c.SimulatedRootsPEM = roots }))
	runtimeFile := filepath.Join(dir, "runtime.json")
	if err := os.WriteFile(runtimeFile, []byte(`{"keys":[{"kid":"k","kty":"RSA","e":"AQAB","n":"sXch"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	meas := strings.Repeat("ab", 48)
	body, err := run(t, "sim", "report", "--runtime-data", runtimeFile, "--measurement", meas, "--nonce", "cli-1")
	if err != nil {
		t.Fatalf("sim report: %v %s", err, body)
	}
	res, err := srv.HTTPClient.Post(srv.URL+"/attestation/default/attest/SevSnpVm?api-version=2022-08-01", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var tr struct{ Token string }
	if err := json.NewDecoder(res.Body).Decode(&tr); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("attest: %d %v", res.StatusCode, err)
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tr.Token, claims); err != nil {
		t.Fatal(err)
	}
	if claims["x-ms-sevsnpvm-launchmeasurement"] != meas || claims["nonce"] != "cli-1" || claims["x-cvault-simulated"] != true {
		t.Errorf("claims: %v", claims)
	}

	out, err := run(t, "guest", "attest", "--sim", "--maa", srv.URL+"/attestation/default", "--ca", srv.App.TLSFiles.CAPath, "--runtime-data", runtimeFile)
	if err != nil {
		t.Fatalf("guest attest: %v\n%s", err, out)
	}
	for _, want := range []string{`"x-cvault-simulated": true`, `"x-ms-compliance-status": "azure-compliant-cvm"`, `"kid": "k"`, `"iss": "` + srv.URL + `/attestation/default"`} {
		if !strings.Contains(out, want) {
			t.Errorf("guest attest output lacks %s:\n%s", want, out)
		}
	}
}

func TestGuestAttestRefusedWithoutSimRoot(t *testing.T) {
	srv := cvaulttest.Start(t)
	_, err := run(t, "guest", "attest", "--sim", "--maa", srv.URL+"/attestation/default", "--ca", srv.App.TLSFiles.CAPath)
	if err == nil || !strings.Contains(err.Error(), "EvidenceVerificationFailed") || !strings.Contains(err.Error(), `"chain"`) {
		t.Fatalf("err = %v, want a chain refusal", err)
	}
}

func TestSimReportFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--measurement", "abcd"},
		{"--report-data", "zz"},
		{"--vmpl", "4"},
		{"--product", "Naples"},
		{"--report-data", "00", "--runtime-data", "x"},
	} {
		if _, err := run(t, append([]string{"sim", "report"}, args...)...); err == nil {
			t.Errorf("sim report %v: no error", args)
		}
	}
}
