// Package evidence is the in-VM side of attestation (design §1 `cvault guest`, seed 002): it
// obtains SEV-SNP evidence binding caller-chosen REPORT_DATA, either from the real guest
// device (configfs-tsm or /dev/sev-guest, through go-sev-guest's client) or from the simulated
// platform, and renders it as MAA's SevSnpVm request.
package evidence

import (
	"context"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/cvault/cvault/internal/attest/snp"
	"github.com/cvault/cvault/internal/sim"
	"github.com/google/go-sev-guest/client"
)

// Raw is attestation evidence as the platform produced it.
type Raw struct {
	// Report is the 1184-byte ATTESTATION_REPORT.
	Report []byte
	// Certs are the certificates the host supplied with the report (may be empty: the
	// verifier then needs its KDS getter).
	Certs snp.Certs
	// Simulated is true when the evidence comes from the simulated platform.
	Simulated bool
}

// CertChainPEM renders Certs as MAA's VcekCertChain (endorsement key, intermediate, root).
func (r *Raw) CertChainPEM() []byte {
	var out []byte
	for _, der := range [][]byte{r.Certs.VCEK, r.Certs.VLEK, r.Certs.ASK, r.Certs.ASVK, r.Certs.ARK} {
		if len(der) > 0 {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
		}
	}
	return out
}

// Request renders the SevSnpVm request body for r with its runtime data and nonce.
func (r *Raw) Request(runtimeData []byte, nonce string) ([]byte, error) {
	return snp.Request{Report: r.Report, CertChain: r.CertChainPEM(), RuntimeData: runtimeData, Nonce: nonce}.Marshal()
}

// ReportData is MAA's binding of runtime data: SHA-256 in the first half, zeros after.
func ReportData(runtimeData []byte) [64]byte {
	var rd [64]byte
	sum := sha256.Sum256(runtimeData)
	copy(rd[:], sum[:])
	return rd
}

// Provider yields evidence binding reportData.
type Provider interface {
	Evidence(ctx context.Context, reportData [64]byte) (*Raw, error)
}

var (
	_ Provider = (*Simulated)(nil)
	_ Provider = (*Device)(nil)
)

// Simulated is a Provider backed by the simulated SEV-SNP platform.
type Simulated struct {
	Platform *sim.Platform
	// Options are the guest properties; ReportData is overwritten per call.
	Options sim.Options
}

// Evidence returns a simulated report binding reportData.
func (s *Simulated) Evidence(ctx context.Context, reportData [64]byte) (*Raw, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.Platform == nil {
		return nil, errors.New("evidence: simulated provider without a platform")
	}
	o := s.Options
	o.ReportData = reportData
	report, chain, err := s.Platform.Report(o)
	if err != nil {
		return nil, fmt.Errorf("evidence: simulated report: %w", err)
	}
	return &Raw{Report: report, Simulated: true,
		Certs: snp.Certs{VCEK: chain.VCEK, VLEK: chain.VLEK, ASK: chain.ASK, ASVK: chain.ASVK, ARK: chain.ARK}}, nil
}

// ErrNoDevice is returned by NewDevice on machines without an SEV-SNP guest interface.
var ErrNoDevice = errors.New("evidence: no SEV-SNP guest device (neither configfs-tsm nor /dev/sev-guest)")

// Device is a Provider backed by the real SEV-SNP guest interface. It asks for the extended
// report, so the host's VCEK/VLEK chain comes along when the host provisioned it.
//
// Only the parsing of what the device returns is unit-tested (with a fake QuoteProvider);
// talking to configfs-tsm or /dev/sev-guest needs SEV-SNP hardware.
type Device struct {
	// Quotes is go-sev-guest's quote provider; NewDevice picks configfs-tsm, then the ioctl.
	Quotes client.QuoteProvider
}

// NewDevice opens the platform's SEV-SNP guest interface.
func NewDevice() (*Device, error) {
	qp, err := client.GetQuoteProvider()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoDevice, err)
	}
	return &Device{Quotes: qp}, nil
}

// Evidence asks the AMD secure processor for a report binding reportData.
func (d *Device) Evidence(ctx context.Context, reportData [64]byte) (*Raw, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	raw, err := d.Quotes.GetRawQuote(reportData)
	if err != nil {
		return nil, fmt.Errorf("evidence: SEV-SNP guest request: %w", err)
	}
	ev, err := snp.ParseRaw(raw)
	if err != nil {
		return nil, fmt.Errorf("evidence: device output: %w", err)
	}
	return &Raw{Report: ev.Report, Certs: ev.Certs}, nil
}
