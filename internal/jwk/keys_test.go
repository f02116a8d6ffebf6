package jwk_test

import (
	"crypto/rand"
	"sync"
	"testing"

	"github.com/cvault/cvault/internal/jwk"
)

// RSA keys are generated once per size for the whole package: keygen costs
// tens of milliseconds (seconds for 4096 under -race).
var rsaKeys struct {
	once [3]sync.Once
	key  [3]*jwk.PrivateKey
	err  [3]error
}

func rsaKey(t testing.TB, bits int) *jwk.PrivateKey {
	t.Helper()
	i := map[int]int{2048: 0, 3072: 1, 4096: 2}[bits]
	rsaKeys.once[i].Do(func() {
		rsaKeys.key[i], rsaKeys.err[i] = jwk.Generate(rand.Reader, jwk.KeyTypeRSAHSM, bits, "")
	})
	if rsaKeys.err[i] != nil {
		t.Fatalf("Generate RSA-%d: %v", bits, rsaKeys.err[i])
	}
	return rsaKeys.key[i]
}

func genKey(t testing.TB, kty string, size int, crv string) *jwk.PrivateKey {
	t.Helper()
	k, err := jwk.Generate(rand.Reader, kty, size, crv)
	if err != nil {
		t.Fatalf("Generate(%s, %d, %q): %v", kty, size, crv, err)
	}
	return k
}

// privateJWK writes a key's full private JWK the way an importing client
// does, independently of the code under test.
func privateJWK(t testing.TB, k *jwk.PrivateKey) *jwk.Key {
	t.Helper()
	j, err := k.PublicJWK()
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case k.RSA != nil:
		r := k.RSA
		j.D, j.P, j.Q = r.D.Bytes(), r.Primes[0].Bytes(), r.Primes[1].Bytes()
		j.DP, j.DQ, j.QI = r.Precomputed.Dp.Bytes(), r.Precomputed.Dq.Bytes(), r.Precomputed.Qinv.Bytes()
	case k.EC != nil:
		d, err := k.EC.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		j.D = d
	default:
		j.K = k.Oct
	}
	return j
}
