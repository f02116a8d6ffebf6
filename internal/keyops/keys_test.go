package keyops_test

import (
	"crypto/rand"
	"sync"
	"testing"

	"github.com/cvault/cvault/internal/jwk"
)

// The RSA-2048 key is generated once for the package; the others are cheap.
var rsa2048 = sync.OnceValues(func() (*jwk.PrivateKey, error) {
	return jwk.Generate(rand.Reader, jwk.KeyTypeRSAHSM, 2048, "")
})

func rsaKey(t testing.TB) *jwk.PrivateKey {
	t.Helper()
	k, err := rsa2048()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ecKey(t testing.TB, crv string) *jwk.PrivateKey {
	t.Helper()
	k, err := jwk.Generate(rand.Reader, jwk.KeyTypeECHSM, 0, crv)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func octKey(t testing.TB, bits int) *jwk.PrivateKey {
	t.Helper()
	k, err := jwk.Generate(rand.Reader, jwk.KeyTypeOctHSM, bits, "")
	if err != nil {
		t.Fatal(err)
	}
	return k
}
