package evidence_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/cvault/cvault/internal/attest/snp"
	"github.com/cvault/cvault/internal/guest/evidence"
	"github.com/cvault/cvault/internal/sim"
	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
)

func platform(t *testing.T) *sim.Platform {
	p, err := sim.New(sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSimulatedProviderEndToEnd: guest evidence → MAA request → server parse → verify.
func TestSimulatedProviderEndToEnd(t *testing.T) {
	p := platform(t)
	runtime := []byte(`{"keys":[{"kid":"TpmEphemeralEncryptionKey","kty":"RSA"}]}`)
	var prov evidence.Provider = &evidence.Simulated{Platform: p}
	raw, err := prov.Evidence(context.Background(), evidence.ReportData(runtime))
	if err != nil {
		t.Fatal(err)
	}
	body, err := raw.Request(runtime, "123")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := snp.ParseRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	roots, _ := snp.ParseRoots(p.RootPEM(), true)
	v, err := snp.Verify(context.Background(), ev, snp.Options{ExtraRoots: roots})
	if err != nil {
		t.Fatalf("Verify = %v", err)
	}
	if !v.Simulated || !raw.Simulated || v.Nonce != "123" {
		t.Errorf("simulated %v/%v nonce %q", v.Simulated, raw.Simulated, v.Nonce)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := prov.Evidence(ctx, [64]byte{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v", err)
	}
}

// fakeQuotes stands in for the AMD secure processor behind configfs-tsm: it returns what
// GetRawQuote returns on hardware, the report followed by the certificate table.
type fakeQuotes struct {
	p *sim.Platform
}

func (f fakeQuotes) IsSupported() bool        { return true }
func (f fakeQuotes) Product() *spb.SevProduct { return abi.DefaultSevProduct() }
func (f fakeQuotes) GetRawQuote(rd [64]byte) ([]uint8, error) {
	report, chain, err := f.p.Report(sim.Options{ReportData: rd})
	if err != nil {
		return nil, err
	}
	table := abi.CertsFromProto(&spb.CertificateChain{VcekCert: chain.VCEK, AskCert: chain.ASK, ArkCert: chain.ARK,
		Extras: map[string][]byte{abi.ExtraPlatformInfoGUID: {1, 2, 3}}}).Marshal()
	return append(report, table...), nil
}

func TestDeviceParsesExtendedReport(t *testing.T) {
	p := platform(t)
	d := &evidence.Device{Quotes: fakeQuotes{p}}
	rd := [64]byte{1, 2, 3}
	raw, err := d.Evidence(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw.Report) != abi.ReportSize || !bytes.Equal(raw.Report[0x50:0x90], rd[:]) || len(raw.Certs.VCEK) == 0 || raw.Simulated {
		t.Fatalf("raw = report %d bytes, vcek %d bytes, simulated %v", len(raw.Report), len(raw.Certs.VCEK), raw.Simulated)
	}
}

// TestNewDeviceWithoutHardware documents what this machine (no SEV-SNP) yields.
func TestNewDeviceWithoutHardware(t *testing.T) {
	d, err := evidence.NewDevice()
	if err == nil {
		t.Skipf("SEV-SNP guest interface present (%T); hardware path not exercised by unit tests", d.Quotes)
	}
	if !errors.Is(err, evidence.ErrNoDevice) {
		t.Errorf("NewDevice = %v, want ErrNoDevice", err)
	}
}
