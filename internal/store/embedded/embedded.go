// Package embedded is cvault's default store.Store: a single bbolt file in the
// data directory (pure Go, fsync on every commit), used by a single server.
// Several servers share state through store/postgres instead.
//
// Layout: a top-level "records" bucket holds one nested bucket per kind,
// whose keys are the record keys and whose values are an 8-byte big-endian
// version followed by the record value. A bucket per kind (rather than one
// bucket of kind-prefixed keys) keeps kinds apart without an escaping scheme
// for the separator, and makes List a plain cursor range over one bucket.
// The "meta" bucket holds the schema version, the global version sequence
// (its bucket sequence) and a nested "changes" bucket of per-kind counters.
package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/cvault/cvault/internal/store"
)

var (
	// ErrLocked: another process (or another DB in this process) has the file open.
	ErrLocked = errors.New("embedded store: database file is locked by another process")
	// ErrSchemaTooNew: the file was written by a newer cvault; refusing to open it.
	ErrSchemaTooNew = errors.New("embedded store: schema is newer than this cvault understands")
)

var (
	bucketRecords = []byte("records")
	bucketMeta    = []byte("meta")
	bucketChanges = []byte("changes") // inside meta
	keySchema     = []byte("schema")  // in meta: uint64 schema version
)

// migrations[i] takes the file from schema version i to i+1; they run in
// one transaction at Open. Append only; never edit a released migration.
var migrations = []func(tx *bolt.Tx) error{
	func(tx *bolt.Tx) error { // 1: records, meta, meta/changes
		if _, err := tx.CreateBucketIfNotExists(bucketRecords); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		_, err = meta.CreateBucketIfNotExists(bucketChanges)
		return err
	},
}

// SchemaVersion is the schema version this build writes and understands.
func SchemaVersion() uint64 { return uint64(len(migrations)) }

// Options tunes Open. The zero value is the production default.
type Options struct {
	// LockTimeout bounds the wait for the file lock held by another
	// process; 0 means 1 s. Open then fails with ErrLocked.
	LockTimeout time.Duration
	// InitialMmapSize is passed to bbolt; 0 means 64 MiB of address space
	// (not disk). A larger map means fewer remaps, and a remap makes the
	// committing writer wait for open read transactions.
	InitialMmapSize int
}

// DB is a bbolt-backed store.Store.
type DB struct {
	bolt *bolt.DB
	path string
}

var _ store.Store = (*DB)(nil)

// Open opens (creating if needed, mode 0600) the store file at path, and
// migrates it to SchemaVersion. It fails fast with ErrLocked when another
// process has the file open, and with ErrSchemaTooNew for a newer file.
func Open(path string, opts Options) (*DB, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.InitialMmapSize <= 0 {
		opts.InitialMmapSize = 64 << 20
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         opts.LockTimeout,
		InitialMmapSize: opts.InitialMmapSize,
		FreelistType:    bolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w (waited %v)", path, ErrLocked, opts.LockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open embedded store %s: %w", path, err)
	}
	db := &DB{bolt: b, path: path}
	if err := db.migrate(); err != nil {
		b.Close()
		return nil, fmt.Errorf("open embedded store %s: %w", path, err)
	}
	return db, nil
}

func (db *DB) migrate() error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		var have uint64
		if meta := tx.Bucket(bucketMeta); meta != nil {
			if v := meta.Get(keySchema); len(v) == 8 {
				have = binary.BigEndian.Uint64(v)
			}
		}
		want := SchemaVersion()
		if have > want {
			return fmt.Errorf("%w (file has schema %d, this build knows %d)", ErrSchemaTooNew, have, want)
		}
		if have == want {
			return nil
		}
		for i := have; i < want; i++ {
			if err := migrations[i](tx); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchema, u64(want))
	})
}

// Path returns the file the store lives in.
func (db *DB) Path() string { return db.path }

// Close releases the file (and its lock).
func (db *DB) Close() error { return db.bolt.Close() }

// Ping reports whether the file is open.
func (db *DB) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return db.bolt.View(func(*bolt.Tx) error { return nil })
}

// Get implements store.Reader.
func (db *DB) Get(ctx context.Context, kind, key string) (store.Record, error) {
	var r store.Record
	err := db.View(ctx, func(rd store.Reader) error {
		var err error
		r, err = rd.Get(ctx, kind, key)
		return err
	})
	return r, err
}

// List implements store.Reader.
func (db *DB) List(ctx context.Context, kind, prefix, after string, limit int) ([]store.Record, error) {
	var rs []store.Record
	err := db.View(ctx, func(rd store.Reader) error {
		var err error
		rs, err = rd.List(ctx, kind, prefix, after, limit)
		return err
	})
	return rs, err
}

// View implements store.Store with a bbolt read transaction (an MVCC snapshot).
func (db *DB) View(ctx context.Context, fn func(r store.Reader) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return db.bolt.View(func(btx *bolt.Tx) error { return fn(&tx{btx: btx}) })
}

// Update implements store.Store. bbolt has a single writer, so transactions
// are serial and never need a retry; a panic in fn rolls back (bbolt
// rolls back in a deferred call) and propagates.
func (db *DB) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return db.bolt.Update(func(btx *bolt.Tx) error {
		// The writer lock may have taken a while to get.
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(&tx{btx: btx})
	})
}

// Changes implements store.Store: the version of the last write to kind.
// Commits are serial, so it only ever grows.
func (db *DB) Changes(ctx context.Context, kind string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n int64
	err := db.bolt.View(func(btx *bolt.Tx) error {
		if v := btx.Bucket(bucketMeta).Bucket(bucketChanges).Get([]byte(kind)); len(v) == 8 {
			n = int64(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	return n, err
}

type tx struct{ btx *bolt.Tx }

func (t *tx) kindBucket(kind string) (*bolt.Bucket, error) {
	if kind == "" {
		return nil, errors.New("embedded store: empty kind")
	}
	return t.btx.Bucket(bucketRecords).Bucket([]byte(kind)), nil
}

func (t *tx) Get(ctx context.Context, kind, key string) (store.Record, error) {
	if err := ctx.Err(); err != nil {
		return store.Record{}, err
	}
	b, err := t.kindBucket(kind)
	if err != nil {
		return store.Record{}, err
	}
	if b == nil || key == "" {
		return store.Record{}, fmt.Errorf("get %s %q: %w", kind, key, store.ErrNotFound)
	}
	raw := b.Get([]byte(key))
	if raw == nil {
		return store.Record{}, fmt.Errorf("get %s %q: %w", kind, key, store.ErrNotFound)
	}
	return decode(kind, []byte(key), raw)
}

func (t *tx) List(ctx context.Context, kind, prefix, after string, limit int) ([]store.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := t.kindBucket(kind)
	if err != nil || b == nil {
		return nil, err
	}
	start := []byte(prefix)
	if after >= prefix {
		// Seek to the first key strictly after `after`: after + "\x00".
		start = append([]byte(after), 0)
	}
	var out []store.Record
	c := b.Cursor()
	for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, v = c.Next() {
		if limit > 0 && len(out) == limit {
			break
		}
		r, err := decode(kind, k, v)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (t *tx) Put(ctx context.Context, kind, key string, value []byte, ifVersion int64) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if kind == "" || key == "" {
		return 0, fmt.Errorf("embedded store: put %q %q: empty kind or key", kind, key)
	}
	b, err := t.btx.Bucket(bucketRecords).CreateBucketIfNotExists([]byte(kind))
	if err != nil {
		return 0, fmt.Errorf("put %s %q: %w", kind, key, err)
	}
	cur, err := currentVersion(b, key)
	if err != nil {
		return 0, err
	}
	switch {
	case ifVersion == store.Any:
	case ifVersion == store.Absent:
		if cur != 0 {
			return 0, fmt.Errorf("put %s %q: exists: %w", kind, key, store.ErrConflict)
		}
	case ifVersion > 0:
		if cur != ifVersion {
			return 0, fmt.Errorf("put %s %q: want version %d: %w", kind, key, ifVersion, store.ErrConflict)
		}
	default:
		return 0, fmt.Errorf("put %s %q: invalid precondition %d", kind, key, ifVersion)
	}
	v, err := t.bump(kind)
	if err != nil {
		return 0, fmt.Errorf("put %s %q: %w", kind, key, err)
	}
	enc := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(enc, uint64(v))
	copy(enc[8:], value)
	if err := b.Put([]byte(key), enc); err != nil {
		return 0, fmt.Errorf("put %s %q: %w", kind, key, err)
	}
	return v, nil
}

func (t *tx) Delete(ctx context.Context, kind, key string, ifVersion int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := t.kindBucket(kind)
	if err != nil {
		return err
	}
	var cur int64
	if b != nil && key != "" {
		if cur, err = currentVersion(b, key); err != nil {
			return err
		}
	}
	switch {
	case cur == 0 && ifVersion == store.Any:
		return nil
	case cur == 0:
		return fmt.Errorf("delete %s %q: %w", kind, key, store.ErrNotFound)
	case ifVersion == store.Absent, ifVersion > 0 && ifVersion != cur:
		return fmt.Errorf("delete %s %q: version is not %d: %w", kind, key, ifVersion, store.ErrConflict)
	case ifVersion < store.Absent:
		return fmt.Errorf("delete %s %q: invalid precondition %d", kind, key, ifVersion)
	}
	if _, err := t.bump(kind); err != nil {
		return fmt.Errorf("delete %s %q: %w", kind, key, err)
	}
	if err := b.Delete([]byte(key)); err != nil {
		return fmt.Errorf("delete %s %q: %w", kind, key, err)
	}
	return nil
}

// bump allocates the next global version and records it as kind's change counter.
func (t *tx) bump(kind string) (int64, error) {
	meta := t.btx.Bucket(bucketMeta)
	seq, err := meta.NextSequence()
	if err != nil {
		return 0, err
	}
	if err := meta.Bucket(bucketChanges).Put([]byte(kind), u64(seq)); err != nil {
		return 0, err
	}
	return int64(seq), nil
}

// currentVersion returns the version of key in b, or 0 if it is absent.
func currentVersion(b *bolt.Bucket, key string) (int64, error) {
	raw := b.Get([]byte(key))
	if raw == nil {
		return 0, nil
	}
	if len(raw) < 8 {
		return 0, fmt.Errorf("embedded store: corrupt record %q", key)
	}
	return int64(binary.BigEndian.Uint64(raw)), nil
}

// decode copies a record out of bbolt's memory map (valid only inside the tx).
func decode(kind string, key, raw []byte) (store.Record, error) {
	if len(raw) < 8 {
		return store.Record{}, fmt.Errorf("embedded store: corrupt record %s %q", kind, key)
	}
	return store.Record{
		Kind:    kind,
		Key:     string(key),
		Value:   bytes.Clone(raw[8:len(raw):len(raw)]),
		Version: int64(binary.BigEndian.Uint64(raw)),
	}, nil
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// RawDump returns the bytes of the store file as they are on disk, for
// tests that check no plaintext secret ever reaches the store.
func (db *DB) RawDump(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Read under a read transaction so no commit is half-written meanwhile.
	var out []byte
	err := db.bolt.View(func(btx *bolt.Tx) error {
		var err error
		out, err = os.ReadFile(db.path)
		return err
	})
	return out, err
}
