package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cvault/cvault/internal/store"
)

// getJSON reads kind/key into v; a missing record is ErrNotFound.
func getJSON(ctx context.Context, r store.Reader, kind, key string, v any) (int64, error) {
	rec, err := r.Get(ctx, kind, key)
	if errors.Is(err, store.ErrNotFound) {
		return 0, fmt.Errorf("%s %s: %w", kind, key, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("identity: read %s: %w", kind, err)
	}
	if err := json.Unmarshal(rec.Value, v); err != nil {
		return 0, fmt.Errorf("identity: decode %s %s: %w", kind, key, err)
	}
	return rec.Version, nil
}

// putJSON writes v under kind/key with the version precondition; a failed
// precondition is ErrConflict.
func putJSON(ctx context.Context, tx store.Tx, kind, key string, v any, ifVersion int64) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("identity: encode %s: %w", kind, err)
	}
	if _, err := tx.Put(ctx, kind, key, b, ifVersion); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("%s %s: %w", kind, key, ErrConflict)
		}
		return fmt.Errorf("identity: write %s: %w", kind, err)
	}
	return nil
}

func deleteKey(ctx context.Context, tx store.Tx, kind, key string) error {
	if err := tx.Delete(ctx, kind, key, store.Any); err != nil {
		return fmt.Errorf("identity: delete %s: %w", kind, err)
	}
	return nil
}

// listJSON decodes every record of kind under prefix.
func listJSON[T any](ctx context.Context, r store.Reader, kind, prefix string) ([]T, error) {
	recs, err := r.List(ctx, kind, prefix, "", 0)
	if err != nil {
		return nil, fmt.Errorf("identity: list %s: %w", kind, err)
	}
	out := make([]T, 0, len(recs))
	for _, rec := range recs {
		var v T
		if err := json.Unmarshal(rec.Value, &v); err != nil {
			return nil, fmt.Errorf("identity: decode %s %s: %w", kind, rec.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}
