package snp

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/google/go-sev-guest/verify/trust"
)

// Root is one trusted AMD product root: the ARK and the intermediates it certifies.
type Root struct {
	// ProductLine is "Milan", "Genoa" or "Turin".
	ProductLine string
	ARK         *x509.Certificate
	ASK         *x509.Certificate // certifies VCEKs
	ASVK        *x509.Certificate // certifies VLEKs
	// Simulated marks roots of cvault's simulated platform; evidence chaining to one is
	// reported as Verified.Simulated.
	Simulated bool
}

func (r Root) amd() *trust.AMDRootCerts {
	return &trust.AMDRootCerts{
		ProductLine:  r.ProductLine,
		ProductCerts: &trust.ProductCerts{Ark: r.ARK, Ask: r.ASK, Asvk: r.ASVK},
	}
}

// amdRoots parses AMD's real ASK/ASVK/ARK certificates embedded in go-sev-guest once; the
// result is never modified.
var amdRoots = sync.OnceValues(func() ([]Root, error) {
	var pems []byte
	for _, b := range [][]byte{
		trust.AskArkMilanVcekBytes, trust.AskArkMilanVlekBytes,
		trust.AskArkGenoaVcekBytes, trust.AskArkGenoaVlekBytes,
		trust.AskArkTurinVcekBytes, trust.AskArkTurinVlekBytes,
	} {
		pems = append(pems, b...)
	}
	return ParseRoots(pems, false)
})

// AMDRoots returns AMD's real roots for Milan, Genoa and Turin (as shipped in go-sev-guest).
func AMDRoots() ([]Root, error) {
	r, err := amdRoots()
	if err != nil {
		return nil, fmt.Errorf("snp: embedded AMD roots: %w", err)
	}
	return append([]Root(nil), r...), nil
}

// ParseRoots loads ARK/ASK/ASVK certificates from PEM (an AMD KDS cert_chain file, or the
// simulator's RootPEM given to `--trust-sim-root`), grouped by product line from their common
// names (ARK-<line>, SEV-<line>, SEV-VLEK-<line>). Every returned root has an ARK.
func ParseRoots(pemBytes []byte, simulated bool) ([]Root, error) {
	byLine := map[string]*Root{}
	var order []string
	get := func(line string) *Root {
		if r, ok := byLine[line]; ok {
			return r
		}
		byLine[line] = &Root{ProductLine: line, Simulated: simulated}
		order = append(order, line)
		return byLine[line]
	}
	rest := pemBytes
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("snp: root certificate: %w", err)
		}
		switch cn := c.Subject.CommonName; {
		case strings.HasPrefix(cn, "ARK-"):
			r := get(strings.TrimPrefix(cn, "ARK-"))
			if r.ARK != nil && !r.ARK.Equal(c) {
				return nil, fmt.Errorf("snp: two different ARKs for %s in one file", r.ProductLine)
			}
			r.ARK = c
		case strings.HasPrefix(cn, "SEV-VLEK-"):
			get(strings.TrimPrefix(cn, "SEV-VLEK-")).ASVK = c
		case strings.HasPrefix(cn, "SEV-"):
			get(strings.TrimPrefix(cn, "SEV-")).ASK = c
		default:
			return nil, fmt.Errorf("snp: certificate %q is not an AMD ARK, ASK or ASVK", cn)
		}
	}
	var out []Root
	for _, line := range order {
		r := byLine[line]
		if r.ARK == nil {
			return nil, fmt.Errorf("snp: no ARK for product line %s", line)
		}
		out = append(out, *r)
	}
	if len(out) == 0 {
		return nil, errors.New("snp: no root certificates found")
	}
	return out, nil
}
