package snp_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"testing"

	"github.com/cvault/cvault/internal/attest"
	"github.com/cvault/cvault/internal/attest/snp"
	"github.com/cvault/cvault/internal/sim"
	"github.com/google/go-sev-guest/abi"
)

// BenchmarkAttest: the attestation hot path (Verify of a simulated report with the chain
// cached, Claims, Issue) next to its cryptographic floor (one ECDSA P-384 verify of the
// report + one RS256 signature).
func BenchmarkAttest(b *testing.B) {
	p := platform(b)
	runtime := []byte(`{"keys":[{"kid":"k","kty":"RSA","e":"AQAB","n":"abc"}]}`)
	ev := simEvidence(b, p, sim.Options{}, runtime)
	opts := snp.Options{ExtraRoots: simRoots(b, p), Cache: snp.NewChainCache(16)}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := attest.NewSigner(key, nil)
	if err != nil {
		b.Fatal(err)
	}
	vcek, err := x509.ParseCertificate(ev.Certs.VCEK)
	if err != nil {
		b.Fatal(err)
	}
	sigDER, err := abi.ReportToSignatureDER(ev.Report)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	tokOpts := attest.Options{Issuer: "https://cvault.example/attestation/default", JKU: "https://cvault.example/attestation/default/certs"}

	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		pub := vcek.PublicKey.(*ecdsa.PublicKey)
		for b.Loop() {
			h := sha512.Sum384(abi.SignedComponent(ev.Report))
			if !ecdsa.VerifyASN1(pub, h[:], sigDER) {
				b.Fatal("ecdsa verify failed")
			}
			d := sha256.Sum256(ev.Report[:512])
			if _, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, d[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := snp.Verify(ctx, ev, opts); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify-uncached", func(b *testing.B) {
		b.ReportAllocs()
		o := opts
		o.Cache = nil
		for b.Loop() {
			if _, err := snp.Verify(ctx, ev, o); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify+claims+issue", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v, err := snp.Verify(ctx, ev, opts)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := attest.Issue(snp.Claims(v, snp.ClaimOptions{}), signer, tokOpts); err != nil {
				b.Fatal(err)
			}
		}
	})
}
