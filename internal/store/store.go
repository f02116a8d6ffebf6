// Package store holds cvault's one persistence interface: a transactional
// document store of JSON records grouped by kind, with per-record versions
// that serve as ARM ETags and as the basis of optimistic concurrency.
//
// Two implementations pass the same conformance suite (storetest): the
// embedded default (store/embedded, bbolt) and PostgreSQL (store/postgres),
// which is how several cvault servers share tenants, vaults and keys.
// Secret material is sealed by the barrier before it reaches a Store; the
// store itself never sees plaintext keys.
package store

import (
	"context"
	"errors"
)

// Sentinel errors every implementation returns (wrapped or bare).
var (
	// ErrNotFound: no record under that kind and key.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a write's version precondition did not hold (the record
	// changed, exists when it must not, or is missing when a version was required).
	ErrConflict = errors.New("store: version conflict")
)

// Version preconditions for Put and Delete. A positive value requires the
// record's current version to equal it.
const (
	// Any writes unconditionally (create or overwrite; delete if present).
	Any int64 = 0
	// Absent requires that no record exists (create only).
	Absent int64 = -1
)

// Record is one stored document.
type Record struct {
	Kind  string // collection, e.g. "vault"; a short constant owned by the service; non-empty
	Key   string // unique within Kind; non-empty, '/'-separated, byte-exact (callers fold case where Azure does)
	Value []byte // opaque to the store (services store JSON); nil and empty read back alike
	// Version is assigned by the store on every write, strictly increasing
	// across the whole store, and never reused; it is the record's ETag.
	// "Increasing" is in allocation order: with concurrent writers (the
	// PostgreSQL backend) a transaction may commit a smaller version after
	// another committed a larger one, so a version is no cursor for "what
	// changed since" (use Changes). Each record's own versions always grow.
	Version int64
}

// Reader reads records. Returned records and their Values belong to the
// caller; the store keeps no reference to them, nor to a value passed to Put.
type Reader interface {
	// Get returns the record, or ErrNotFound.
	Get(ctx context.Context, kind, key string) (Record, error)
	// List returns the records of kind whose key starts with prefix, in
	// ascending key order, beginning after the key `after` ("" = from the
	// start), at most limit records (limit <= 0 = no limit).
	List(ctx context.Context, kind, prefix, after string, limit int) ([]Record, error)
}

// Tx is a read-write transaction. Reads see the transaction's own writes.
type Tx interface {
	Reader
	// Put writes value under kind/key if the precondition ifVersion holds
	// (Any, Absent, or an exact version), else ErrConflict. It returns the
	// new version.
	Put(ctx context.Context, kind, key string, value []byte, ifVersion int64) (int64, error)
	// Delete removes kind/key if the precondition holds. Deleting a missing
	// record is ErrNotFound unless ifVersion is Any; Absent on an existing
	// record is ErrConflict.
	Delete(ctx context.Context, kind, key string, ifVersion int64) error
}

// Store is the persistence interface of the whole project.
type Store interface {
	Reader
	// Update runs fn in a serializable read-write transaction and commits
	// it if fn returns nil. Implementations retry fn on serialization
	// failures, so fn must have no side effects outside tx. An error from
	// fn aborts the transaction and is returned unchanged (wrapped at most);
	// a failed precondition inside fn does not spoil the transaction if fn
	// carries on. A panic in fn rolls back and propagates.
	Update(ctx context.Context, fn func(tx Tx) error) error
	// View runs fn against a consistent read-only snapshot. fn must not
	// wait for an Update to finish: an embedded writer may have to wait for
	// open snapshots (bbolt remaps its file).
	View(ctx context.Context, fn func(r Reader) error) error
	// Changes returns a counter that grows whenever any record of kind is
	// written or deleted, by this or any other server on the same database.
	// Caches compare it to decide whether to reload (authz index, signing keys):
	// compare for inequality only; the value means nothing across backends.
	Changes(ctx context.Context, kind string) (int64, error)
	// Ping reports whether the backing store is reachable (readyz).
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// Put is a single-record Update.
func Put(ctx context.Context, s Store, kind, key string, value []byte, ifVersion int64) (int64, error) {
	var v int64
	err := s.Update(ctx, func(tx Tx) error {
		var err error
		v, err = tx.Put(ctx, kind, key, value, ifVersion)
		return err
	})
	return v, err
}

// Delete is a single-record Update.
func Delete(ctx context.Context, s Store, kind, key string, ifVersion int64) error {
	return s.Update(ctx, func(tx Tx) error { return tx.Delete(ctx, kind, key, ifVersion) })
}
