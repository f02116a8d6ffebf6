package diskcrypt

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cvault/cvault/internal/barrier"
	"github.com/cvault/cvault/internal/keywrap"
	"github.com/cvault/cvault/internal/store"
)

// Wrapper keeps a DEK wrapped by a key the caller controls: the platform
// key (Platform), a customer's key version in a vault reached over HTTPS
// with the DES identity's token (the compute service's), or both (Double).
type Wrapper interface {
	// WrapKey wraps dek and names the key (version) that wrapped it.
	WrapKey(ctx context.Context, dek []byte) (wrapped []byte, keyID string, err error)
	// UnwrapKey unwraps what WrapKey returned under keyID. A key the
	// wrapper does not hold is ErrUnknownKey; a wrapped key that does not
	// open is ErrUnwrap (or the remote key service's own error).
	UnwrapKey(ctx context.Context, wrapped []byte, keyID string) ([]byte, error)
}

var (
	// ErrUnknownKey means a Wrapper was asked to unwrap under a key it does not hold.
	ErrUnknownKey = errors.New("diskcrypt: unknown wrapping key")
	// ErrUnwrap means a wrapped key did not open under its wrapping key.
	ErrUnwrap = errors.New("diskcrypt: wrapped data key does not open")
)

// Platform is the platform-key Wrapper: AES-256 key wrap with padding
// (RFC 5649, "A256KWP") under a random key shared by every server on the
// store, kept sealed by the barrier. It serves EncryptionAtRestWithPlatformKey
// disks and the outer layer of double encryption.
type Platform struct {
	id  string
	kek []byte
}

var _ Wrapper = (*Platform)(nil)

// NewPlatform returns a platform Wrapper for a 32-byte key named id.
func NewPlatform(id string, kek []byte) (*Platform, error) {
	if len(kek) != KeySize {
		return nil, ErrKeySize
	}
	if id == "" || strings.Contains(id, doubleSep) {
		return nil, fmt.Errorf("diskcrypt: platform key id %q must be non-empty without %q", id, doubleSep)
	}
	return &Platform{id: id, kek: append([]byte(nil), kek...)}, nil
}

// KeyID names the platform key.
func (p *Platform) KeyID() string { return p.id }

// String keeps the key out of logs.
func (p *Platform) String() string { return "diskcrypt.Platform(" + p.id + ", REDACTED)" }

// WrapKey implements Wrapper.
func (p *Platform) WrapKey(ctx context.Context, dek []byte) ([]byte, string, error) {
	w, err := keywrap.WrapPad(p.kek, dek)
	if err != nil {
		return nil, "", fmt.Errorf("diskcrypt: platform wrap: %w", err)
	}
	return w, p.id, nil
}

// UnwrapKey implements Wrapper.
func (p *Platform) UnwrapKey(ctx context.Context, wrapped []byte, keyID string) ([]byte, error) {
	if keyID != p.id {
		return nil, fmt.Errorf("platform key %q: %w", keyID, ErrUnknownKey)
	}
	dek, err := keywrap.UnwrapPad(p.kek, wrapped)
	if err != nil {
		return nil, fmt.Errorf("platform key %q: %w", keyID, ErrUnwrap)
	}
	return dek, nil
}

// Store kind and key of the platform key (sealed).
const (
	platformKind  = "disk-platform-key"
	platformKey   = "1"
	platformKeyID = "platform/1"
)

// LoadOrCreatePlatform returns the store's platform key, generating and
// storing it (sealed) on first use; servers racing to create it agree on
// the one that was stored first.
func LoadOrCreatePlatform(ctx context.Context, st store.Store, sl barrier.Sealer, rnd io.Reader) (*Platform, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	aad := platformKind + "/" + platformKey
	for range 2 {
		rec, err := st.Get(ctx, platformKind, platformKey)
		if err == nil {
			kek, err := sl.Unseal(aad, rec.Value)
			if err != nil {
				return nil, fmt.Errorf("diskcrypt: platform key: %w", err)
			}
			return NewPlatform(platformKeyID, kek)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("diskcrypt: platform key: %w", err)
		}
		kek := make([]byte, KeySize)
		if _, err := io.ReadFull(rnd, kek); err != nil {
			return nil, fmt.Errorf("diskcrypt: platform key: %w", err)
		}
		sealed, err := sl.Seal(aad, kek)
		if err != nil {
			return nil, fmt.Errorf("diskcrypt: platform key: %w", err)
		}
		_, err = store.Put(ctx, st, platformKind, platformKey, sealed, store.Absent)
		if err == nil {
			return NewPlatform(platformKeyID, kek)
		}
		if !errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("diskcrypt: platform key: %w", err)
		}
		// Another server stored one first: read it.
	}
	return nil, errors.New("diskcrypt: platform key: could not create or read")
}

// doubleSep joins the outer and inner key IDs of a Double wrap. Platform
// key IDs never contain it; the inner (customer) ID may.
const doubleSep = "|"

// Double wraps with inner first (the customer's key), then wraps that
// result with outer (the platform key): EncryptionAtRestWithPlatformAndCustomerKeys.
// Reading the disk needs both keys, so either party alone can stop it.
// Its key IDs are outerID + "|" + innerID.
func Double(outer, inner Wrapper) Wrapper { return double{outer: outer, inner: inner} }

type double struct{ outer, inner Wrapper }

func (d double) WrapKey(ctx context.Context, dek []byte) ([]byte, string, error) {
	w1, innerID, err := d.inner.WrapKey(ctx, dek)
	if err != nil {
		return nil, "", err
	}
	w2, outerID, err := d.outer.WrapKey(ctx, w1)
	if err != nil {
		return nil, "", err
	}
	if strings.Contains(outerID, doubleSep) {
		return nil, "", fmt.Errorf("diskcrypt: outer key id %q contains %q", outerID, doubleSep)
	}
	return w2, outerID + doubleSep + innerID, nil
}

func (d double) UnwrapKey(ctx context.Context, wrapped []byte, keyID string) ([]byte, error) {
	outerID, innerID, ok := SplitDoubleKeyID(keyID)
	if !ok {
		return nil, fmt.Errorf("double key id %q: %w", keyID, ErrUnknownKey)
	}
	w1, err := d.outer.UnwrapKey(ctx, wrapped, outerID)
	if err != nil {
		return nil, err
	}
	return d.inner.UnwrapKey(ctx, w1, innerID)
}

// SplitDoubleKeyID splits a Double key ID into its outer and inner key IDs.
func SplitDoubleKeyID(keyID string) (outer, inner string, ok bool) {
	outer, inner, ok = strings.Cut(keyID, doubleSep)
	return outer, inner, ok && outer != "" && inner != ""
}
