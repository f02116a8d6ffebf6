package snp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cvault/cvault/internal/attest"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
)

// The always-checks: Verify refuses evidence failing any of them, whatever the policy.
const (
	CheckFormat      = "format"      // report structure, version, signer kind
	CheckCertificate = "certificate" // VCEK/VLEK present and shaped as AMD's KDS issues it
	CheckChain       = "chain"       // VCEK/VLEK → ASK/ASVK → ARK to a trusted root
	CheckSignature   = "signature"   // report signature by the VCEK/VLEK
	CheckTCB         = "tcb"         // REPORTED_TCB equals the certificate's TCB
	CheckReportData  = "report-data" // REPORT_DATA[0:32] = SHA-256(runtimeData)
	CheckHostData    = "host-data"   // HOST_DATA = SHA-256(initTimeData)
	CheckRevoked     = "revoked"     // VCEK/VLEK or ASK/ASVK on the product line's AMD CRL
)

// EvidenceError says which always-check refused the evidence, with what was expected and seen.
type EvidenceError struct {
	Check    string
	Expected string
	Seen     string
	Err      error // underlying library error, if any
}

func (e *EvidenceError) Error() string {
	msg := fmt.Sprintf("SEV-SNP evidence refused by %s check: expected %s, seen %s", e.Check, e.Expected, e.Seen)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *EvidenceError) Unwrap() error { return e.Err }

// Options configure Verify. The zero value verifies offline against AMD's real roots at time.Now.
type Options struct {
	// Now is the time at which certificates must be valid; nil means time.Now.
	Now func() time.Time
	// ExtraRoots are trusted besides AMD's (the simulator's, from `--trust-sim-root`).
	ExtraRoots []Root
	// Getter fetches a missing VCEK and the product line's CRL from AMD's KDS (through
	// kdscache, which keeps them in the store). With a Getter, Verify refuses a VCEK/VLEK or
	// ASK/ASVK the CRL revokes; a CRL that cannot be had (KDS unreachable, or not signed by the
	// ARK the chain ends at) leaves revocation unchecked. Nil (the default) keeps Verify offline.
	Getter trust.HTTPSGetter
	// Cache, if set, remembers endorsement certificates whose chain verified, so later reports
	// signed by them cost one ECDSA verify. Use one cache per root configuration.
	Cache *ChainCache
}

// Verified is evidence that passed every always-check.
type Verified struct {
	Report      *spb.Report
	Raw         []byte // the raw report
	Signer      string // "VCEK" or "VLEK"
	ProductLine string // from the report's CPUID (v3+) or the certificate
	// CertTCB is the TCB in the VCEK/VLEK certificate (equal to REPORTED_TCB).
	CertTCB   kds.TCBVersion
	Simulated bool // the chain ends at a simulated root
	// RevocationChecked: a CRL signed by the chain's ARK was at hand and revokes neither the
	// endorsement key nor its intermediate.
	RevocationChecked bool
	RuntimeData       *attest.Data
	InitTimeData      *attest.Data
	Nonce             string
}

// Verify runs the always-checks on ev: report format, endorsement certificate, chain to a
// trusted root (AMD's, then ev-independent ExtraRoots), report signature, REPORTED_TCB against
// the certificate TCB, and the runtime/init-time data bindings when that data is present.
// Failures are *EvidenceError.
func Verify(ctx context.Context, ev *Evidence, o Options) (*Verified, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	if ev == nil || len(ev.Report) != abi.ReportSize {
		seen := "no report"
		if ev != nil {
			seen = fmt.Sprintf("%d bytes", len(ev.Report))
		}
		return nil, &EvidenceError{Check: CheckFormat, Expected: fmt.Sprintf("a %d-byte report", abi.ReportSize), Seen: seen}
	}
	raw := bytes.Clone(ev.Report)
	if err := abi.ValidateReportFormat(raw); err != nil {
		return nil, &EvidenceError{Check: CheckFormat, Expected: "report version 2..5 with a valid guest policy", Seen: "otherwise", Err: err}
	}
	report, err := abi.ReportToProto(raw)
	if err != nil {
		return nil, &EvidenceError{Check: CheckFormat, Expected: "a well-formed ATTESTATION_REPORT", Seen: "malformed fields", Err: err}
	}
	info, err := abi.ParseSignerInfo(report.GetSignerInfo())
	if err != nil || (info.SigningKey != abi.VcekReportSigner && info.SigningKey != abi.VlekReportSigner) {
		return nil, &EvidenceError{Check: CheckFormat, Expected: "a report signed by a VCEK or VLEK", Seen: fmt.Sprintf("signing key %v", info.SigningKey), Err: err}
	}
	key := info.SigningKey

	var line string
	if fms := report.GetCpuid1EaxFms(); fms != 0 {
		line = kds.ProductLineFromFms(fms)
	}
	ekDER := ev.Certs.VCEK
	if key == abi.VlekReportSigner {
		ekDER = ev.Certs.VLEK
	}
	if len(ekDER) == 0 && key == abi.VcekReportSigner && o.Getter != nil && line != "" {
		url := kds.VCEKCertURL(line, report.GetChipId(), kds.TCBVersion(report.GetReportedTcb()))
		if ekDER, err = trust.GetWith(ctx, o.Getter, url); err != nil {
			return nil, &EvidenceError{Check: CheckCertificate, Expected: "a VCEK from AMD KDS", Seen: "fetch failed", Err: err}
		}
	}
	if len(ekDER) == 0 {
		expected := fmt.Sprintf("the %v certificate in VcekCertChain", key)
		switch {
		case key == abi.VcekReportSigner && o.Getter == nil:
			expected += " (or a server started with --amd-kds to fetch it from AMD KDS)"
		case key == abi.VcekReportSigner && line == "":
			expected += " (a version 2 report names no product line to fetch it from AMD KDS by)"
		}
		return nil, &EvidenceError{Check: CheckCertificate, Expected: expected, Seen: "none"}
	}
	ek, err := x509.ParseCertificate(ekDER)
	if err != nil {
		return nil, &EvidenceError{Check: CheckCertificate, Expected: fmt.Sprintf("a DER %v certificate", key), Seen: "unparsable bytes", Err: err}
	}
	exts, err := kds.CertificateExtensions(ek, key)
	if err != nil {
		return nil, &EvidenceError{Check: CheckCertificate, Expected: fmt.Sprintf("AMD KDS extensions in the %v certificate", key), Seen: "missing or malformed", Err: err}
	}
	if line == "" {
		// v2 reports carry no CPUID; the certificate's product name ("Milan-B0", or a bare
		// "Genoa" on some VCEKs) names the line.
		line = kds.ProductLineOfProductName(exts.ProductName)
	}

	root, err := verifyChain(ctx, report, ek, ekDER, line, now(), o)
	if err != nil {
		return nil, err
	}
	v := &Verified{Report: report, Raw: raw, Signer: key.String(), ProductLine: line, CertTCB: exts.TCBVersion,
		Simulated: root.Simulated, RuntimeData: ev.RuntimeData, InitTimeData: ev.InitTimeData, Nonce: ev.Nonce}
	if err := checkTCB(report, exts.TCBVersion); err != nil {
		return nil, err
	}
	if o.Getter != nil {
		if v.RevocationChecked, err = checkRevocation(ctx, o, key, ek, root); err != nil {
			return nil, err
		}
	}
	if d := ev.RuntimeData; d != nil && len(d.Bytes) > 0 {
		// MAA binds the first half of REPORT_DATA (wire §4.3); the second half is not checked.
		sum := sha256.Sum256(d.Bytes)
		if got := report.GetReportData()[:32]; !bytes.Equal(got, sum[:]) {
			return nil, &EvidenceError{Check: CheckReportData, Expected: fmt.Sprintf("REPORT_DATA[0:32] = SHA-256(runtimeData) = %x", sum), Seen: fmt.Sprintf("%x", got)}
		}
	}
	if d := ev.InitTimeData; d != nil && len(d.Bytes) > 0 {
		sum := sha256.Sum256(d.Bytes)
		if got := report.GetHostData(); !bytes.Equal(got, sum[:]) {
			return nil, &EvidenceError{Check: CheckHostData, Expected: fmt.Sprintf("HOST_DATA = SHA-256(initTimeData) = %x", sum), Seen: fmt.Sprintf("%x", got)}
		}
	}
	return v, nil
}

// verifyChain checks chain and signature with go-sev-guest, trying AMD's roots, then the
// extra non-simulated roots, then the simulated ones, and returns the root that verified.
// A fresh verify.Options is built per call: the library mutates it.
func verifyChain(ctx context.Context, report *spb.Report, ek *x509.Certificate, ekDER []byte, line string, now time.Time, o Options) (Root, error) {
	fp := sha256.Sum256(ekDER)
	if root, ok := o.Cache.lookup(fp, now); ok {
		if err := verify.SnpProtoReportSignature(report, ek); err != nil {
			return Root{}, &EvidenceError{Check: CheckSignature, Expected: "a report signature by the " + signerName(report), Seen: "an invalid signature", Err: err}
		}
		return root, nil
	}
	amd, err := AMDRoots()
	if err != nil {
		return Root{}, err
	}
	var real, extra, simulated []Root
	for _, r := range amd {
		if r.ProductLine == line {
			real = append(real, r)
		}
	}
	for _, r := range o.ExtraRoots {
		switch {
		case r.ProductLine != line:
		case r.Simulated:
			simulated = append(simulated, r)
		default:
			extra = append(extra, r)
		}
	}
	var lastErr error
	for _, group := range [][]Root{real, extra, simulated} {
		if len(group) == 0 {
			continue
		}
		roots := make([]*trust.AMDRootCerts, len(group))
		for i, r := range group {
			roots[i] = r.amd()
		}
		att := &spb.Attestation{Report: report, CertificateChain: certChain(report, ekDER)}
		opts := &verify.Options{DisableCertFetching: true, Now: now, TrustedRoots: map[string][]*trust.AMDRootCerts{line: roots}}
		if lastErr = verify.SnpAttestationContext(ctx, att, opts); lastErr == nil {
			root := issuingRoot(group, ek)
			o.Cache.store(fp, group, root, ek)
			return root, nil
		}
	}
	// Tell a bad signature from an untrusted chain, so the error names the right check.
	if err := verify.SnpProtoReportSignature(report, ek); err != nil {
		return Root{}, &EvidenceError{Check: CheckSignature, Expected: "a report signature by the " + signerName(report), Seen: "an invalid signature", Err: err}
	}
	if lastErr == nil {
		lastErr = errors.New("no trusted root for this product line")
	}
	return Root{}, &EvidenceError{Check: CheckChain, Expected: fmt.Sprintf("a %s chain to a trusted %s ARK", signerName(report), line),
		Seen: "a certificate no trusted root certifies (a simulated report needs --trust-sim-root)", Err: lastErr}
}

func signerName(report *spb.Report) string {
	info, _ := abi.ParseSignerInfo(report.GetSignerInfo())
	return info.SigningKey.String()
}

func certChain(report *spb.Report, ekDER []byte) *spb.CertificateChain {
	info, _ := abi.ParseSignerInfo(report.GetSignerInfo())
	if info.SigningKey == abi.VlekReportSigner {
		return &spb.CertificateChain{VlekCert: ekDER, Extras: map[string][]byte{}}
	}
	return &spb.CertificateChain{VcekCert: ekDER, Extras: map[string][]byte{}}
}

// checkTCB: the VCEK/VLEK is issued for one TCB, so REPORTED_TCB must equal it, and the
// platform cannot be running below it (go-sev-guest validate's rule).
func checkTCB(report *spb.Report, certTCB kds.TCBVersion) error {
	reported := kds.TCBVersion(report.GetReportedTcb())
	if reported != certTCB {
		return &EvidenceError{Check: CheckTCB, Expected: fmt.Sprintf("REPORTED_TCB = certificate TCB %s", tcbString(certTCB)), Seen: tcbString(reported)}
	}
	current := kds.DecomposeTCBVersion(kds.TCBVersion(report.GetCurrentTcb()))
	if !kds.TCBPartsLE(kds.DecomposeTCBVersion(certTCB), current) {
		return &EvidenceError{Check: CheckTCB, Expected: fmt.Sprintf("CURRENT_TCB ≥ certificate TCB %s", tcbString(certTCB)),
			Seen: tcbString(kds.TCBVersion(report.GetCurrentTcb()))}
	}
	return nil
}

func tcbString(t kds.TCBVersion) string {
	p := kds.DecomposeTCBVersion(t)
	return fmt.Sprintf("{bootloader %d, tee %d, snp %d, microcode %d}", p.BlSpl, p.TeeSpl, p.SnpSpl, p.UcodeSpl)
}

// ChainCache remembers endorsement certificates (by SHA-256 of their DER) whose chain verified,
// with the window in which the whole chain is valid. Safe for concurrent use; nil is a valid,
// always-empty cache.
type ChainCache struct {
	mu   sync.Mutex
	max  int
	m    map[[32]byte]cacheEntry
	crls map[[32]byte]*x509.RevocationList // by SHA-256(CRL ‖ ARK); nil = not signed by that ARK
}

type cacheEntry struct {
	notBefore, notAfter time.Time
	root                Root
}

// NewChainCache returns a cache holding at most max certificates (it empties itself when full).
func NewChainCache(max int) *ChainCache {
	return &ChainCache{max: max, m: map[[32]byte]cacheEntry{}, crls: map[[32]byte]*x509.RevocationList{}}
}

func (c *ChainCache) lookup(fp [32]byte, now time.Time) (Root, bool) {
	if c == nil {
		return Root{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[fp]
	if !ok || now.Before(e.notBefore) || now.After(e.notAfter) {
		return Root{}, false
	}
	return e.root, true
}

func (c *ChainCache) store(fp [32]byte, group []Root, root Root, ek *x509.Certificate) {
	if c == nil {
		return
	}
	e := cacheEntry{notBefore: ek.NotBefore, notAfter: ek.NotAfter, root: root}
	// The window where the whole chain is valid: the narrowest over EK and every root cert.
	for _, r := range group {
		for _, cert := range []*x509.Certificate{r.ARK, r.ASK, r.ASVK} {
			if cert == nil {
				continue
			}
			if cert.NotBefore.After(e.notBefore) {
				e.notBefore = cert.NotBefore
			}
			if cert.NotAfter.Before(e.notAfter) {
				e.notAfter = cert.NotAfter
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[fp] = e
}
