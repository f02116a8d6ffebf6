package attesthttp_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"

	"github.com/cvault/cvault/internal/loadgen"
	"github.com/cvault/cvault/internal/sim"
)

// BenchmarkAttestHTTPS: simulated SEV-SNP attestations over HTTPS (keep-alive, loadgen
// workers at concurrency 1 and 8) next to the raw crypto every attestation must do (one
// ECDSA P-384 verify of the report + one RS256 signature of the token).
// go test ./internal/attest/attesthttp -run '^$' -bench AttestHTTPS -benchtime 200x
func BenchmarkAttestHTTPS(b *testing.B) {
	srv := start(b, true)
	body, raw := evidence(b, sim.Options{}, runtimeJSON)
	_, chain, err := platform(b).Report(sim.Options{})
	if err != nil {
		b.Fatal(err)
	}
	vcek, err := x509.ParseCertificate(chain.VCEK)
	if err != nil {
		b.Fatal(err)
	}
	sig, err := abi.ReportToSignatureDER(raw)
	if err != nil {
		b.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		pub := vcek.PublicKey.(*ecdsa.PublicKey)
		for b.Loop() {
			h := sha512.Sum384(abi.SignedComponent(raw))
			if !ecdsa.VerifyASN1(pub, h[:], sig) {
				b.Fatal("report signature does not verify")
			}
			d := sha256.Sum256(raw[:512])
			if _, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, d[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	url := srv.URL + fmt.Sprintf(attestPath, "default")
	do := func(ctx context.Context, _ int) error {
		req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		res, err := srv.HTTPClient.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		_, _ = io.Copy(io.Discard, res.Body)
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", res.StatusCode)
		}
		return nil
	}
	for _, c := range []int{1, 8} {
		b.Run(fmt.Sprintf("https/c=%d", c), func(b *testing.B) {
			b.ReportAllocs()
			// loadgen runs its own workers, so b.N requests are handed to it in one run.
			res, err := loadgen.Run(context.Background(), loadgen.Options{Concurrency: c, Requests: b.N, Duration: 10 * time.Minute, Do: do})
			if err != nil {
				b.Fatal(err)
			}
			if res.Errors > 0 {
				b.Fatalf("%d errors, first: %v", res.Errors, res.FirstErr)
			}
			b.ReportMetric(res.RPS(), "attest/s")
			b.ReportMetric(float64(res.P50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(res.P99.Microseconds())/1000, "p99-ms")
		})
	}
}
