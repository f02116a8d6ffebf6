// Package pgtest gives tests a fresh PostgreSQL store in a schema of its own
// (design §8), dropped when the test ends, so packages can run in parallel
// against one database.
//
// The database comes from CVAULT_TEST_POSTGRES_URL (default DefaultURL).
// When it is unreachable the test is skipped with a message, except when
// the environment variable CI is non-empty: CI must never skip PostgreSQL.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cvault/cvault/internal/store/postgres"
)

// DefaultURL is used when CVAULT_TEST_POSTGRES_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// URL returns the test database URL, skipping (or, under CI, failing) t
// when the database does not answer.
func URL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("CVAULT_TEST_POSTGRES_URL")
	if url == "" {
		url = DefaultURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err == nil {
		err = conn.Ping(ctx)
		conn.Close(ctx)
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("pgtest: PostgreSQL unreachable under CI (set CVAULT_TEST_POSTGRES_URL): %v", err)
		}
		t.Skipf("pgtest: PostgreSQL unreachable, skipping (set CVAULT_TEST_POSTGRES_URL; CI fails instead): %v", err)
	}
	return url
}

// Open returns a fresh, empty store in a new schema t_<random>, closed and
// dropped when the test ends. opts.Schema is overwritten; a zero MaxConns
// becomes 4 so parallel packages don't exhaust the server's connections.
func Open(t testing.TB, opts postgres.Options) *postgres.DB {
	t.Helper()
	url := URL(t)
	schema := NewSchema(t, url)
	opts.Schema = schema
	if opts.MaxConns == 0 {
		opts.MaxConns = 4
	}
	db, err := postgres.Open(t.Context(), url, opts)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { db.Close() }) // runs before the schema is dropped (LIFO)
	return db
}

// NewSchema returns the name of a fresh schema t_<random>, created now and
// dropped (with everything in it) when the test ends.
func NewSchema(t testing.TB, url string) string {
	t.Helper()
	schema := "t_" + hex.EncodeToString(randomBytes(8))
	exec := func(sql string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("pgtest: create schema: %v", err)
	}
	t.Cleanup(func() {
		if err := exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", schema, err)
		}
	})
	return schema
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return b
}
