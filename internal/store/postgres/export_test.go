package postgres

import "context"

// Prune exposes the change-log folding to the external tests.
func (db *DB) Prune(ctx context.Context, kind string) error { return db.prune(ctx, kind) }
