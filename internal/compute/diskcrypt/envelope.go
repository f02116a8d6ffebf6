package diskcrypt

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// WrappedKey is a DEK as stored: wrapped, and the key (version) that wraps it.
type WrappedKey struct {
	Wrapped []byte `json:"wrapped"`
	KeyID   string `json:"keyId"`
}

// KeyRecord is the data-key part of a disk's record. Current always opens
// to the disk's DEK. During a rotation (seed 004) Pending holds the same
// DEK wrapped under the new key; it is written ahead, in its own store
// update, and Commit switches it to Current in one later update, so a
// crash at any point leaves a disk readable under Current.
// Check identifies the DEK (a keyed digest of it), so an unwrap that
// yields some other key — a mixed-up record or wrapper — is caught
// before any sector is read or written with it.
type KeyRecord struct {
	Current WrappedKey  `json:"current"`
	Pending *WrappedKey `json:"pending,omitempty"`
	Check   []byte      `json:"check"`
}

var (
	// ErrWrongKey means an unwrapped DEK does not match the record's check value.
	ErrWrongKey = errors.New("diskcrypt: unwrapped data key does not match the disk")
	// ErrNoPending means Commit or VerifyPending found no pending re-wrap.
	ErrNoPending = errors.New("diskcrypt: no pending re-wrap")
)

// checkValue is the DEK's 8-byte check value: HMAC-SHA-256(dek, label),
// which says nothing useful about a 256-bit key.
func checkValue(dek []byte) []byte {
	m := hmac.New(sha256.New, dek)
	m.Write([]byte("cvault/dek-check/v1"))
	return m.Sum(nil)[:8]
}

// NewKey generates a disk's DEK from rnd and wraps it with w. The caller
// builds the disk's Cipher from dek and then wipes it.
func NewKey(ctx context.Context, w Wrapper, rnd io.Reader) (dek []byte, rec KeyRecord, err error) {
	dek = make([]byte, KeySize)
	if _, err := io.ReadFull(rnd, dek); err != nil {
		return nil, KeyRecord{}, fmt.Errorf("diskcrypt: data key: %w", err)
	}
	wrapped, keyID, err := w.WrapKey(ctx, dek)
	if err != nil {
		clear(dek)
		return nil, KeyRecord{}, fmt.Errorf("diskcrypt: wrap data key: %w", err)
	}
	return dek, KeyRecord{Current: WrappedKey{Wrapped: wrapped, KeyID: keyID}, Check: checkValue(dek)}, nil
}

// Unwrap opens Current with w and checks the result.
func (r KeyRecord) Unwrap(ctx context.Context, w Wrapper) ([]byte, error) {
	return r.open(ctx, w, r.Current)
}

func (r KeyRecord) open(ctx context.Context, w Wrapper, k WrappedKey) ([]byte, error) {
	dek, err := w.UnwrapKey(ctx, k.Wrapped, k.KeyID)
	if err != nil {
		return nil, fmt.Errorf("diskcrypt: unwrap data key (key %s): %w", k.KeyID, err)
	}
	if len(dek) != KeySize || !hmac.Equal(checkValue(dek), r.Check) {
		clear(dek)
		return nil, fmt.Errorf("diskcrypt: key %s: %w", k.KeyID, ErrWrongKey)
	}
	return dek, nil
}

// Rewrap returns r with Pending set to the DEK re-wrapped by to (unwrapped
// from Current with from). Current is untouched. Calling it again replaces
// Pending, so a retried rotation step is idempotent.
func (r KeyRecord) Rewrap(ctx context.Context, from, to Wrapper) (KeyRecord, error) {
	dek, err := r.Unwrap(ctx, from)
	if err != nil {
		return r, err
	}
	defer clear(dek)
	wrapped, keyID, err := to.WrapKey(ctx, dek)
	if err != nil {
		return r, fmt.Errorf("diskcrypt: re-wrap data key: %w", err)
	}
	r.Pending = &WrappedKey{Wrapped: wrapped, KeyID: keyID}
	return r, nil
}

// VerifyPending unwraps Pending with w and checks it opens to the disk's
// DEK: a rotation may call it before Commit to be sure the new wrapping
// really works (one more call to the key's vault).
func (r KeyRecord) VerifyPending(ctx context.Context, w Wrapper) error {
	if r.Pending == nil {
		return ErrNoPending
	}
	dek, err := r.open(ctx, w, *r.Pending)
	clear(dek)
	return err
}

// Commit returns r with Pending made Current.
func (r KeyRecord) Commit() (KeyRecord, error) {
	if r.Pending == nil {
		return r, ErrNoPending
	}
	r.Current, r.Pending = *r.Pending, nil
	return r, nil
}
