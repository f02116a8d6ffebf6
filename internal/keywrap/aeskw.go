// Package keywrap holds the key wrap formats of Key Vault and Secure Key
// Release: AES key wrap (RFC 3394, Key Vault's A128KW/A192KW/A256KW), AES
// key wrap with padding (RFC 5649), the RSA-AES hybrid wrap of the release
// enc algorithms (CKM_RSA_AES_KEY_WRAP, RSA_AES_KEY_WRAP_256/384) and the
// key_hsm blob that carries its output (wire §2.4).
//
// It serves the key release of the confidential-VM and container seeds on
// the service side and the guest side alike. The AES wraps are written here
// because neither the standard library nor a pinned module offers RFC 5649;
// they are tested against the RFCs' own vectors.
package keywrap

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

var (
	// ErrUnwrap: the ciphertext failed its integrity check (wrong key or
	// tampered). It says nothing about which check failed.
	ErrUnwrap = errors.New("keywrap: unwrap failed")
	// ErrInputLength: the plaintext or ciphertext length is not one the
	// format allows.
	ErrInputLength = errors.New("keywrap: invalid input length")
	// ErrKeySize: the KEK is not 16, 24 or 32 bytes.
	ErrKeySize = errors.New("keywrap: KEK must be 16, 24 or 32 bytes")
)

// defaultIV is RFC 3394 §2.2.3.1's initial value; kwpPrefix is the first
// half of RFC 5649 §3's alternative initial value (the MLI follows).
var (
	defaultIV = [8]byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6}
	kwpPrefix = [4]byte{0xa6, 0x59, 0x59, 0xa6}
)

// Wrap wraps plaintext (a multiple of 8 bytes, at least 16) under kek with
// RFC 3394 AES key wrap. The result is 8 bytes longer.
func Wrap(kek, plaintext []byte) ([]byte, error) {
	if len(plaintext) < 16 || len(plaintext)%8 != 0 {
		return nil, fmt.Errorf("%w: RFC 3394 plaintext of %d bytes (want a multiple of 8, at least 16)", ErrInputLength, len(plaintext))
	}
	b, err := newCipher(kek)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 8+len(plaintext))
	copy(out[8:], plaintext)
	wrapBlocks(b, defaultIV, out)
	return out, nil
}

// Unwrap reverses Wrap. Any integrity failure is ErrUnwrap.
func Unwrap(kek, ciphertext []byte) ([]byte, error) {
	if len(ciphertext) < 24 || len(ciphertext)%8 != 0 {
		return nil, fmt.Errorf("%w: RFC 3394 ciphertext of %d bytes", ErrInputLength, len(ciphertext))
	}
	b, err := newCipher(kek)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(ciphertext))
	copy(out, ciphertext)
	a := unwrapBlocks(b, out)
	if subtle.ConstantTimeCompare(a[:], defaultIV[:]) != 1 {
		return nil, ErrUnwrap
	}
	return out[8:], nil
}

// WrapPad wraps plaintext of any length from 1 byte to 2^32-1 bytes under
// kek with RFC 5649 AES key wrap with padding. The result is the plaintext
// padded to a multiple of 8, plus 8 bytes.
func WrapPad(kek, plaintext []byte) ([]byte, error) {
	if len(plaintext) == 0 || uint64(len(plaintext)) > math.MaxUint32 {
		return nil, fmt.Errorf("%w: RFC 5649 plaintext of %d bytes", ErrInputLength, len(plaintext))
	}
	b, err := newCipher(kek)
	if err != nil {
		return nil, err
	}
	var aiv [8]byte
	copy(aiv[:4], kwpPrefix[:])
	binary.BigEndian.PutUint32(aiv[4:], uint32(len(plaintext)))
	padded := (len(plaintext) + 7) / 8 * 8
	out := make([]byte, 8+padded) // zero padding comes free
	copy(out[8:], plaintext)
	if padded == 8 {
		// RFC 5649 §4.1: one semiblock is encrypted as a single AES block.
		copy(out[:8], aiv[:])
		b.Encrypt(out, out)
		return out, nil
	}
	wrapBlocks(b, aiv, out)
	return out, nil
}

// UnwrapPad reverses WrapPad. Any integrity failure (initial value, length
// indicator or padding) is ErrUnwrap.
func UnwrapPad(kek, ciphertext []byte) ([]byte, error) {
	if len(ciphertext) < 16 || len(ciphertext)%8 != 0 {
		return nil, fmt.Errorf("%w: RFC 5649 ciphertext of %d bytes", ErrInputLength, len(ciphertext))
	}
	b, err := newCipher(kek)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(ciphertext))
	var a [8]byte
	if len(ciphertext) == 16 {
		b.Decrypt(out, ciphertext)
		copy(a[:], out[:8])
	} else {
		copy(out, ciphertext)
		a = unwrapBlocks(b, out)
	}
	data := out[8:]
	// RFC 5649 §3 checks, all evaluated before deciding, so the time taken
	// does not say which one failed.
	ok := subtle.ConstantTimeCompare(a[:4], kwpPrefix[:])
	mli := binary.BigEndian.Uint32(a[4:])
	n := uint64(len(data))
	inRange := uint64(mli) > n-8 && uint64(mli) <= n
	var pad byte
	if inRange {
		for _, c := range data[mli:] {
			pad |= c
		}
	}
	if ok != 1 || !inRange || pad != 0 {
		return nil, ErrUnwrap
	}
	return data[:mli], nil
}

// wrapBlocks runs RFC 3394 §2.2.1 (index form) over buf = A ‖ R[1..n], with
// A initialised to iv; buf[8:] holds the plaintext on entry.
func wrapBlocks(b cipher.Block, iv [8]byte, buf []byte) {
	n := len(buf)/8 - 1
	var blk [16]byte
	copy(blk[:8], iv[:])
	for j := range 6 {
		for i := 1; i <= n; i++ {
			r := buf[8*i : 8*i+8]
			copy(blk[8:], r)
			b.Encrypt(blk[:], blk[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(blk[:8], binary.BigEndian.Uint64(blk[:8])^t)
			copy(r, blk[8:])
		}
	}
	copy(buf[:8], blk[:8])
}

// unwrapBlocks runs RFC 3394 §2.2.2 over buf = C[0..n] in place and returns
// the recovered A; buf[8:] then holds the candidate plaintext.
func unwrapBlocks(b cipher.Block, buf []byte) [8]byte {
	n := len(buf)/8 - 1
	var blk [16]byte
	copy(blk[:8], buf[:8])
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			r := buf[8*i : 8*i+8]
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(blk[:8], binary.BigEndian.Uint64(blk[:8])^t)
			copy(blk[8:], r)
			b.Decrypt(blk[:], blk[:])
			copy(r, blk[8:])
		}
	}
	var a [8]byte
	copy(a[:], blk[:8])
	return a
}

func newCipher(kek []byte) (cipher.Block, error) {
	switch len(kek) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w (got %d)", ErrKeySize, len(kek))
	}
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("keywrap: %w", err)
	}
	return b, nil
}
