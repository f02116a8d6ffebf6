package barrier

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func mustNew(t *testing.T, key []byte) *AEAD {
	t.Helper()
	a, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestSealUnseal(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	a := mustNew(t, key)
	secret := []byte("private key bytes")
	sealed, err := a.Seal("key/v/k/1", secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("sealed blob contains the plaintext")
	}
	got, err := a.Unseal("key/v/k/1", sealed)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unseal = %q, %v", got, err)
	}
	other := mustNew(t, bytes.Repeat([]byte{8}, KeySize))
	for name, tc := range map[string]struct {
		s    Sealer
		aad  string
		blob []byte
	}{
		"other record (swapped blob)": {a, "key/v/k/2", sealed},
		"other root key":              {other, "key/v/k/1", sealed},
		"truncated":                   {a, "key/v/k/1", sealed[:10]},
		"empty":                       {a, "key/v/k/1", nil},
		"flipped bit":                 {a, "key/v/k/1", flip(sealed, len(sealed)-1)},
		"unknown format":              {a, "key/v/k/1", flip(sealed, 0)},
	} {
		if _, err := tc.s.Unseal(tc.aad, tc.blob); !errors.Is(err, ErrUnseal) {
			t.Errorf("%s: Unseal err = %v, want ErrUnseal", name, err)
		}
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 1
	return c
}

func TestParseKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0xab}, KeySize)
	for _, in := range []string{
		"abababababababababababababababababababababababababababababababab",
		"q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=",
		"q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s\n",
		string(raw),
	} {
		k, err := ParseKey([]byte(in))
		if err != nil || !bytes.Equal(k, raw) {
			t.Errorf("ParseKey(%q) = %x, %v", in, k, err)
		}
	}
	if _, err := ParseKey([]byte("short")); err == nil {
		t.Error("ParseKey accepted a short key")
	}
}

func TestLoadOrCreateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "root.key")
	k1, created, err := LoadOrCreateFile(path)
	if err != nil || !created {
		t.Fatalf("first load: created=%v err=%v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, %v", fi.Mode(), err)
	}
	k2, created, err := LoadOrCreateFile(path)
	if err != nil || created || !bytes.Equal(k1, k2) {
		t.Fatalf("second load: created=%v err=%v equal=%v", created, err, bytes.Equal(k1, k2))
	}
}
