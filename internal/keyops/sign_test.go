package keyops_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"math/big"
	"testing"

	"github.com/cvault/cvault/internal/jwk"
	"github.com/cvault/cvault/internal/keyops"
)

func digest(h crypto.Hash) []byte {
	d := h.New()
	d.Write([]byte("the message the client hashed"))
	return d.Sum(nil)
}

func TestRSASign(t *testing.T) {
	t.Parallel()
	k := rsaKey(t)
	for _, tt := range []struct {
		alg  string
		hash crypto.Hash
		pss  bool
	}{
		{keyops.RS256, crypto.SHA256, false}, {keyops.RS384, crypto.SHA384, false}, {keyops.RS512, crypto.SHA512, false},
		{keyops.PS256, crypto.SHA256, true}, {keyops.PS384, crypto.SHA384, true}, {keyops.PS512, crypto.SHA512, true},
	} {
		d := digest(tt.hash)
		sig, err := keyops.Sign(rand.Reader, k, tt.alg, d)
		if err != nil {
			t.Fatalf("%s: %v", tt.alg, err)
		}
		// Independent verification with crypto/rsa (JOSE PS*: salt = hash size).
		if tt.pss {
			err = rsa.VerifyPSS(&k.RSA.PublicKey, tt.hash, d, sig, &rsa.PSSOptions{SaltLength: tt.hash.Size()})
		} else {
			err = rsa.VerifyPKCS1v15(&k.RSA.PublicKey, tt.hash, d, sig)
		}
		if err != nil {
			t.Errorf("%s: raw verify: %v", tt.alg, err)
		}
		checkVerify(t, k.Public(), tt.alg, d, sig)
	}
	// A signature made by plain Go verifies through keyops.
	d := digest(crypto.SHA256)
	sig, _ := rsa.SignPKCS1v15(nil, k.RSA, crypto.SHA256, d)
	if ok, err := keyops.Verify(k.Public(), keyops.RS256, d, sig); !ok || err != nil {
		t.Errorf("Verify(raw RS256) = %v, %v", ok, err)
	}
}

func TestECSign(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		alg, crv string
		hash     crypto.Hash
		size     int
	}{
		{keyops.ES256, jwk.CurveP256, crypto.SHA256, 32},
		{keyops.ES384, jwk.CurveP384, crypto.SHA384, 48},
		{keyops.ES512, jwk.CurveP521, crypto.SHA512, 66},
	} {
		k := ecKey(t, tt.crv)
		d := digest(tt.hash)
		for range 8 { // r or s with a leading zero byte must still be full length
			sig, err := keyops.Sign(rand.Reader, k, tt.alg, d)
			if err != nil {
				t.Fatalf("%s: %v", tt.alg, err)
			}
			if len(sig) != 2*tt.size {
				t.Fatalf("%s: signature of %d bytes, want %d", tt.alg, len(sig), 2*tt.size)
			}
			r := new(big.Int).SetBytes(sig[:tt.size])
			s := new(big.Int).SetBytes(sig[tt.size:])
			if !ecdsa.Verify(&k.EC.PublicKey, d, r, s) {
				t.Errorf("%s: raw ecdsa.Verify failed", tt.alg)
			}
			checkVerify(t, k.Public(), tt.alg, d, sig)
		}
		// Plain Go signs, keyops verifies.
		r, s, _ := ecdsa.Sign(rand.Reader, k.EC, d)
		raw := make([]byte, 2*tt.size)
		r.FillBytes(raw[:tt.size])
		s.FillBytes(raw[tt.size:])
		if ok, err := keyops.Verify(k.Public(), tt.alg, d, raw); !ok || err != nil {
			t.Errorf("%s: Verify(raw) = %v, %v", tt.alg, ok, err)
		}
		// ASN.1 (DER) is not what Key Vault takes: it must not verify.
		der, _ := ecdsa.SignASN1(rand.Reader, k.EC, d)
		if ok, _ := keyops.Verify(k.Public(), tt.alg, d, der); ok {
			t.Errorf("%s: DER signature verified", tt.alg)
		}
	}
}

// checkVerify: keyops.Verify accepts sig and rejects a tampered signature
// or digest with (false, nil).
func checkVerify(t *testing.T, pub crypto.PublicKey, alg string, d, sig []byte) {
	t.Helper()
	if ok, err := keyops.Verify(pub, alg, d, sig); !ok || err != nil {
		t.Errorf("%s: Verify = %v, %v", alg, ok, err)
	}
	bad := append([]byte(nil), sig...)
	bad[len(bad)/2] ^= 1
	if ok, err := keyops.Verify(pub, alg, d, bad); ok || err != nil {
		t.Errorf("%s: tampered signature: %v, %v", alg, ok, err)
	}
	badD := append([]byte(nil), d...)
	badD[0] ^= 1
	if ok, err := keyops.Verify(pub, alg, badD, sig); ok || err != nil {
		t.Errorf("%s: other digest: %v, %v", alg, ok, err)
	}
	if ok, err := keyops.Verify(pub, alg, d, sig[:len(sig)-1]); ok || err != nil {
		t.Errorf("%s: short signature: %v, %v", alg, ok, err)
	}
}

func TestBadDigestLength(t *testing.T) {
	t.Parallel()
	r, e := rsaKey(t), ecKey(t, jwk.CurveP384)
	for _, tt := range []struct {
		key *jwk.PrivateKey
		alg string
		n   int
	}{
		{r, keyops.RS256, 48}, {r, keyops.RS512, 32}, {r, keyops.PS384, 0}, {r, keyops.PS256, 33},
		{e, keyops.ES384, 32}, {e, keyops.ES384, 64},
	} {
		if _, err := keyops.Sign(rand.Reader, tt.key, tt.alg, make([]byte, tt.n)); !errors.Is(err, keyops.ErrBadDigestLength) {
			t.Errorf("Sign %s with %d bytes: %v", tt.alg, tt.n, err)
		}
		if _, err := keyops.Verify(tt.key.Public(), tt.alg, make([]byte, tt.n), []byte{1}); !errors.Is(err, keyops.ErrBadDigestLength) {
			t.Errorf("Verify %s with %d bytes: %v", tt.alg, tt.n, err)
		}
	}
}

// TestAlgorithmChecks: every algorithm against every key it does not fit,
// per operation, and names that are not algorithms of that operation.
func TestAlgorithmChecks(t *testing.T) {
	t.Parallel()
	keys := map[string]*jwk.PrivateKey{
		"RSA": rsaKey(t), "P-256": ecKey(t, jwk.CurveP256), "P-521": ecKey(t, jwk.CurveP521),
		"oct-128": octKey(t, 128), "oct-256": octKey(t, 256),
	}
	d := func(n int) []byte { return make([]byte, n) }
	type op func(k *jwk.PrivateKey) error
	enc := func(alg string) op {
		return func(k *jwk.PrivateKey) error {
			_, err := keyops.Encrypt(rand.Reader, k, alg, d(16), nil, nil)
			return err
		}
	}
	dec := func(alg string) op {
		return func(k *jwk.PrivateKey) error { _, err := keyops.Decrypt(k, alg, d(16), d(12), nil, d(16)); return err }
	}
	wrap := func(alg string) op {
		return func(k *jwk.PrivateKey) error { _, err := keyops.WrapKey(rand.Reader, k, alg, d(16)); return err }
	}
	unwrap := func(alg string) op {
		return func(k *jwk.PrivateKey) error { _, err := keyops.UnwrapKey(k, alg, d(24)); return err }
	}
	sign := func(alg string, n int) op {
		return func(k *jwk.PrivateKey) error { _, err := keyops.Sign(rand.Reader, k, alg, d(n)); return err }
	}
	verify := func(alg string, n int) op {
		return func(k *jwk.PrivateKey) error { _, err := keyops.Verify(k.Public(), alg, d(n), d(64)); return err }
	}
	for _, tt := range []struct {
		name string
		op   op
		fits []string // keys the algorithm fits; all others must mismatch
	}{
		{"encrypt RSA-OAEP", enc(keyops.RSAOAEP), []string{"RSA"}},
		{"decrypt RSA1_5", dec(keyops.RSA15), []string{"RSA"}},
		{"encrypt A128GCM", enc(keyops.A128GCM), []string{"oct-128"}},
		{"decrypt A256GCM", dec(keyops.A256GCM), []string{"oct-256"}},
		{"wrap RSA-OAEP-256", wrap(keyops.RSAOAEP256), []string{"RSA"}},
		{"wrap A256KW", wrap(keyops.A256KW), []string{"oct-256"}},
		{"unwrap A128KW", unwrap(keyops.A128KW), []string{"oct-128"}},
		{"sign RS256", sign(keyops.RS256, 32), []string{"RSA"}},
		{"sign PS512", sign(keyops.PS512, 64), []string{"RSA"}},
		{"sign ES256", sign(keyops.ES256, 32), []string{"P-256"}},
		{"sign ES512", sign(keyops.ES512, 64), []string{"P-521"}},
		{"verify ES256", verify(keyops.ES256, 32), []string{"P-256"}},
		{"verify PS256", verify(keyops.PS256, 32), []string{"RSA"}},
	} {
		for name, k := range keys {
			err := tt.op(k)
			fits := false
			for _, f := range tt.fits {
				fits = fits || f == name
			}
			if fits == errors.Is(err, keyops.ErrAlgorithmMismatch) {
				t.Errorf("%s on %s: %v (fits=%v)", tt.name, name, err, fits)
			}
		}
	}
	// Names an operation does not take, known or not.
	for name, f := range map[string]op{
		"encrypt A256KW":  enc(keyops.A256KW),
		"wrap A256GCM":    wrap(keyops.A256GCM),
		"encrypt RS256":   enc(keyops.RS256),
		"sign RSA-OAEP":   sign(keyops.RSAOAEP, 32),
		"encrypt A128CBC": enc("A128CBC"),
		"sign ES256K":     sign("ES256K", 32),
		"wrap lowercase":  wrap("rsa-oaep"),
		"unwrap empty":    unwrap(""),
	} {
		for _, k := range keys {
			if err := f(k); !errors.Is(err, keyops.ErrUnsupportedAlgorithm) {
				t.Errorf("%s: %v, want ErrUnsupportedAlgorithm", name, err)
			}
		}
	}
	if _, err := keyops.Verify(nil, keyops.RS256, d(32), d(256)); !errors.Is(err, keyops.ErrAlgorithmMismatch) {
		t.Errorf("Verify with no key: %v", err)
	}
}

func TestDefaultOps(t *testing.T) {
	t.Parallel()
	for kty, want := range map[string]int{
		jwk.KeyTypeRSA: 6, jwk.KeyTypeRSAHSM: 6, jwk.KeyTypeEC: 2, jwk.KeyTypeECHSM: 2,
		jwk.KeyTypeOct: 4, jwk.KeyTypeOctHSM: 4, "OKP": 0,
	} {
		if got := keyops.DefaultOps(kty); len(got) != want {
			t.Errorf("DefaultOps(%s) = %v", kty, got)
		}
	}
	ops := keyops.DefaultOps(jwk.KeyTypeEC)
	ops[0] = "changed"
	if keyops.DefaultOps(jwk.KeyTypeEC)[0] != keyops.OpSign {
		t.Error("DefaultOps shares its slice")
	}
}
