package keyops_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"

	"github.com/cvault/cvault/internal/jwk"
	"github.com/cvault/cvault/internal/keyops"
	"github.com/cvault/cvault/internal/keywrap"
)

// BenchmarkOps runs each key vault operation through keyops and, as a
// sibling, through the primitive it wraps, so the ratio is keyops' overhead
// (algorithm lookup, key and digest checks, error mapping). AES key wrap has
// no standard-library form: its baseline is keywrap.Wrap itself.
//
//	go test -run '^$' -bench BenchmarkOps ./internal/keyops
func BenchmarkOps(b *testing.B) {
	r := rsaKey(b)
	ec := ecKey(b, jwk.CurveP256)
	oct := octKey(b, 256)
	dek := bytes.Repeat([]byte{7}, 32)
	d := sha256.Sum256([]byte("bench"))
	wrapped, err := keyops.WrapKey(rand.Reader, r, keyops.RSAOAEP256, dek)
	if err != nil {
		b.Fatal(err)
	}

	run := func(name string, f func() error) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := f(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	run("RSA2048-OAEP256-wrap/keyops", func() error {
		_, err := keyops.WrapKey(rand.Reader, r, keyops.RSAOAEP256, dek)
		return err
	})
	run("RSA2048-OAEP256-wrap/raw", func() error {
		_, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &r.RSA.PublicKey, dek, nil)
		return err
	})
	run("RSA2048-OAEP256-unwrap/keyops", func() error {
		_, err := keyops.UnwrapKey(r, keyops.RSAOAEP256, wrapped)
		return err
	})
	run("RSA2048-OAEP256-unwrap/raw", func() error {
		_, err := rsa.DecryptOAEP(sha256.New(), nil, r.RSA, wrapped, nil)
		return err
	})
	run("A256KW-wrap/keyops", func() error {
		_, err := keyops.WrapKey(rand.Reader, oct, keyops.A256KW, dek)
		return err
	})
	run("A256KW-wrap/keywrap", func() error {
		_, err := keywrap.Wrap(oct.Oct, dek)
		return err
	})
	run("RS256-sign/keyops", func() error {
		_, err := keyops.Sign(rand.Reader, r, keyops.RS256, d[:])
		return err
	})
	run("RS256-sign/raw", func() error {
		_, err := rsa.SignPKCS1v15(nil, r.RSA, crypto.SHA256, d[:])
		return err
	})
	run("ES256-sign/keyops", func() error {
		_, err := keyops.Sign(rand.Reader, ec, keyops.ES256, d[:])
		return err
	})
	run("ES256-sign/raw", func() error {
		_, _, err := ecdsa.Sign(rand.Reader, ec.EC, d[:])
		return err
	})
	run("RFC5649-wrap-32B/keywrap", func() error {
		_, err := keywrap.WrapPad(oct.Oct, dek)
		return err
	})
}
