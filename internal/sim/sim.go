// Package sim is the simulated AMD SEV-SNP platform (design §1 `cvault sim`, §6): an AMD-shaped
// key chain ARK→ASK→VCEK (and ASK-sibling ASVK→VLEK) and spec-exact 1184-byte attestation reports
// signed by the simulated VCEK or VLEK. It lets the seed flows (seed 002: what SNP evidence proves)
// run on machines without SEV-SNP hardware. A verifier trusts it only when the operator passes
// the simulated root (RootPEM) explicitly, and every token minted from it says so.
//
// Determinism: the private keys are go-sev-guest's fixed test-only keys
// (github.com/google/go-sev-guest/testing/data, Apache-2.0), and the ARK/ASK/ASVK certificates
// are generated once and embedded (roots/*.pem, regenerated with `go test -run TestRootsGolden
// -update`), so RootPEM is byte-identical across runs and builds. RSA-PSS signatures are
// randomized, so runtime-issued VCEK/VLEK certificates differ between processes; they are not
// trust anchors, only their keys and names matter.
//
// We do not import go-sev-guest's `testing` package: it registers global std flags and keeps a
// shared, non-goroutine-safe math/rand source; the chain is built here with crypto/x509 using
// the KDS extensions go-sev-guest's verifier reads (package kds).
package sim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"embed"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/testing/data"
)

// ErrUnsupportedProduct is returned for product lines the simulator has no chain for.
var ErrUnsupportedProduct = errors.New("sim: unsupported product line")

// ProductLines lists the product lines the simulator can impersonate.
var productLines = []string{"Milan", "Genoa"}

// ProductLines returns the product lines the simulator can impersonate ("Milan", "Genoa").
func ProductLines() []string { return append([]string(nil), productLines...) }

// epoch is the fixed NotBefore of every simulated certificate, so chains are independent of
// the wall clock at creation.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	rootLifetime = 25 * 365 * 24 * time.Hour
	ekLifetime   = 25 * 365 * 24 * time.Hour
	// cspID names the simulated cloud service provider in VLEK certificates.
	cspID = "cvault-sim"
)

// DefaultTCB returns the TCB the simulated firmware runs at when Options.TCB is zero.
func DefaultTCB() kds.TCBParts { return kds.TCBParts{BlSpl: 4, TeeSpl: 0, SnpSpl: 22, UcodeSpl: 213} }

//go:embed roots/*.pem
var rootsFS embed.FS

// Config selects the simulated machine.
type Config struct {
	// ProductLine is "Milan" (default) or "Genoa".
	ProductLine string
	// Rand is the randomness for report IDs and signatures; nil means crypto/rand.
	Rand io.Reader
	// VCEKProductName overrides the product name in VCEK certificates; "" means
	// "<line>-B1". Some real Genoa VCEKs carry a bare "Genoa", which verifiers must handle.
	VCEKProductName string
}

// Platform is one simulated SEV-SNP machine. It is safe for concurrent use.
type Platform struct {
	line     string
	stepping uint32
	vcekName string
	rand     io.Reader
	ark      *x509.Certificate
	ask      *x509.Certificate
	asvk     *x509.Certificate
	chipID   [abi.ChipIDSize]byte

	mu    sync.Mutex
	vceks map[kds.TCBVersion]*x509.Certificate
	vleks map[kds.TCBVersion]*x509.Certificate
}

// New returns the simulated platform for cfg.
func New(cfg Config) (*Platform, error) {
	line := cfg.ProductLine
	if line == "" {
		line = "Milan"
	}
	raw, err := rootsFS.ReadFile("roots/" + line + ".pem")
	if err != nil {
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedProduct, line)
	}
	certs, err := parsePEMCerts(raw)
	if err != nil {
		return nil, fmt.Errorf("sim: embedded %s roots: %w", line, err)
	}
	p := &Platform{line: line, stepping: 1, rand: cfg.Rand, vcekName: cfg.VCEKProductName,
		vceks: map[kds.TCBVersion]*x509.Certificate{}, vleks: map[kds.TCBVersion]*x509.Certificate{}}
	if p.rand == nil {
		p.rand = rand.Reader
	}
	for _, c := range certs {
		switch c.Subject.CommonName {
		case "ARK-" + line:
			p.ark = c
		case "SEV-" + line:
			p.ask = c
		case "SEV-VLEK-" + line:
			p.asvk = c
		}
	}
	if p.ark == nil || p.ask == nil || p.asvk == nil {
		return nil, fmt.Errorf("sim: embedded %s roots incomplete", line)
	}
	p.chipID = sha512.Sum512([]byte("cvault simulated SEV-SNP chip " + line))
	return p, nil
}

// ProductLine returns the product line the platform impersonates.
func (p *Platform) ProductLine() string { return p.line }

// ChipID returns the simulated CHIP_ID (also the VCEK's HWID extension).
func (p *Platform) ChipID() [abi.ChipIDSize]byte { return p.chipID }

// RootPEM returns the ASK, ASVK and ARK certificates of the simulated platform as PEM, the file
// an operator passes to `serve --trust-sim-root`. It is the same for every run and build.
func (p *Platform) RootPEM() []byte {
	var out []byte
	for _, c := range []*x509.Certificate{p.ask, p.asvk, p.ark} {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// AllRootsPEM returns RootPEM of every simulated product line, concatenated.
func AllRootsPEM() ([]byte, error) {
	var out []byte
	for _, line := range productLines {
		raw, err := rootsFS.ReadFile("roots/" + line + ".pem")
		if err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
		out = append(out, raw...)
	}
	return out, nil
}

// Chain is the certificate chain that accompanies a simulated report (DER).
type Chain struct {
	VCEK, VLEK []byte // exactly one is set, by the report's signer
	ASK, ASVK  []byte
	ARK        []byte
}

// PEM renders the chain as MAA's VcekCertChain: endorsement key, intermediate, root.
func (c Chain) PEM() []byte {
	var out []byte
	for _, der := range [][]byte{c.VCEK, c.VLEK, c.ASK, c.ASVK, c.ARK} {
		if len(der) > 0 {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
		}
	}
	return out
}

// Options are the guest-visible and platform properties of one report. The zero value is a
// version-3, VMPL-0, non-debug, non-migratable, SMT-disallowed guest at DefaultTCB.
type Options struct {
	ReportData      [abi.ReportDataSize]byte
	Measurement     [abi.MeasurementSize]byte
	HostData        [abi.HostDataSize]byte
	FamilyID        [abi.FamilyIDSize]byte
	ImageID         [abi.ImageIDSize]byte
	IDKeyDigest     [abi.IDKeyDigestSize]byte
	AuthorKeyDigest [abi.AuthorKeyDigestSize]byte
	GuestSVN        uint32
	VMPL            uint32
	// Guest policy bits.
	Debug, MigrateMA, SMT bool
	// TCB is the platform TCB (reported = current = committed = launch); zero means DefaultTCB.
	TCB kds.TCBParts
	// Version is the report version, 2 or 3 (0 means 3). Version 3 carries the CPUID family,
	// model and stepping, so verifiers learn the product line from the report.
	Version uint32
	// VLEK signs with the simulated VLEK instead of the VCEK.
	VLEK bool
}

// Report returns a signed, byte-exact SEV-SNP ATTESTATION_REPORT for o and its certificate chain.
func (p *Platform) Report(o Options) ([]byte, Chain, error) {
	tcbParts := o.TCB
	if tcbParts == (kds.TCBParts{}) {
		tcbParts = DefaultTCB()
	}
	tcb, err := kds.ComposeTCBParts(tcbParts)
	if err != nil {
		return nil, Chain{}, fmt.Errorf("sim: tcb: %w", err)
	}
	version := o.Version
	if version == 0 {
		version = abi.ReportVersion3
	}
	if version != abi.ReportVersion2 && version != abi.ReportVersion3 {
		return nil, Chain{}, fmt.Errorf("sim: report version %d unsupported (2 or 3)", version)
	}
	signer := abi.VcekReportSigner
	if o.VLEK {
		signer = abi.VlekReportSigner
	}
	ek, key, err := p.endorsementKey(signer, tcb)
	if err != nil {
		return nil, Chain{}, err
	}

	r := make([]byte, abi.ReportSize)
	le32 := func(off int, v uint32) {
		r[off], r[off+1], r[off+2], r[off+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	}
	le64 := func(off int, v uint64) { le32(off, uint32(v)); le32(off+4, uint32(v>>32)) }
	le32(0x00, version)
	le32(0x04, o.GuestSVN)
	le64(0x08, abi.SnpPolicyToBytes(abi.SnpPolicy{ABIMajor: 1, ABIMinor: 55, SMT: o.SMT, MigrateMA: o.MigrateMA, Debug: o.Debug}))
	copy(r[0x10:], o.FamilyID[:])
	copy(r[0x20:], o.ImageID[:])
	le32(0x30, o.VMPL)
	le32(0x34, abi.SignEcdsaP384Sha384)
	le64(0x38, uint64(tcb)) // CURRENT_TCB
	var platformInfo uint64
	if o.SMT {
		platformInfo |= 1 // SMT_EN
	}
	le64(0x40, platformInfo)
	le32(0x48, abi.ComposeSignerInfo(abi.SignerInfo{SigningKey: signer}))
	copy(r[0x50:], o.ReportData[:])
	copy(r[0x90:], o.Measurement[:])
	copy(r[0xC0:], o.HostData[:])
	copy(r[0xE0:], o.IDKeyDigest[:])
	copy(r[0x110:], o.AuthorKeyDigest[:])
	if _, err := io.ReadFull(p.rand, r[0x140:0x160]); err != nil { // REPORT_ID
		return nil, Chain{}, fmt.Errorf("sim: report id: %w", err)
	}
	le64(0x180, uint64(tcb)) // REPORTED_TCB
	if version >= abi.ReportVersion3 {
		f, m, s := abi.FmsFromCpuid1Eax(p.cpuid())
		r[0x188], r[0x189], r[0x18A] = f, m, s
	}
	copy(r[0x1A0:], p.chipID[:])
	le64(0x1E0, uint64(tcb))                // COMMITTED_TCB
	r[0x1E8], r[0x1E9], r[0x1EA] = 3, 55, 1 // CURRENT_BUILD/MINOR/MAJOR
	r[0x1EC], r[0x1ED], r[0x1EE] = 3, 55, 1 // COMMITTED_*
	le64(0x1F0, uint64(tcb))                // LAUNCH_TCB

	digest := sha512.Sum384(abi.SignedComponent(r))
	sig, err := key.Sign(p.rand, digest[:], crypto.SHA384)
	if err != nil {
		return nil, Chain{}, fmt.Errorf("sim: sign report: %w", err)
	}
	var esig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(sig, &esig); err != nil {
		return nil, Chain{}, fmt.Errorf("sim: signature encoding: %w", err)
	}
	if err := abi.SetSignature(esig.R, esig.S, r); err != nil {
		return nil, Chain{}, fmt.Errorf("sim: %w", err)
	}
	chain := Chain{ARK: p.ark.Raw}
	if signer == abi.VcekReportSigner {
		chain.VCEK, chain.ASK = ek.Raw, p.ask.Raw
	} else {
		chain.VLEK, chain.ASVK = ek.Raw, p.asvk.Raw
	}
	return r, chain, nil
}

// cpuid is the CPUID[1].EAX (masked) of the simulated chip: model B1 of the product line.
func (p *Platform) cpuid() uint32 {
	prod, err := kds.ParseProductName(fmt.Sprintf("%s-B%d", p.line, p.stepping), abi.VcekReportSigner)
	if err != nil {
		return 0
	}
	return abi.MaskedCpuid1EaxFromSevProduct(prod)
}

// endorsementKey returns the VCEK or VLEK certificate for tcb (issued on first use, as AMD's KDS
// issues one VCEK per TCB) and its private key.
func (p *Platform) endorsementKey(signer abi.ReportSigner, tcb kds.TCBVersion) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cache, key, issuer, issuerKey := p.vceks, data.VCEKPrivateKey, p.ask, data.ASKPrivateKey
	if signer == abi.VlekReportSigner {
		cache, key, issuer, issuerKey = p.vleks, data.VLEKPrivateKey, p.asvk, data.ASVKPrivateKey
	}
	if c, ok := cache[tcb]; ok {
		return c, key, nil
	}
	tmpl := &x509.Certificate{
		SerialNumber:       new(big.Int).SetUint64(uint64(tcb) | 1),
		Subject:            amdName("SEV-"+signer.String(), "0"),
		SignatureAlgorithm: x509.SHA384WithRSAPSS,
		NotBefore:          epoch,
		NotAfter:           epoch.Add(ekLifetime),
		ExtraExtensions:    p.kdsExtensions(signer, kds.DecomposeTCBVersion(tcb)),
	}
	der, err := x509.CreateCertificate(p.rand, tmpl, issuer, key.Public(), issuerKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sim: issue %v: %w", signer, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("sim: parse %v: %w", signer, err)
	}
	cache[tcb] = c
	return c, key, nil
}

// kdsExtensions are the AMD KDS certificate extensions (KDS spec 57230 §3) that go-sev-guest's
// kds package reads: struct version, product name, TCB SPLs, and HWID (VCEK) or CSP ID (VLEK).
func (p *Platform) kdsExtensions(signer abi.ReportSigner, tcb kds.TCBParts) []pkix.Extension {
	must := func(b []byte, err error) []byte {
		if err != nil {
			panic(err) // marshalling fixed Go types cannot fail
		}
		return b
	}
	name := fmt.Sprintf("%s-B%d", p.line, p.stepping)
	if p.vcekName != "" {
		name = p.vcekName
	}
	if signer == abi.VlekReportSigner {
		name = p.line // VLEK product names carry no stepping
	}
	exts := []pkix.Extension{
		{Id: kds.OidStructVersion, Value: must(asn1.Marshal(0))},
		{Id: kds.OidProductName1, Value: must(asn1.MarshalWithParams(name, "ia5"))},
		{Id: kds.OidBlSpl, Value: must(asn1.Marshal(int(tcb.BlSpl)))},
		{Id: kds.OidTeeSpl, Value: must(asn1.Marshal(int(tcb.TeeSpl)))},
		{Id: kds.OidSnpSpl, Value: must(asn1.Marshal(int(tcb.SnpSpl)))},
		{Id: kds.OidSpl4, Value: must(asn1.Marshal(int(tcb.Spl4)))},
		{Id: kds.OidSpl5, Value: must(asn1.Marshal(int(tcb.Spl5)))},
		{Id: kds.OidSpl6, Value: must(asn1.Marshal(int(tcb.Spl6)))},
		{Id: kds.OidSpl7, Value: must(asn1.Marshal(int(tcb.Spl7)))},
		{Id: kds.OidUcodeSpl, Value: must(asn1.Marshal(int(tcb.UcodeSpl)))},
	}
	if signer == abi.VcekReportSigner {
		return append(exts, pkix.Extension{Id: kds.OidHwid, Value: must(asn1.Marshal(p.chipID[:]))})
	}
	return append(exts, pkix.Extension{Id: kds.OidCspID, Value: must(asn1.MarshalWithParams(cspID, "ia5"))})
}

// amdName is the subject/issuer shape AMD uses and go-sev-guest's verifier checks.
func amdName(cn, serial string) pkix.Name {
	return pkix.Name{
		Country:            []string{"US"},
		Locality:           []string{"Santa Clara"},
		Province:           []string{"CA"},
		Organization:       []string{"Advanced Micro Devices"},
		OrganizationalUnit: []string{"Engineering"},
		CommonName:         cn,
		SerialNumber:       serial,
	}
}

// generateRoots issues the ARK, ASK and ASVK certificates of a product line. Only the golden
// test calls it (to write roots/*.pem); runtime uses the embedded result.
func generateRoots(line string, rnd io.Reader) ([]*x509.Certificate, error) {
	const serial = "c7a5"
	arkName := amdName("ARK-"+line, serial)
	mk := func(subject pkix.Name, pub crypto.PublicKey, parent *x509.Certificate, crl string, usage x509.KeyUsage, sn int64) (*x509.Certificate, error) {
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(sn),
			Subject:               subject,
			Issuer:                arkName,
			SignatureAlgorithm:    x509.SHA384WithRSAPSS,
			NotBefore:             epoch,
			NotAfter:              epoch.Add(rootLifetime),
			KeyUsage:              usage,
			BasicConstraintsValid: true,
			IsCA:                  true,
			CRLDistributionPoints: []string{crl},
		}
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rnd, tmpl, parent, pub, data.ARKPrivateKey)
		if err != nil {
			return nil, err
		}
		return x509.ParseCertificate(der)
	}
	vcekCRL := kds.CrlLinkByKey(line, abi.VcekReportSigner)
	ark, err := mk(arkName, data.ARKPrivateKey.Public(), nil, vcekCRL, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, 0xc7a5)
	if err != nil {
		return nil, fmt.Errorf("ark: %w", err)
	}
	ask, err := mk(amdName("SEV-"+line, serial), data.ASKPrivateKey.Public(), ark, vcekCRL, x509.KeyUsageCertSign, 0xc7a6)
	if err != nil {
		return nil, fmt.Errorf("ask: %w", err)
	}
	asvk, err := mk(amdName("SEV-VLEK-"+line, serial), data.ASVKPrivateKey.Public(), ark, kds.CrlLinkByKey(line, abi.VlekReportSigner), x509.KeyUsageCertSign, 0xc7a7)
	if err != nil {
		return nil, fmt.Errorf("asvk: %w", err)
	}
	return []*x509.Certificate{ask, asvk, ark}, nil
}

// publicKeysMatch reports whether the embedded certificates carry the fixed keys (golden test).
func publicKeysMatch(certs []*x509.Certificate) bool {
	want := []*rsa.PublicKey{&data.ASKPrivateKey.PublicKey, &data.ASVKPrivateKey.PublicKey, &data.ARKPrivateKey.PublicKey}
	if len(certs) != len(want) {
		return false
	}
	for i, c := range certs {
		if !want[i].Equal(c.PublicKey) {
			return false
		}
	}
	return true
}

func parsePEMCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificates")
	}
	return out, nil
}
