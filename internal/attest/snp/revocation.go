package snp

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"math/big"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/verify/trust"
)

// checkRevocation fetches the product line's CRL through o.Getter and refuses an endorsement key
// or intermediate it lists. It reports whether a usable CRL was at hand.
//
// go-sev-guest's CheckRevocations is not used: it looks for the ASK's serial only (AMD said it
// would not revoke VCEKs, but a CRL listing one must still be honoured) and its errors do not
// tell "revoked" from "CRL unavailable", which here lead to a refusal and a soft pass.
func checkRevocation(ctx context.Context, o Options, key abi.ReportSigner, ek *x509.Certificate, root Root) (bool, error) {
	inter, interName := root.ASK, "ASK"
	if key == abi.VlekReportSigner {
		inter, interName = root.ASVK, "ASVK"
	}
	if root.ARK == nil || inter == nil {
		return false, nil
	}
	der, err := trust.GetWith(ctx, o.Getter, kds.CrlLinkByKey(root.ProductLine, key))
	if err != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("snp: fetch CRL: %w", ctx.Err())
		}
		return false, nil // no CRL at hand: unchecked, as offline
	}
	crl := o.Cache.crl(der, root.ARK)
	if crl == nil {
		// Not a CRL of this chain's ARK (e.g. AMD's real CRL for simulated evidence).
		return false, nil
	}
	for _, r := range crl.RevokedCertificateEntries {
		for _, c := range []struct {
			name string
			cert *x509.Certificate
		}{{key.String(), ek}, {interName, inter}} {
			if sameSerial(r.SerialNumber, c.cert.SerialNumber) {
				return false, &EvidenceError{Check: CheckRevoked,
					Expected: fmt.Sprintf("a %s not on AMD's %s CRL", c.name, root.ProductLine),
					Seen:     fmt.Sprintf("%s serial %x revoked at %s", c.name, c.cert.SerialNumber, r.RevocationTime.UTC().Format(time.RFC3339))}
			}
		}
	}
	return true, nil
}

func sameSerial(a, b *big.Int) bool { return a != nil && b != nil && a.Cmp(b) == 0 }

// issuingRoot is the root of group whose ASK or ASVK signed ek (group[0] if none matches,
// which a verified chain rules out).
func issuingRoot(group []Root, ek *x509.Certificate) Root {
	for _, r := range group {
		for _, inter := range []*x509.Certificate{r.ASK, r.ASVK} {
			if inter != nil && inter.CheckSignature(ek.SignatureAlgorithm, ek.RawTBSCertificate, ek.Signature) == nil {
				return r
			}
		}
	}
	return group[0]
}

// crl parses der and checks it is signed by ark, remembering the result so each attestation
// costs a hash, not an RSA verify. Nil means unusable. A nil cache parses every time.
func (c *ChainCache) crl(der []byte, ark *x509.Certificate) *x509.RevocationList {
	h := sha256.New()
	h.Write(der)
	h.Write(ark.Raw)
	var fp [32]byte
	h.Sum(fp[:0])
	if c != nil {
		c.mu.Lock()
		crl, ok := c.crls[fp]
		c.mu.Unlock()
		if ok {
			return crl
		}
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil || crl.CheckSignatureFrom(ark) != nil {
		crl = nil
	}
	if c != nil {
		c.mu.Lock()
		if len(c.crls) >= 64 {
			clear(c.crls)
		}
		c.crls[fp] = crl
		c.mu.Unlock()
	}
	return crl
}
