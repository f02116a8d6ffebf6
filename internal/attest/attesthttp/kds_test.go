package attesthttp_test

import (
	"crypto/sha256"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"

	"github.com/cvault/cvault/internal/app"
	"github.com/cvault/cvault/internal/attest/kdscache/kdstest"
	"github.com/cvault/cvault/internal/attest/snp"
	"github.com/cvault/cvault/internal/cvaulttest"
	"github.com/cvault/cvault/internal/sim"
)

// bareEvidence is a SevSnpVm request carrying the report only, no certificates (as a guest
// without the extended report sends it), and the VCEK that signed it.
func bareEvidence(t testing.TB) ([]byte, *x509.Certificate) {
	t.Helper()
	var o sim.Options
	sum := sha256.Sum256([]byte(runtimeJSON))
	copy(o.ReportData[:], sum[:])
	raw, chain, err := platform(t).Report(o)
	if err != nil {
		t.Fatal(err)
	}
	body, err := snp.Request{Report: raw, RuntimeData: []byte(runtimeJSON)}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	vcek, err := x509.ParseCertificate(chain.VCEK)
	if err != nil {
		t.Fatal(err)
	}
	return body, vcek
}

func withKDS(fake *kdstest.Server) cvaulttest.Option {
	return cvaulttest.WithConfig(func(c *app.Config) { c.AMDKDS, c.KDSClient = true, fake.Client() })
}

// TestAMDKDSTwoServers: with --amd-kds, evidence without its VCEK verifies through the (fake)
// KDS; a second server on the same PostgreSQL database uses the cached VCEK and CRL.
func TestAMDKDSTwoServers(t *testing.T) {
	pg := cvaulttest.Postgres(t)
	fake := kdstest.Start(t, platform(t))
	a := start(t, true, pg.Option(), withKDS(fake))
	b := start(t, true, pg.Option(), withKDS(fake), cvaulttest.WithConfig(func(c *app.Config) { c.URL = a.URL }))
	body, _ := bareEvidence(t)
	verifyToken(t, a, "default", attest(t, a, "default", body).token(t))
	verifyToken(t, a, "default", attest(t, a, "default", body).token(t))
	if got := [2]int{fake.PathRequests("vcek"), fake.PathRequests("crl")}; got != [2]int{1, 1} {
		t.Fatalf("KDS requests (vcek, crl) after two attestations on a = %v, want [1 1]", got)
	}
	verifyToken(t, b, "default", attest(t, b, "default", body).token(t))
	if n := fake.Requests(); n != 2 {
		t.Errorf("KDS served %d requests, want 2 (server b must use the store)", n)
	}
}

func TestAMDKDSRevokedVCEK(t *testing.T) {
	fake := kdstest.Start(t, platform(t))
	body, vcek := bareEvidence(t)
	fake.Revoke(vcek.SerialNumber)
	srv := start(t, true, withKDS(fake))
	r := attest(t, srv, "default", body)
	if r.Status != http.StatusBadRequest {
		t.Fatalf("status %d, want 400: %s", r.Status, r.Body)
	}
	if e := r.cloudError(t); e.Error.InnerError.Code != snp.CheckRevoked {
		t.Errorf("innererror %q, want %q (%s)", e.Error.InnerError.Code, snp.CheckRevoked, e.Error.Message)
	}
}

// TestOfflineMissingVCEK: without --amd-kds nothing is fetched and the refusal says what to do.
func TestOfflineMissingVCEK(t *testing.T) {
	srv := start(t, true)
	body, _ := bareEvidence(t)
	r := attest(t, srv, "default", body)
	e := r.cloudError(t)
	if r.Status != http.StatusBadRequest || e.Error.InnerError.Code != snp.CheckCertificate || !strings.Contains(e.Error.Message, "--amd-kds") {
		t.Errorf("status %d, innererror %q, message %q; want 400, %q, a hint at --amd-kds", r.Status, e.Error.InnerError.Code, e.Error.Message, snp.CheckCertificate)
	}
}
