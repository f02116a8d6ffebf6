package keyops_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/cvault/cvault/internal/jwk"
	"github.com/cvault/cvault/internal/keyops"
)

// rawRSADecrypt opens an RSA ciphertext with plain crypto/rsa.
func rawRSADecrypt(t *testing.T, priv *rsa.PrivateKey, alg string, ct []byte) []byte {
	t.Helper()
	var (
		pt  []byte
		err error
	)
	switch alg {
	case keyops.RSAOAEP:
		pt, err = rsa.DecryptOAEP(sha1.New(), nil, priv, ct, nil)
	case keyops.RSAOAEP256:
		pt, err = rsa.DecryptOAEP(sha256.New(), nil, priv, ct, nil)
	case keyops.RSA15:
		//lint:ignore SA1019 the algorithm under test
		pt, err = rsa.DecryptPKCS1v15(nil, priv, ct)
	}
	if err != nil {
		t.Fatalf("raw %s decrypt: %v", alg, err)
	}
	return pt
}

func rawRSAEncrypt(t *testing.T, pub *rsa.PublicKey, alg string, pt []byte) []byte {
	t.Helper()
	var (
		ct  []byte
		err error
	)
	switch alg {
	case keyops.RSAOAEP:
		ct, err = rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, pt, nil)
	case keyops.RSAOAEP256:
		ct, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, pt, nil)
	case keyops.RSA15:
		//lint:ignore SA1019 the algorithm under test
		ct, err = rsa.EncryptPKCS1v15(rand.Reader, pub, pt)
	}
	if err != nil {
		t.Fatalf("raw %s encrypt: %v", alg, err)
	}
	return ct
}

var rsaEncAlgs = []string{keyops.RSAOAEP, keyops.RSAOAEP256, keyops.RSA15}

func TestRSAEncryptAndWrap(t *testing.T) {
	t.Parallel()
	k := rsaKey(t)
	msg := []byte("a 32-byte data encryption key!!!")
	for _, alg := range rsaEncAlgs {
		// encrypt and wrapKey are the same operation for RSA keys.
		enc, err := keyops.Encrypt(rand.Reader, k, alg, msg, nil, nil)
		if err != nil {
			t.Fatalf("Encrypt %s: %v", alg, err)
		}
		if enc.IV != nil || enc.Tag != nil {
			t.Errorf("%s: iv/tag on an RSA result", alg)
		}
		wrapped, err := keyops.WrapKey(rand.Reader, k, alg, msg)
		if err != nil {
			t.Fatalf("WrapKey %s: %v", alg, err)
		}
		for _, ct := range [][]byte{enc.Value, wrapped} {
			if got := rawRSADecrypt(t, k.RSA, alg, ct); !bytes.Equal(got, msg) {
				t.Errorf("%s: raw decrypt = %q", alg, got)
			}
		}
		// And the other way: plain Go encrypts, keyops opens.
		ct := rawRSAEncrypt(t, &k.RSA.PublicKey, alg, msg)
		if got, err := keyops.Decrypt(k, alg, ct, nil, nil, nil); err != nil || !bytes.Equal(got, msg) {
			t.Errorf("Decrypt %s: %q, %v", alg, got, err)
		}
		if got, err := keyops.UnwrapKey(k, alg, ct); err != nil || !bytes.Equal(got, msg) {
			t.Errorf("UnwrapKey %s: %q, %v", alg, got, err)
		}
	}
}

func TestGCM(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		alg  string
		bits int
	}{{keyops.A128GCM, 128}, {keyops.A192GCM, 192}, {keyops.A256GCM, 256}} {
		k := octKey(t, tt.bits)
		msg, aad := []byte("disk encryption key material"), []byte("vault/key/v1")
		enc, err := keyops.Encrypt(rand.Reader, k, tt.alg, msg, nil, aad)
		if err != nil {
			t.Fatalf("%s: %v", tt.alg, err)
		}
		if len(enc.IV) != 12 || len(enc.Tag) != 16 || len(enc.Value) != len(msg) || !bytes.Equal(enc.AAD, aad) {
			t.Fatalf("%s: iv %d, tag %d, value %d bytes", tt.alg, len(enc.IV), len(enc.Tag), len(enc.Value))
		}
		// Independent open with crypto/cipher: value ‖ tag is the standard sealed form.
		b, _ := aes.NewCipher(k.Oct)
		g, _ := cipher.NewGCM(b)
		if got, err := g.Open(nil, enc.IV, append(bytes.Clone(enc.Value), enc.Tag...), aad); err != nil || !bytes.Equal(got, msg) {
			t.Errorf("%s: raw open: %v", tt.alg, err)
		}
		if got, err := keyops.Decrypt(k, tt.alg, enc.Value, enc.IV, aad, enc.Tag); err != nil || !bytes.Equal(got, msg) {
			t.Errorf("%s: Decrypt: %v", tt.alg, err)
		}
		// A given iv is used as is; a missing one is fresh each time.
		iv := bytes.Repeat([]byte{3}, 12)
		given, err := keyops.Encrypt(rand.Reader, k, tt.alg, msg, iv, nil)
		if err != nil || !bytes.Equal(given.IV, iv) {
			t.Errorf("%s: given iv: %v", tt.alg, err)
		}
		raw := g.Seal(nil, iv, msg, nil)
		if !bytes.Equal(append(bytes.Clone(given.Value), given.Tag...), raw) {
			t.Errorf("%s: given-iv output differs from crypto/cipher", tt.alg)
		}
		again, _ := keyops.Encrypt(rand.Reader, k, tt.alg, msg, nil, aad)
		if bytes.Equal(again.IV, enc.IV) {
			t.Errorf("%s: iv repeated", tt.alg)
		}
	}
}

func TestAESKeyWrap(t *testing.T) {
	t.Parallel()
	// RFC 3394 §4.1 and §4.6 through the key vault operation.
	for _, tt := range []struct{ alg, kek, data, want string }{
		{keyops.A128KW, "000102030405060708090A0B0C0D0E0F", "00112233445566778899AABBCCDDEEFF",
			"1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"},
		{keyops.A256KW, "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
			"00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
			"28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"},
	} {
		kek, _ := hex.DecodeString(tt.kek)
		data, _ := hex.DecodeString(tt.data)
		want, _ := hex.DecodeString(tt.want)
		k := &jwk.PrivateKey{Type: jwk.KeyTypeOctHSM, Oct: kek}
		got, err := keyops.WrapKey(rand.Reader, k, tt.alg, data)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: WrapKey = %x, %v", tt.alg, got, err)
		}
		back, err := keyops.UnwrapKey(k, tt.alg, want)
		if err != nil || !bytes.Equal(back, data) {
			t.Errorf("%s: UnwrapKey = %x, %v", tt.alg, back, err)
		}
	}
	k := octKey(t, 192)
	dek := bytes.Repeat([]byte{0x42}, 32)
	ct, err := keyops.WrapKey(rand.Reader, k, keyops.A192KW, dek)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := keyops.UnwrapKey(k, keyops.A192KW, ct); err != nil || !bytes.Equal(got, dek) {
		t.Errorf("A192KW round trip: %v", err)
	}
}

// TestDecryptFailures: every way a decrypt or unwrap can fail after the
// algorithm checks gives exactly ErrDecryption, nothing more specific.
func TestDecryptFailures(t *testing.T) {
	t.Parallel()
	r := rsaKey(t)
	o := octKey(t, 256)
	msg := bytes.Repeat([]byte{1}, 32)
	flip := func(b []byte, i int) []byte { c := bytes.Clone(b); c[i] ^= 1; return c }

	gcm, err := keyops.Encrypt(rand.Reader, o, keyops.A256GCM, msg, nil, []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	kw, _ := keyops.WrapKey(rand.Reader, o, keyops.A256KW, msg)
	cases := map[string]func() ([]byte, error){
		"GCM value": func() ([]byte, error) {
			return keyops.Decrypt(o, keyops.A256GCM, flip(gcm.Value, 0), gcm.IV, gcm.AAD, gcm.Tag)
		},
		"GCM tag": func() ([]byte, error) {
			return keyops.Decrypt(o, keyops.A256GCM, gcm.Value, gcm.IV, gcm.AAD, flip(gcm.Tag, 15))
		},
		"GCM iv": func() ([]byte, error) {
			return keyops.Decrypt(o, keyops.A256GCM, gcm.Value, flip(gcm.IV, 0), gcm.AAD, gcm.Tag)
		},
		"GCM aad": func() ([]byte, error) { return keyops.Decrypt(o, keyops.A256GCM, gcm.Value, gcm.IV, nil, gcm.Tag) },
		"A256KW":  func() ([]byte, error) { return keyops.UnwrapKey(o, keyops.A256KW, flip(kw, 3)) },
		"A256KW short": func() ([]byte, error) {
			return keyops.UnwrapKey(o, keyops.A256KW, kw[:16])
		},
	}
	for _, alg := range rsaEncAlgs {
		ct := rawRSAEncrypt(t, &r.RSA.PublicKey, alg, msg)
		cases[alg+" tampered"] = func() ([]byte, error) { return keyops.Decrypt(r, alg, flip(ct, 100), nil, nil, nil) }
		cases[alg+" truncated"] = func() ([]byte, error) { return keyops.UnwrapKey(r, alg, ct[:200]) }
	}
	// OAEP under the other hash must not open.
	ct := rawRSAEncrypt(t, &r.RSA.PublicKey, keyops.RSAOAEP, msg)
	cases["OAEP-1 as OAEP-256"] = func() ([]byte, error) { return keyops.UnwrapKey(r, keyops.RSAOAEP256, ct) }
	for name, f := range cases {
		if pt, err := f(); err != keyops.ErrDecryption || pt != nil {
			t.Errorf("%s: %x, %v; want exactly ErrDecryption", name, pt, err)
		}
	}
}

func TestInvalidInput(t *testing.T) {
	t.Parallel()
	r := rsaKey(t)
	o := octKey(t, 128)
	for name, f := range map[string]func() error{
		"GCM iv 8 bytes": func() error {
			_, err := keyops.Encrypt(rand.Reader, o, keyops.A128GCM, []byte("x"), make([]byte, 8), nil)
			return err
		},
		"GCM decrypt without tag": func() error {
			_, err := keyops.Decrypt(o, keyops.A128GCM, []byte("x"), make([]byte, 12), nil, nil)
			return err
		},
		"GCM decrypt without iv": func() error {
			_, err := keyops.Decrypt(o, keyops.A128GCM, []byte("x"), nil, nil, make([]byte, 16))
			return err
		},
		"OAEP-256 plaintext 191 bytes": func() error {
			_, err := keyops.Encrypt(rand.Reader, r, keyops.RSAOAEP256, make([]byte, 191), nil, nil)
			return err
		},
		"A128KW plaintext 15 bytes": func() error {
			_, err := keyops.WrapKey(rand.Reader, o, keyops.A128KW, make([]byte, 15))
			return err
		},
	} {
		if err := f(); !errors.Is(err, keyops.ErrInvalidInput) {
			t.Errorf("%s: %v, want ErrInvalidInput", name, err)
		}
	}
}
