package jwk_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cvault/cvault/internal/jwk"
)

func TestGenerate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		kty      string
		size     int
		crv      string
		wantBits int
		wantErr  error
	}{
		{kty: jwk.KeyTypeEC, wantBits: 256},
		{kty: jwk.KeyTypeEC, crv: jwk.CurveP256, wantBits: 256},
		{kty: jwk.KeyTypeECHSM, crv: jwk.CurveP384, wantBits: 384},
		{kty: jwk.KeyTypeEC, crv: jwk.CurveP521, wantBits: 521},
		{kty: jwk.KeyTypeOct, wantBits: 256},
		{kty: jwk.KeyTypeOctHSM, size: 128, wantBits: 128},
		{kty: jwk.KeyTypeOct, size: 192, wantBits: 192},
		{kty: jwk.KeyTypeOctHSM, size: 256, wantBits: 256},
		{kty: jwk.KeyTypeRSA, size: 1024, wantErr: jwk.ErrUnsupportedKeySize},
		{kty: jwk.KeyTypeRSAHSM, size: 2047, wantErr: jwk.ErrUnsupportedKeySize},
		{kty: jwk.KeyTypeEC, crv: "P-256K", wantErr: jwk.ErrUnsupportedCurve},
		{kty: jwk.KeyTypeEC, crv: "P-224", wantErr: jwk.ErrUnsupportedCurve},
		{kty: jwk.KeyTypeOct, size: 512, wantErr: jwk.ErrUnsupportedKeySize},
		{kty: "rsa", wantErr: jwk.ErrUnsupportedKeyType},
		{kty: "OKP", wantErr: jwk.ErrUnsupportedKeyType},
	} {
		t.Run(fmt.Sprintf("%s/%d/%s", tt.kty, tt.size, tt.crv), func(t *testing.T) {
			t.Parallel()
			k, err := jwk.Generate(rand.Reader, tt.kty, tt.size, tt.crv)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if k != nil {
					t.Error("non-nil key with error")
				}
				return
			}
			if k.Type != tt.kty {
				t.Errorf("Type = %q", k.Type)
			}
			switch jwk.Family(tt.kty) {
			case jwk.KeyTypeEC:
				if got := k.EC.Curve.Params().BitSize; got != tt.wantBits {
					t.Errorf("curve bits = %d, want %d", got, tt.wantBits)
				}
			case jwk.KeyTypeOct:
				if len(k.Oct)*8 != tt.wantBits {
					t.Errorf("oct bits = %d, want %d", len(k.Oct)*8, tt.wantBits)
				}
			}
		})
	}
}

// TestGenerateRSA is the one test that pays for RSA-4096.
func TestGenerateRSA(t *testing.T) {
	for _, bits := range []int{2048, 3072, 4096} {
		k := rsaKey(t, bits)
		if k.RSA.N.BitLen() != bits || k.RSA.E != 65537 {
			t.Errorf("RSA-%d: got %d bits, e=%d", bits, k.RSA.N.BitLen(), k.RSA.E)
		}
		if err := k.RSA.Validate(); err != nil {
			t.Errorf("RSA-%d: %v", bits, err)
		}
	}
	k, err := jwk.Generate(rand.Reader, jwk.KeyTypeRSA, 0, "")
	if err != nil || k.RSA.N.BitLen() != 2048 {
		t.Fatalf("default RSA size: %v", err)
	}
}

func TestCheckPublicExponent(t *testing.T) {
	t.Parallel()
	for e, ok := range map[int]bool{0: true, 65537: true, 3: false, 17: false, -1: false, 65539: false} {
		if err := jwk.CheckPublicExponent(e); (err == nil) != ok || (err != nil && !errors.Is(err, jwk.ErrUnsupportedExponent)) {
			t.Errorf("CheckPublicExponent(%d) = %v", e, err)
		}
	}
}

// testKeys are one key of every family and curve (RSA from the shared pool).
func testKeys(t *testing.T) map[string]*jwk.PrivateKey {
	return map[string]*jwk.PrivateKey{
		"RSA-2048": rsaKey(t, 2048),
		"RSA-3072": rsaKey(t, 3072),
		"P-256":    genKey(t, jwk.KeyTypeECHSM, 0, jwk.CurveP256),
		"P-384":    genKey(t, jwk.KeyTypeEC, 0, jwk.CurveP384),
		"P-521":    genKey(t, jwk.KeyTypeECHSM, 0, jwk.CurveP521),
		"oct-128":  genKey(t, jwk.KeyTypeOctHSM, 128, ""),
		"oct-256":  genKey(t, jwk.KeyTypeOct, 256, ""),
	}
}

func TestPublicJWKHasNoPrivateMembers(t *testing.T) {
	t.Parallel()
	for name, k := range testKeys(t) {
		j, err := k.PublicJWK()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, private := range []string{"d", "dp", "dq", "qi", "p", "q", "k", "key_hsm"} {
			if _, ok := m[private]; ok {
				t.Errorf("%s: public JWK has %q: %s", name, private, b)
			}
		}
		if m["kty"] != k.Type {
			t.Errorf("%s: kty = %v, want %s", name, m["kty"], k.Type)
		}
		if j.HasPrivate() {
			t.Errorf("%s: HasPrivate", name)
		}
		switch {
		case k.RSA != nil:
			if m["e"] != "AQAB" {
				t.Errorf("%s: e = %v", name, m["e"])
			}
		case k.EC != nil:
			// Coordinates are full length (RFC 7518 §6.2.1.2), so PublicKey
			// accepts them and gets the same point back.
			pub, err := j.PublicKey()
			if err != nil {
				t.Fatalf("%s: PublicKey: %v", name, err)
			}
			if !k.EC.PublicKey.Equal(pub) {
				t.Errorf("%s: PublicKey differs", name)
			}
		}
	}
}

func TestFromJWKRoundTrip(t *testing.T) {
	t.Parallel()
	for name, k := range testKeys(t) {
		j := privateJWK(t, k)
		// Through JSON, as an import body arrives.
		b, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := jwk.ParseKey(b)
		if err != nil {
			t.Fatalf("%s: ParseKey: %v", name, err)
		}
		got, err := jwk.FromJWK(parsed)
		if err != nil {
			t.Fatalf("%s: FromJWK: %v", name, err)
		}
		if got.Type != k.Type {
			t.Errorf("%s: Type = %s", name, got.Type)
		}
		switch {
		case k.RSA != nil:
			if !k.RSA.Equal(got.RSA) {
				t.Errorf("%s: RSA key differs", name)
			}
		case k.EC != nil:
			if !k.EC.Equal(got.EC) {
				t.Errorf("%s: EC key differs", name)
			}
		default:
			if !bytes.Equal(k.Oct, got.Oct) {
				t.Errorf("%s: oct key differs", name)
			}
		}
	}
}

func TestFromJWKRejects(t *testing.T) {
	t.Parallel()
	rsaJ := privateJWK(t, rsaKey(t, 2048))
	ecK := genKey(t, jwk.KeyTypeEC, 0, jwk.CurveP256)
	ecJ := privateJWK(t, ecK)
	otherEC := privateJWK(t, genKey(t, jwk.KeyTypeEC, 0, jwk.CurveP256))
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallJ := privateJWK(t, &jwk.PrivateKey{Type: jwk.KeyTypeRSA, RSA: small})

	edit := func(base *jwk.Key, f func(j *jwk.Key)) *jwk.Key {
		j := *base
		f(&j)
		return &j
	}
	plusOne := func(b []byte) []byte {
		v := new(big.Int).Add(new(big.Int).SetBytes(b), big.NewInt(1)).Bytes()
		return v
	}
	for _, tt := range []struct {
		name string
		key  *jwk.Key
		want error
	}{
		{"RSA missing d", edit(rsaJ, func(j *jwk.Key) { j.D = nil }), jwk.ErrInvalidKey},
		{"RSA missing q", edit(rsaJ, func(j *jwk.Key) { j.Q = nil }), jwk.ErrInvalidKey},
		{"RSA wrong d", edit(rsaJ, func(j *jwk.Key) { j.D = plusOne(j.D) }), jwk.ErrInvalidKey},
		{"RSA wrong p", edit(rsaJ, func(j *jwk.Key) { j.P = plusOne(j.P) }), jwk.ErrInvalidKey},
		{"RSA wrong dp", edit(rsaJ, func(j *jwk.Key) { j.DP = plusOne(j.DP) }), jwk.ErrInvalidKey},
		{"RSA wrong qi", edit(rsaJ, func(j *jwk.Key) { j.QI = plusOne(j.QI) }), jwk.ErrInvalidKey},
		{"RSA e=1", edit(rsaJ, func(j *jwk.Key) { j.E = []byte{1} }), jwk.ErrUnsupportedExponent},
		{"RSA e huge", edit(rsaJ, func(j *jwk.Key) { j.E = []byte{1, 0, 0, 0, 1} }), jwk.ErrUnsupportedExponent},
		{"RSA 1024", smallJ, jwk.ErrUnsupportedKeySize},
		{"RSA BYOK", edit(rsaJ, func(j *jwk.Key) { j.KeyHSM = []byte("{}") }), jwk.ErrUnsupportedKeyType},
		{"EC off curve", edit(ecJ, func(j *jwk.Key) { j.Y = plusOne(j.Y) }), jwk.ErrInvalidKey},
		{"EC other point", edit(ecJ, func(j *jwk.Key) { j.X, j.Y = otherEC.X, otherEC.Y }), jwk.ErrInvalidKey},
		{"EC missing d", edit(ecJ, func(j *jwk.Key) { j.D = nil }), jwk.ErrInvalidKey},
		{"EC d zero", edit(ecJ, func(j *jwk.Key) { j.D = make([]byte, 32) }), jwk.ErrInvalidKey},
		{"EC d too long", edit(ecJ, func(j *jwk.Key) { j.D = append([]byte{1}, j.D...) }), jwk.ErrInvalidKey},
		{"EC curve mismatch", edit(ecJ, func(j *jwk.Key) { j.Curve = jwk.CurveP384 }), jwk.ErrInvalidKey},
		{"EC P-256K", edit(ecJ, func(j *jwk.Key) { j.Curve = "P-256K" }), jwk.ErrUnsupportedCurve},
		{"oct 20 bytes", &jwk.Key{KeyType: jwk.KeyTypeOct, K: make([]byte, 20)}, jwk.ErrUnsupportedKeySize},
		{"oct empty", &jwk.Key{KeyType: jwk.KeyTypeOctHSM}, jwk.ErrUnsupportedKeySize},
		{"unknown kty", &jwk.Key{KeyType: "OKP"}, jwk.ErrUnsupportedKeyType},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k, err := jwk.FromJWK(tt.key)
			if !errors.Is(err, tt.want) || k != nil {
				t.Fatalf("FromJWK = %v, %v; want %v", k, err, tt.want)
			}
		})
	}
}

func TestFromJWKShortECMembers(t *testing.T) {
	t.Parallel()
	// Find a key whose d has a leading zero byte and pass d, x, y trimmed as
	// big-integer encoders do; the import must left-pad them.
	for range 2000 {
		k := genKey(t, jwk.KeyTypeEC, 0, jwk.CurveP256)
		j := privateJWK(t, k)
		if j.D[0] != 0 && j.X[0] != 0 {
			continue
		}
		j.D = new(big.Int).SetBytes(j.D).Bytes()
		j.X = new(big.Int).SetBytes(j.X).Bytes()
		got, err := jwk.FromJWK(j)
		if err != nil || !got.EC.Equal(k.EC) {
			t.Fatalf("FromJWK(short members) = %v", err)
		}
		return
	}
	t.Skip("no key with a leading zero byte found")
}

func TestMarshalParse(t *testing.T) {
	t.Parallel()
	for name, k := range testKeys(t) {
		b, err := k.Marshal()
		if err != nil {
			t.Fatalf("%s: Marshal: %v", name, err)
		}
		if k.Oct == nil {
			// Independent check: the bytes are PKCS#8 as the release clients read them.
			if _, err := x509.ParsePKCS8PrivateKey(b); err != nil {
				t.Errorf("%s: not PKCS#8: %v", name, err)
			}
		} else if !bytes.Equal(b, k.Oct) {
			t.Errorf("%s: oct form is not the raw key", name)
		}
		got, err := jwk.ParsePrivateKey(k.Type, b)
		if err != nil {
			t.Fatalf("%s: ParsePrivateKey: %v", name, err)
		}
		if !reflect.DeepEqual(mustPublicJWK(t, got), mustPublicJWK(t, k)) {
			t.Errorf("%s: round trip changed the key", name)
		}
	}

	rsaDER, _ := rsaKey(t, 2048).Marshal()
	ecDER, _ := genKey(t, jwk.KeyTypeEC, 0, "").Marshal()
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p224DER, _ := x509.MarshalPKCS8PrivateKey(p224)
	for _, tt := range []struct {
		name, kty string
		b         []byte
		want      error
	}{
		{"EC bytes as RSA", jwk.KeyTypeRSAHSM, ecDER, jwk.ErrInvalidKey},
		{"RSA bytes as EC", jwk.KeyTypeEC, rsaDER, jwk.ErrInvalidKey},
		{"truncated", jwk.KeyTypeRSA, rsaDER[:100], jwk.ErrInvalidKey},
		{"P-224", jwk.KeyTypeEC, p224DER, jwk.ErrUnsupportedCurve},
		{"oct 31 bytes", jwk.KeyTypeOct, make([]byte, 31), jwk.ErrUnsupportedKeySize},
		{"unknown kty", "OKP", rsaDER, jwk.ErrUnsupportedKeyType},
	} {
		if k, err := jwk.ParsePrivateKey(tt.kty, tt.b); !errors.Is(err, tt.want) || k != nil {
			t.Errorf("%s: ParsePrivateKey = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func mustPublicJWK(t *testing.T, k *jwk.PrivateKey) *jwk.Key {
	t.Helper()
	j, err := k.PublicJWK()
	if err != nil {
		t.Fatal(err)
	}
	if k.Oct != nil {
		j.K = k.Oct // oct has no public part; compare the secret instead
	}
	return j
}

func TestThumbprint(t *testing.T) {
	t.Parallel()
	// RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
	const rfc7638 = `{"kty":"RSA",` +
		`"n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",` +
		`"e":"AQAB","alg":"RS256","kid":"2011-04-29"}`
	j, err := jwk.ParseKey([]byte(rfc7638))
	if err != nil {
		t.Fatal(err)
	}
	for _, kty := range []string{jwk.KeyTypeRSA, jwk.KeyTypeRSAHSM} {
		j.KeyType = kty
		tp, err := jwk.Thumbprint(j)
		if err != nil {
			t.Fatal(err)
		}
		if got := base64.RawURLEncoding.EncodeToString(tp); got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
			t.Errorf("%s thumbprint = %s", kty, got)
		}
	}

	// EC: the canonical form is {"crv","kty","x","y"}; check against a hash
	// computed here from the members.
	ec := mustPublicJWK(t, genKey(t, jwk.KeyTypeECHSM, 0, jwk.CurveP384))
	want := sha256Hex(fmt.Sprintf(`{"crv":"P-384","kty":"EC","x":"%s","y":"%s"}`,
		base64.RawURLEncoding.EncodeToString(ec.X), base64.RawURLEncoding.EncodeToString(ec.Y)))
	tp, err := jwk.Thumbprint(ec)
	if err != nil || fmt.Sprintf("%x", tp) != want {
		t.Errorf("EC thumbprint = %x, %v; want %s", tp, err, want)
	}

	for _, bad := range []*jwk.Key{
		{KeyType: jwk.KeyTypeOct, K: []byte{1}},
		{KeyType: jwk.KeyTypeRSA, N: []byte{1}},
		{KeyType: jwk.KeyTypeEC, Curve: "P<256>", X: []byte{1}, Y: []byte{1}},
	} {
		if _, err := jwk.Thumbprint(bad); err == nil {
			t.Errorf("Thumbprint(%+v) succeeded", bad.KeyType)
		}
	}
}

func TestDecodeBase64(t *testing.T) {
	t.Parallel()
	want := []byte{0xfb, 0xff, 0xbf}
	for _, s := range []string{"-_-_", "-_-_", "+/+/"} {
		got, err := jwk.DecodeBase64(s)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("DecodeBase64(%q) = %x, %v", s, got, err)
		}
	}
	want = []byte{0xfb, 0xff}
	for _, s := range []string{"-_8", "-_8=", "+/8=", "+/8"} {
		got, err := jwk.DecodeBase64(s)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("DecodeBase64(%q) = %x, %v", s, got, err)
		}
	}
	for _, s := range []string{"!!!!", "-/8", "a", "-_8=="} {
		if got, err := jwk.DecodeBase64(s); err == nil {
			t.Errorf("DecodeBase64(%q) = %x, want error", s, got)
		}
	}
	if got, err := jwk.DecodeBase64(""); got != nil || err != nil {
		t.Errorf("DecodeBase64(\"\") = %v, %v", got, err)
	}
}

// TestKeyJSONGolden: each testdata/*.in.json is parsed and re-encoded; the
// output must equal the .out.json beside it (padded and standard base64 in,
// unpadded base64url out; extra members dropped). Run with -update to
// rewrite the outputs after a deliberate change.
func TestKeyJSONGolden(t *testing.T) {
	t.Parallel()
	ins, err := filepath.Glob("testdata/*.in.json")
	if err != nil || len(ins) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range ins {
		data, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		k, err := jwk.ParseKey(data)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		got, err := json.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		outPath := strings.TrimSuffix(in, ".in.json") + ".out.json"
		if *update {
			if err := os.WriteFile(outPath, append(got, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(outPath)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != strings.TrimSpace(string(want)) {
			t.Errorf("%s:\n got %s\nwant %s", in, got, want)
		}
		var m map[string]any
		if err := json.Unmarshal(got, &m); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"n", "e", "d", "dp", "dq", "qi", "p", "q", "k", "key_hsm", "x", "y"} {
			if v, ok := m[f].(string); ok && strings.ContainsAny(v, "=+/") {
				t.Errorf("%s: %s is not unpadded base64url: %s", in, f, v)
			}
		}
	}
}

func TestParseKeyRejects(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{"kty":"OKP","x":"AA"}`,
		`{"n":"AQAB"}`,
		`{"kty":"RSA","n":"!!"}`,
		`{"kty":"RSA","n":5}`,
		`{"kty":"RSA"} x`,
		`[]`,
	} {
		if k, err := jwk.ParseKey([]byte(in)); err == nil || k != nil {
			t.Errorf("ParseKey(%s) = %+v, %v; want error", in, k, err)
		}
	}
}

func TestPrivateKeyRedacted(t *testing.T) {
	t.Parallel()
	k := &jwk.PrivateKey{Type: jwk.KeyTypeOct, Oct: []byte("0123456789abcdef")}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("key", "k", k, "v", *k)
	out := fmt.Sprintf("%v %+v %#v %s %v", k, k, k, k, *k) + buf.String()
	for _, leak := range []string{"0123456789abcdef", "30313233", "MDEyMzQ1"} {
		if strings.Contains(out, leak) {
			t.Errorf("key material leaked: %s", out)
		}
	}
	if !strings.Contains(out, "REDACTED") {
		t.Errorf("no REDACTED in %s", out)
	}
}

func sha256Hex(s string) string {
	return fmt.Sprintf("%x", sha256.Sum256([]byte(s)))
}
