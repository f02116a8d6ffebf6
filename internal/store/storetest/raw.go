package storetest

import (
	"bytes"
	"context"
	"fmt"

	"github.com/cvault/cvault/internal/store"
)

// RawDumper is implemented by every backend: the bytes it keeps, as they
// are at rest (the bbolt file; the PostgreSQL records table), without any
// decoding a store.Reader would apply.
type RawDumper interface {
	RawDump(ctx context.Context) ([]byte, error)
}

// RawScan reports whether marker occurs anywhere in s's raw bytes. Tests use
// it to prove that a secret written through the services (sealed by the
// barrier) never reaches the store in plaintext.
func RawScan(ctx context.Context, s store.Store, marker []byte) (bool, error) {
	d, ok := s.(RawDumper)
	if !ok {
		return false, fmt.Errorf("storetest: %T cannot dump its raw bytes", s)
	}
	raw, err := d.RawDump(ctx)
	if err != nil {
		return false, err
	}
	return bytes.Contains(raw, marker), nil
}
