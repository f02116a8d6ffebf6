// Package postgres is the store.Store that several cvault servers share
// (design §2 "Root key with a shared database"): tenants, vaults and sealed
// keys live in one PostgreSQL database, every write runs in a SERIALIZABLE
// transaction, and fn is retried on serialization failures and deadlocks.
//
// Tables (all prefixed cvault_, in the schema named by Options.Schema or the
// server's search_path):
//
//	cvault_records(kind, key bytea, value bytea, version)  the documents
//	cvault_version_seq                                      one sequence for every version
//	cvault_changes(kind, seq)                               append-only change log
//	cvault_change_base(kind, n)                             pruned change-log rows, counted
//	cvault_schema_migrations(version, applied_at)           applied migrations
//
// Keys are bytea so List order is byte order whatever the database collation,
// and any byte string is a valid key.
//
// Change counters: every write or delete appends (kind, seq) to the change
// log, and Changes(kind) = n + count(rows of kind). Writers only insert, so
// concurrent writers of one kind never contend on a counter row (a counter
// row updated by every write would make each kind a serialization hotspot).
// A count rather than max(seq) because sequence values are allocated before
// commit: a transaction holding seq 10 may commit after one holding 11, and
// a cache that had seen max = 11 would never notice it. Old rows are folded
// into cvault_change_base opportunistically by one atomic statement, which
// leaves the sum unchanged.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cvault/cvault/internal/store"
)

// ErrSchemaTooNew: the database was migrated by a newer cvault; refusing to use it.
var ErrSchemaTooNew = errors.New("postgres store: schema is newer than this cvault understands")

// migrations[i] takes the schema from version i to i+1. Append only.
var migrations = []string{
	`CREATE SEQUENCE cvault_version_seq;
	CREATE TABLE cvault_records (
		kind    text   NOT NULL,
		key     bytea  NOT NULL,
		value   bytea  NOT NULL,
		version bigint NOT NULL,
		PRIMARY KEY (kind, key)
	);
	CREATE TABLE cvault_changes (
		kind text   NOT NULL,
		seq  bigint NOT NULL,
		PRIMARY KEY (kind, seq)
	);
	CREATE TABLE cvault_change_base (
		kind text   PRIMARY KEY,
		n    bigint NOT NULL
	);`,
}

// SchemaVersion is the schema version this build migrates to and understands.
func SchemaVersion() int { return len(migrations) }

// Options tunes Open. The zero value is the production default.
type Options struct {
	// Schema, if set, is created if missing and becomes the search_path
	// of every connection (tests use one schema each; design §8).
	Schema string
	// MaxConns caps the pool; 0 means pgxpool's default.
	MaxConns int32
	// MaxAttempts bounds how often Update runs fn when PostgreSQL reports a
	// serialization failure or deadlock; 0 means 50. Heavily contended
	// read-modify-write of one record needs many.
	MaxAttempts int
	// PruneEvery folds the change log of the kinds a transaction wrote
	// after every PruneEvery-th committed Update; 0 means 256.
	PruneEvery int
}

// DB is a PostgreSQL-backed store.Store.
type DB struct {
	pool        *pgxpool.Pool
	maxAttempts int
	pruneEvery  uint64
	commits     atomic.Uint64
}

var _ store.Store = (*DB)(nil)

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Open connects to the database at url (a libpq URL or DSN), creates the
// schema if Options.Schema names one, and applies pending migrations
// (serialized between servers by an advisory lock). It refuses a database
// whose schema is newer than this build with ErrSchemaTooNew.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error may echo the URL, password included.
		return nil, errors.New("postgres store: invalid database URL")
	}
	if opts.Schema != "" {
		if !schemaName.MatchString(opts.Schema) {
			return nil, fmt.Errorf("postgres store: invalid schema name %q", opts.Schema)
		}
		cfg.ConnConfig.RuntimeParams["search_path"] = opts.Schema
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 50
	}
	if opts.PruneEvery <= 0 {
		opts.PruneEvery = 256
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	db := &DB{pool: pool, maxAttempts: opts.MaxAttempts, pruneEvery: uint64(opts.PruneEvery)}
	if err := db.migrate(ctx, opts.Schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	return db, nil
}

func (db *DB) migrate(ctx context.Context, schema string) error {
	if schema != "" {
		// Identifier is validated above; quote anyway.
		if _, err := db.pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
	}
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		// One migrator per schema at a time; the lock ends with the transaction.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(1668702572, hashtext(current_schema()))`); err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS cvault_schema_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("migrations table: %w", err)
		}
		var have int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM cvault_schema_migrations`).Scan(&have); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if have > len(migrations) {
			return fmt.Errorf("%w (database has schema %d, this build knows %d)", ErrSchemaTooNew, have, len(migrations))
		}
		for i := have; i < len(migrations); i++ {
			if _, err := tx.Exec(ctx, migrations[i]); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO cvault_schema_migrations (version) VALUES ($1)`, i+1); err != nil {
				return fmt.Errorf("record migration %d: %w", i+1, err)
			}
		}
		return nil
	})
}

// Close closes the pool.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// Ping implements store.Store.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres store: ping: %w", err)
	}
	return nil
}

// Get implements store.Reader (one statement, its own snapshot).
func (db *DB) Get(ctx context.Context, kind, key string) (store.Record, error) {
	return get(ctx, db.pool, kind, key)
}

// List implements store.Reader (one statement, its own snapshot).
func (db *DB) List(ctx context.Context, kind, prefix, after string, limit int) ([]store.Record, error) {
	return list(ctx, db.pool, kind, prefix, after, limit)
}

// View implements store.Store with a REPEATABLE READ READ ONLY transaction:
// one snapshot for every read, and it never fails to serialize.
func (db *DB) View(ctx context.Context, fn func(r store.Reader) error) error {
	ptx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("postgres store: begin: %w", err)
	}
	defer ptx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only; nothing to undo
	t := &tx{q: ptx, kinds: map[string]bool{}}
	if err := fn(t); err != nil {
		return err
	}
	return nil
}

// Update implements store.Store: fn runs in a SERIALIZABLE transaction and
// runs again (after a short jittered backoff, at most MaxAttempts times)
// when PostgreSQL reports a serialization failure or deadlock, whether fn
// or the commit saw it.
func (db *DB) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	var err error
	for attempt := range db.maxAttempts {
		if attempt > 0 {
			if serr := sleep(ctx, backoff(attempt)); serr != nil {
				return fmt.Errorf("postgres store: update: %w (while retrying after: %v)", serr, err)
			}
		}
		var t *tx
		t, err = db.attempt(ctx, fn)
		if err == nil {
			db.afterCommit(ctx, t.kinds)
			return nil
		}
		if !t.retryable && !isRetryable(err) {
			return err
		}
	}
	return fmt.Errorf("postgres store: update gave up after %d attempts: %w", db.maxAttempts, err)
}

// attempt runs fn once. It always returns the tx (for its flags).
func (db *DB) attempt(ctx context.Context, fn func(tx store.Tx) error) (t *tx, err error) {
	t = &tx{kinds: map[string]bool{}}
	ptx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		return t, fmt.Errorf("postgres store: begin: %w", err)
	}
	t.q = ptx
	committed := false
	defer func() {
		// Also on panic: roll back, then let the panic continue.
		if !committed {
			_ = ptx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err := fn(t); err != nil {
		return t, err
	}
	if err := ptx.Commit(ctx); err != nil {
		return t, fmt.Errorf("postgres store: commit: %w", err)
	}
	committed = true
	return t, nil
}

// afterCommit folds the change log of the kinds just written, now and then.
// Best effort: a failure only leaves more rows for the next time.
func (db *DB) afterCommit(ctx context.Context, kinds map[string]bool) {
	if len(kinds) == 0 || db.commits.Add(1)%db.pruneEvery != 0 {
		return
	}
	for k := range kinds {
		_ = db.prune(ctx, k)
	}
}

// prune moves every committed change-log row of kind into its base count,
// in one statement, so Changes (one statement, one snapshot) sees the same
// sum before and after.
func (db *DB) prune(ctx context.Context, kind string) error {
	_, err := db.pool.Exec(ctx, `WITH d AS (DELETE FROM cvault_changes WHERE kind = $1 RETURNING 1)
		INSERT INTO cvault_change_base AS b (kind, n) SELECT $1, count(*) FROM d
		ON CONFLICT (kind) DO UPDATE SET n = b.n + EXCLUDED.n`, kind)
	return err
}

// Changes implements store.Store.
func (db *DB) Changes(ctx context.Context, kind string) (int64, error) {
	var n int64
	err := db.pool.QueryRow(ctx, `SELECT
		coalesce((SELECT n FROM cvault_change_base WHERE kind = $1), 0) +
		(SELECT count(*) FROM cvault_changes WHERE kind = $1)`, kind).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("postgres store: changes %s: %w", kind, err)
	}
	return n, nil
}

// RawDump returns every stored kind, key and value as raw bytes (no
// encoding), for tests that check no plaintext secret ever reaches the store.
func (db *DB) RawDump(ctx context.Context) ([]byte, error) {
	rows, err := db.pool.Query(ctx, `SELECT kind, key, value FROM cvault_records ORDER BY kind, key`)
	if err != nil {
		return nil, fmt.Errorf("postgres store: dump: %w", err)
	}
	var out []byte
	var kind string
	var key, value []byte
	_, err = pgx.ForEachRow(rows, []any{&kind, &key, &value}, func() error {
		out = append(out, kind...)
		out = append(out, 0)
		out = append(out, key...)
		out = append(out, 0)
		out = append(out, value...)
		out = append(out, '\n')
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres store: dump: %w", err)
	}
	return out, nil
}

// querier is what reads and writes need: the pool (autocommit) or a tx.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

type tx struct {
	q querier
	// retryable records that a statement failed with a serialization
	// failure or deadlock, so Update retries even if fn hid the error.
	retryable bool
	kinds     map[string]bool // kinds written (for pruning)
}

// note inspects a statement error for retryability and passes it on.
func (t *tx) note(err error) error {
	if isRetryable(err) {
		t.retryable = true
	}
	return err
}

func (t *tx) Get(ctx context.Context, kind, key string) (store.Record, error) {
	r, err := get(ctx, t.q, kind, key)
	return r, t.note(err)
}

func (t *tx) List(ctx context.Context, kind, prefix, after string, limit int) ([]store.Record, error) {
	rs, err := list(ctx, t.q, kind, prefix, after, limit)
	return rs, t.note(err)
}

// Each write also appends to the change log in the same statement.
const (
	putAny = `WITH w AS (
		INSERT INTO cvault_records (kind, key, value, version)
		VALUES ($1, $2, $3, nextval('cvault_version_seq'))
		ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version
		RETURNING version),
	c AS (INSERT INTO cvault_changes (kind, seq) SELECT $1, version FROM w)
	SELECT version FROM w`
	putAbsent = `WITH w AS (
		INSERT INTO cvault_records (kind, key, value, version)
		VALUES ($1, $2, $3, nextval('cvault_version_seq'))
		ON CONFLICT (kind, key) DO NOTHING
		RETURNING version),
	c AS (INSERT INTO cvault_changes (kind, seq) SELECT $1, version FROM w)
	SELECT version FROM w`
	putExact = `WITH w AS (
		UPDATE cvault_records SET value = $3, version = nextval('cvault_version_seq')
		WHERE kind = $1 AND key = $2 AND version = $4
		RETURNING version),
	c AS (INSERT INTO cvault_changes (kind, seq) SELECT $1, version FROM w)
	SELECT version FROM w`
	deleteIf = `WITH d AS (
		DELETE FROM cvault_records WHERE kind = $1 AND key = $2 AND ($3 = 0 OR version = $3)
		RETURNING 1),
	c AS (INSERT INTO cvault_changes (kind, seq) SELECT $1, nextval('cvault_version_seq') FROM d)
	SELECT count(*) FROM d`
)

func (t *tx) Put(ctx context.Context, kind, key string, value []byte, ifVersion int64) (int64, error) {
	if kind == "" || key == "" {
		return 0, fmt.Errorf("postgres store: put %q %q: empty kind or key", kind, key)
	}
	if value == nil {
		value = []byte{} // the column is NOT NULL; nil and empty read back alike
	}
	var sql string
	args := []any{kind, []byte(key), value}
	switch {
	case ifVersion == store.Any:
		sql = putAny
	case ifVersion == store.Absent:
		sql = putAbsent
	case ifVersion > 0:
		sql = putExact
		args = append(args, ifVersion)
	default:
		return 0, fmt.Errorf("put %s %q: invalid precondition %d", kind, key, ifVersion)
	}
	var v int64
	err := t.q.QueryRow(ctx, sql, args...).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("put %s %q: precondition %d: %w", kind, key, ifVersion, store.ErrConflict)
	}
	if err != nil {
		return 0, t.note(fmt.Errorf("put %s %q: %w", kind, key, err))
	}
	t.kinds[kind] = true
	return v, nil
}

func (t *tx) Delete(ctx context.Context, kind, key string, ifVersion int64) error {
	if ifVersion < store.Absent {
		return fmt.Errorf("delete %s %q: invalid precondition %d", kind, key, ifVersion)
	}
	if ifVersion != store.Absent {
		var n int64
		if err := t.q.QueryRow(ctx, deleteIf, kind, []byte(key), ifVersion).Scan(&n); err != nil {
			return t.note(fmt.Errorf("delete %s %q: %w", kind, key, err))
		}
		if n > 0 {
			t.kinds[kind] = true
			return nil
		}
		if ifVersion == store.Any {
			return nil
		}
	}
	// Nothing deleted: say why.
	var exists bool
	err := t.q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM cvault_records WHERE kind = $1 AND key = $2)`,
		kind, []byte(key)).Scan(&exists)
	if err != nil {
		return t.note(fmt.Errorf("delete %s %q: %w", kind, key, err))
	}
	if !exists {
		return fmt.Errorf("delete %s %q: %w", kind, key, store.ErrNotFound)
	}
	return fmt.Errorf("delete %s %q: version is not %d: %w", kind, key, ifVersion, store.ErrConflict)
}

func get(ctx context.Context, q querier, kind, key string) (store.Record, error) {
	if kind == "" {
		return store.Record{}, errors.New("postgres store: empty kind")
	}
	r := store.Record{Kind: kind, Key: key}
	err := q.QueryRow(ctx, `SELECT value, version FROM cvault_records WHERE kind = $1 AND key = $2`,
		kind, []byte(key)).Scan(&r.Value, &r.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Record{}, fmt.Errorf("get %s %q: %w", kind, key, store.ErrNotFound)
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("get %s %q: %w", kind, key, err)
	}
	return r, nil
}

func list(ctx context.Context, q querier, kind, prefix, after string, limit int) ([]store.Record, error) {
	if kind == "" {
		return nil, errors.New("postgres store: empty kind")
	}
	// The prefix is a key range [prefix, upper); after narrows its start.
	lower, strict := []byte(prefix), false
	if after >= prefix {
		lower, strict = []byte(after), true
	}
	sql := `SELECT key, value, version FROM cvault_records WHERE kind = $1 AND key >= $2`
	if strict {
		sql = `SELECT key, value, version FROM cvault_records WHERE kind = $1 AND key > $2`
	}
	args := []any{kind, lower}
	if upper := prefixEnd([]byte(prefix)); upper != nil {
		args = append(args, upper)
		sql += ` AND key < $3`
	}
	sql += ` ORDER BY key`
	if limit > 0 {
		args = append(args, limit)
		sql += fmt.Sprintf(` LIMIT $%d`, len(args))
	}
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("list %s %q: %w", kind, prefix, err)
	}
	var out []store.Record
	var key []byte
	var r store.Record
	_, err = pgx.ForEachRow(rows, []any{&key, &r.Value, &r.Version}, func() error {
		out = append(out, store.Record{Kind: kind, Key: string(key), Value: r.Value, Version: r.Version})
		r.Value = nil // the next row scans into a fresh slice
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s %q: %w", kind, prefix, err)
	}
	return out, nil
}

// prefixEnd returns the smallest key greater than every key with prefix p,
// or nil when there is none (p is empty or all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// isRetryable reports a serialization failure (40001) or deadlock (40P01).
func isRetryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

// backoff is full jitter over 1 ms · 2^attempt, capped at 50 ms.
func backoff(attempt int) time.Duration {
	ceil := time.Millisecond << min(attempt, 6)
	ceil = min(ceil, 50*time.Millisecond)
	return time.Duration(rand.Int64N(int64(ceil))) + 100*time.Microsecond
}

func sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}
