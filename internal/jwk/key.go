package jwk

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"math/big"
)

// PrivateKey is the secret half of one key version. Exactly one of RSA, EC
// and Oct is set, matching the family of Type. It never prints its material:
// String, GoString and LogValue say REDACTED.
type PrivateKey struct {
	Type string            // Azure kty: RSA, RSA-HSM, EC, EC-HSM, oct, oct-HSM
	RSA  *rsa.PrivateKey   // RSA and RSA-HSM
	EC   *ecdsa.PrivateKey // EC and EC-HSM
	Oct  []byte            // oct and oct-HSM: the AES key (16, 24 or 32 bytes)
}

// String returns "REDACTED".
func (PrivateKey) String() string { return "REDACTED" }

// GoString returns a redacted form for %#v.
func (PrivateKey) GoString() string { return "jwk.PrivateKey{REDACTED}" }

// LogValue keeps key material out of slog output.
func (PrivateKey) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// Key sizes accepted for create and import (wire §1.2).
var (
	rsaSizes = []int{2048, 3072, 4096}
	octSizes = []int{128, 192, 256}
)

// Defaults when create leaves key_size or crv out, as Key Vault does.
const (
	DefaultRSASize = 2048
	DefaultOctSize = 256
	DefaultCurve   = CurveP256
)

// Generate makes a fresh key of Azure type kty. size is in bits (RSA
// 2048/3072/4096, oct 128/192/256; 0 means the default) and is ignored for
// EC; crv names the EC curve ("" means P-256) and is ignored otherwise.
//
// rand feeds the oct key. RSA and EC generation take it too, but since Go
// 1.26 the standard library ignores it and always uses a secure source.
func Generate(rand io.Reader, kty string, size int, crv string) (*PrivateKey, error) {
	switch Family(kty) {
	case KeyTypeRSA:
		if size == 0 {
			size = DefaultRSASize
		}
		if !contains(rsaSizes, size) {
			return nil, fmt.Errorf("%w: RSA %d bits (want 2048, 3072 or 4096)", ErrUnsupportedKeySize, size)
		}
		k, err := rsa.GenerateKey(rand, size)
		if err != nil {
			return nil, fmt.Errorf("jwk: generate RSA-%d: %w", size, err)
		}
		return &PrivateKey{Type: kty, RSA: k}, nil
	case KeyTypeEC:
		if crv == "" {
			crv = DefaultCurve
		}
		c, err := Curve(crv)
		if err != nil {
			return nil, err
		}
		k, err := ecdsa.GenerateKey(c, rand)
		if err != nil {
			return nil, fmt.Errorf("jwk: generate %s: %w", crv, err)
		}
		return &PrivateKey{Type: kty, EC: k}, nil
	case KeyTypeOct:
		if size == 0 {
			size = DefaultOctSize
		}
		if !contains(octSizes, size) {
			return nil, fmt.Errorf("%w: oct %d bits (want 128, 192 or 256)", ErrUnsupportedKeySize, size)
		}
		k := make([]byte, size/8)
		if _, err := io.ReadFull(rand, k); err != nil {
			return nil, fmt.Errorf("jwk: generate oct-%d: %w", size, err)
		}
		return &PrivateKey{Type: kty, Oct: k}, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnsupportedKeyType, kty)
}

// CheckPublicExponent accepts a create request's public_exponent: 0 (absent)
// or 65537. crypto/rsa always generates with 65537 and offers no other
// exponent, and 65537 is what Key Vault returns by default ("e":"AQAB"), so
// any other value is refused rather than silently ignored.
func CheckPublicExponent(e int) error {
	if e != 0 && e != 65537 {
		return fmt.Errorf("%w %d (only 65537)", ErrUnsupportedExponent, e)
	}
	return nil
}

// Public returns the Go public key (*rsa.PublicKey or *ecdsa.PublicKey), or
// nil for oct keys, which have no public half.
func (k *PrivateKey) Public() crypto.PublicKey {
	switch {
	case k.RSA != nil:
		return &k.RSA.PublicKey
	case k.EC != nil:
		return &k.EC.PublicKey
	}
	return nil
}

// PublicJWK returns the JWK Key Vault shows for this key: n and e for RSA,
// crv, x and y for EC, only kty for oct. It never carries private members.
func (k *PrivateKey) PublicJWK() (*Key, error) {
	switch {
	case k.RSA != nil:
		return &Key{KeyType: k.Type, N: k.RSA.N.Bytes(), E: big.NewInt(int64(k.RSA.E)).Bytes()}, nil
	case k.EC != nil:
		crv, err := CurveName(k.EC.Curve)
		if err != nil {
			return nil, err
		}
		pt, err := k.EC.PublicKey.Bytes()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
		}
		n := (len(pt) - 1) / 2
		return &Key{KeyType: k.Type, Curve: crv, X: pt[1 : 1+n], Y: pt[1+n:]}, nil
	case k.Oct != nil:
		return &Key{KeyType: k.Type}, nil
	}
	return nil, fmt.Errorf("%w: empty private key", ErrInvalidKey)
}

// FromJWK turns an imported private JWK into a key. RSA needs n, e, d, p and
// q (dp, dq, qi are checked when present) and must pass rsa.Validate; EC needs
// crv, x, y and d, with (x, y) on the curve and equal to d·G; oct needs k of
// 16, 24 or 32 bytes. The result's Type is the JWK's kty. BYOK imports
// (key_hsm) are not supported.
func FromJWK(j *Key) (*PrivateKey, error) {
	if len(j.KeyHSM) > 0 {
		return nil, fmt.Errorf("%w: BYOK import (key_hsm)", ErrUnsupportedKeyType)
	}
	switch Family(j.KeyType) {
	case KeyTypeRSA:
		return rsaFromJWK(j)
	case KeyTypeEC:
		return ecFromJWK(j)
	case KeyTypeOct:
		if !contains(octSizes, len(j.K)*8) {
			return nil, fmt.Errorf("%w: oct %d bits (want 128, 192 or 256)", ErrUnsupportedKeySize, len(j.K)*8)
		}
		return &PrivateKey{Type: j.KeyType, Oct: append([]byte(nil), j.K...)}, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnsupportedKeyType, j.KeyType)
}

func rsaFromJWK(j *Key) (*PrivateKey, error) {
	if len(j.N) == 0 || len(j.E) == 0 || len(j.D) == 0 || len(j.P) == 0 || len(j.Q) == 0 {
		return nil, fmt.Errorf("%w: RSA import needs n, e, d, p and q", ErrInvalidKey)
	}
	e, err := exponent(j.E)
	if err != nil {
		return nil, err
	}
	k := &rsa.PrivateKey{
		PublicKey: rsa.PublicKey{N: new(big.Int).SetBytes(j.N), E: e},
		D:         new(big.Int).SetBytes(j.D),
		Primes:    []*big.Int{new(big.Int).SetBytes(j.P), new(big.Int).SetBytes(j.Q)},
	}
	if err := checkRSASize(k.N); err != nil {
		return nil, err
	}
	k.Precompute()
	if err := k.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	// The CRT values are derived from p, q and d; ones that disagree mean
	// the JWK is inconsistent, even though we would not use them.
	for _, c := range []struct {
		got  Bytes
		want *big.Int
	}{{j.DP, k.Precomputed.Dp}, {j.DQ, k.Precomputed.Dq}, {j.QI, k.Precomputed.Qinv}} {
		if len(c.got) > 0 && new(big.Int).SetBytes(c.got).Cmp(c.want) != 0 {
			return nil, fmt.Errorf("%w: dp, dq or qi inconsistent with p, q and d", ErrInvalidKey)
		}
	}
	return &PrivateKey{Type: j.KeyType, RSA: k}, nil
}

func ecFromJWK(j *Key) (*PrivateKey, error) {
	c, err := Curve(j.Curve)
	if err != nil {
		return nil, err
	}
	size := (c.Params().BitSize + 7) / 8
	if len(j.D) == 0 || len(j.X) == 0 || len(j.Y) == 0 {
		return nil, fmt.Errorf("%w: EC import needs x, y and d", ErrInvalidKey)
	}
	if len(j.D) > size || len(j.X) > size || len(j.Y) > size {
		return nil, fmt.Errorf("%w: EC member longer than %d bytes", ErrInvalidKey, size)
	}
	// RFC 7518 asks for full-length members; left-pad the short ones some
	// encoders produce from big integers.
	pt := make([]byte, 1+2*size)
	pt[0] = 4
	copy(pt[1+size-len(j.X):1+size], j.X)
	copy(pt[1+2*size-len(j.Y):], j.Y)
	if _, err := ecdsa.ParseUncompressedPublicKey(c, pt); err != nil {
		return nil, fmt.Errorf("%w: point not on %s", ErrInvalidKey, j.Curve)
	}
	d := make([]byte, size)
	copy(d[size-len(j.D):], j.D)
	k, err := ecdsa.ParseRawPrivateKey(c, d)
	if err != nil {
		return nil, fmt.Errorf("%w: EC private scalar out of range", ErrInvalidKey)
	}
	derived, err := k.PublicKey.Bytes()
	if err != nil || subtle.ConstantTimeCompare(derived, pt) != 1 {
		return nil, fmt.Errorf("%w: x, y do not match d", ErrInvalidKey)
	}
	return &PrivateKey{Type: j.KeyType, EC: k}, nil
}

// Marshal returns the compact byte form of the key: PKCS#8 DER for RSA and
// EC, the raw AES key for oct. It is what Secure Key Release wraps into
// key_hsm (wire §2.4 step 4) and what the barrier seals at rest.
func (k *PrivateKey) Marshal() ([]byte, error) {
	switch {
	case k.RSA != nil:
		return k.marshalPKCS8(k.RSA)
	case k.EC != nil:
		return k.marshalPKCS8(k.EC)
	case k.Oct != nil:
		return append([]byte(nil), k.Oct...), nil
	}
	return nil, fmt.Errorf("%w: empty private key", ErrInvalidKey)
}

func (k *PrivateKey) marshalPKCS8(key any) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("jwk: marshal %s as PKCS#8: %w", k.Type, err)
	}
	return der, nil
}

// ParsePrivateKey reverses Marshal for a key of Azure type kty, which the
// caller stores beside the sealed bytes. It checks that the material fits
// kty (an EC key in an RSA slot is ErrInvalidKey) and the supported sizes.
func ParsePrivateKey(kty string, b []byte) (*PrivateKey, error) {
	fam := Family(kty)
	if fam == KeyTypeOct {
		if !contains(octSizes, len(b)*8) {
			return nil, fmt.Errorf("%w: oct %d bits", ErrUnsupportedKeySize, len(b)*8)
		}
		return &PrivateKey{Type: kty, Oct: append([]byte(nil), b...)}, nil
	}
	if fam == "" {
		return nil, fmt.Errorf("%w %q", ErrUnsupportedKeyType, kty)
	}
	key, err := x509.ParsePKCS8PrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: PKCS#8: %v", ErrInvalidKey, err)
	}
	switch key := key.(type) {
	case *rsa.PrivateKey:
		if fam != KeyTypeRSA {
			break
		}
		if err := checkRSASize(key.N); err != nil {
			return nil, err
		}
		return &PrivateKey{Type: kty, RSA: key}, nil
	case *ecdsa.PrivateKey:
		if fam != KeyTypeEC {
			break
		}
		if _, err := CurveName(key.Curve); err != nil {
			return nil, err
		}
		return &PrivateKey{Type: kty, EC: key}, nil
	}
	return nil, fmt.Errorf("%w: PKCS#8 holds %T, not a %s key", ErrInvalidKey, key, kty)
}

// PublicKey returns the Go public key a JWK describes (*rsa.PublicKey or
// *ecdsa.PublicKey), e.g. the release key from an attestation token's
// x-ms-runtime.keys. Private members are ignored.
func (k *Key) PublicKey() (crypto.PublicKey, error) {
	switch Family(k.KeyType) {
	case KeyTypeRSA:
		if len(k.N) == 0 || len(k.E) == 0 {
			return nil, fmt.Errorf("%w: RSA key needs n and e", ErrInvalidKey)
		}
		e, err := exponent(k.E)
		if err != nil {
			return nil, err
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(k.N), E: e}, nil
	case KeyTypeEC:
		c, err := Curve(k.Curve)
		if err != nil {
			return nil, err
		}
		size := (c.Params().BitSize + 7) / 8
		if len(k.X) != size || len(k.Y) != size {
			return nil, fmt.Errorf("%w: %s coordinates must be %d bytes", ErrInvalidKey, k.Curve, size)
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(c, append(append([]byte{4}, k.X...), k.Y...))
		if err != nil {
			return nil, fmt.Errorf("%w: point not on %s", ErrInvalidKey, k.Curve)
		}
		return pub, nil
	}
	return nil, fmt.Errorf("%w %q has no public key", ErrUnsupportedKeyType, k.KeyType)
}

func exponent(b []byte) (int, error) {
	if len(b) > 4 {
		return 0, fmt.Errorf("%w: longer than 4 bytes", ErrUnsupportedExponent)
	}
	e := new(big.Int).SetBytes(b).Int64()
	if e < 3 || e > 1<<31-1 || e%2 == 0 {
		return 0, fmt.Errorf("%w %d", ErrUnsupportedExponent, e)
	}
	return int(e), nil
}

func checkRSASize(n *big.Int) error {
	if bits := n.BitLen(); !contains(rsaSizes, bits) {
		return fmt.Errorf("%w: RSA %d bits (want 2048, 3072 or 4096)", ErrUnsupportedKeySize, bits)
	}
	return nil
}

// Curve returns the Go curve for an Azure crv name.
func Curve(crv string) (elliptic.Curve, error) {
	switch crv {
	case CurveP256:
		return elliptic.P256(), nil
	case CurveP384:
		return elliptic.P384(), nil
	case CurveP521:
		return elliptic.P521(), nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnsupportedCurve, crv)
}

// CurveName returns the Azure crv name of a Go curve.
func CurveName(c elliptic.Curve) (string, error) {
	if c == nil {
		return "", fmt.Errorf("%w: none", ErrUnsupportedCurve)
	}
	switch c {
	case elliptic.P256():
		return CurveP256, nil
	case elliptic.P384():
		return CurveP384, nil
	case elliptic.P521():
		return CurveP521, nil
	}
	return "", fmt.Errorf("%w %s", ErrUnsupportedCurve, c.Params().Name)
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
