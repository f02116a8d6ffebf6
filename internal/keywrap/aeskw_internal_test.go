package keywrap

import (
	"crypto/aes"
	"encoding/binary"
	"errors"
	"testing"
)

// TestUnwrapPadRejectsBadIndicator builds RFC 5649 ciphertexts whose integrity
// value decrypts correctly but whose length indicator or padding is wrong
// (RFC 5649 §3 steps 3–4); the public API cannot produce them.
func TestUnwrapPadRejectsBadIndicator(t *testing.T) {
	kek := make([]byte, 16)
	b, err := aes.NewCipher(kek)
	if err != nil {
		t.Fatal(err)
	}
	seal := func(mli uint32, data []byte) []byte {
		var aiv [8]byte
		copy(aiv[:4], kwpPrefix[:])
		binary.BigEndian.PutUint32(aiv[4:], mli)
		out := make([]byte, 8+len(data))
		copy(out[8:], data)
		if len(data) == 8 {
			copy(out[:8], aiv[:])
			b.Encrypt(out, out)
			return out
		}
		wrapBlocks(b, aiv, out)
		return out
	}
	for _, tt := range []struct {
		name string
		mli  uint32
		data []byte
		ok   bool
	}{
		{"valid 20 in 24", 20, append(make([]byte, 20), 0, 0, 0, 0), true},
		{"valid 3 in 8", 3, []byte{1, 2, 3, 0, 0, 0, 0, 0}, true},
		{"mli 0", 0, make([]byte, 8), false},
		{"mli 16 in 24 (too much padding)", 16, make([]byte, 24), false},
		{"mli 25 in 24", 25, make([]byte, 24), false},
		{"mli 9 in 8", 9, make([]byte, 8), false},
		{"mli huge", 1 << 31, make([]byte, 24), false},
		{"non-zero padding", 20, append(make([]byte, 20), 0, 0, 1, 0), false},
		{"non-zero padding, one block", 3, []byte{1, 2, 3, 0, 0, 0, 0, 9}, false},
	} {
		pt, err := UnwrapPad(kek, seal(tt.mli, tt.data))
		if tt.ok {
			if err != nil || len(pt) != int(tt.mli) {
				t.Errorf("%s: %x, %v", tt.name, pt, err)
			}
			continue
		}
		if !errors.Is(err, ErrUnwrap) || pt != nil {
			t.Errorf("%s: %x, %v; want ErrUnwrap", tt.name, pt, err)
		}
	}
}
