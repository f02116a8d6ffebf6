package postgres_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/cvault/cvault/internal/store"
	"github.com/cvault/cvault/internal/store/postgres"
	"github.com/cvault/cvault/internal/store/postgres/pgtest"
	"github.com/cvault/cvault/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return pgtest.Open(t, postgres.Options{}) })
}

func TestRawScan(t *testing.T) { storetest.CheckRawScan(t, pgtest.Open(t, postgres.Options{})) }

// conflictPair runs two Updates that both read "counter", wait for each
// other, then both write it: under SERIALIZABLE one of them must fail to
// serialize. fn hides the store's error behind an opaque one, so only the
// store's own bookkeeping can tell that a retry is due.
func conflictPair(t *testing.T, db *postgres.DB) (calls int64, errs []error) {
	t.Helper()
	ctx := t.Context()
	if _, err := store.Put(ctx, db, "c", "counter", []byte("0"), store.Absent); err != nil {
		t.Fatal(err)
	}
	var read sync.WaitGroup
	read.Add(2)
	var n atomic.Int64
	out := make([]error, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			first := true
			out[i] = db.Update(ctx, func(tx store.Tx) error {
				n.Add(1)
				r, err := tx.Get(ctx, "c", "counter")
				if err != nil {
					return errors.New("opaque read failure")
				}
				if first {
					first = false
					read.Done()
					read.Wait()
				}
				v, _ := strconv.Atoi(string(r.Value))
				if _, err := tx.Put(ctx, "c", "counter", []byte(strconv.Itoa(v+1)), r.Version); err != nil {
					return fmt.Errorf("opaque write failure: %v", err) // %v: hides the cause
				}
				return nil
			})
		})
	}
	wg.Wait()
	return n.Load(), out
}

func TestRetryOnSerializationFailure(t *testing.T) {
	db := pgtest.Open(t, postgres.Options{})
	calls, errs := conflictPair(t, db)
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if calls < 3 {
		t.Fatalf("fn ran %d times; want a retry (>= 3)", calls)
	}
	r, err := db.Get(t.Context(), "c", "counter")
	if err != nil || string(r.Value) != "2" {
		t.Fatalf("counter = %q, %v; want 2", r.Value, err)
	}
}

func TestRetryIsBounded(t *testing.T) {
	db := pgtest.Open(t, postgres.Options{MaxAttempts: 1})
	calls, errs := conflictPair(t, db)
	if calls != 2 {
		t.Fatalf("fn ran %d times with MaxAttempts 1, want 2", calls)
	}
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
			if !strings.Contains(err.Error(), "gave up after 1 attempts") {
				t.Errorf("error %q does not say it gave up", err)
			}
		}
	}
	if failed != 1 {
		t.Fatalf("%d Updates failed, want exactly 1: %v", failed, errs)
	}
}

func TestPruneKeepsChanges(t *testing.T) {
	ctx := t.Context()
	db := pgtest.Open(t, postgres.Options{PruneEvery: 1})
	var last int64
	for i := range 10 {
		if _, err := store.Put(ctx, db, "k", strconv.Itoa(i%3), []byte("x"), store.Any); err != nil {
			t.Fatal(err)
		}
		if i == 5 {
			if err := store.Delete(ctx, db, "k", "0", store.Any); err != nil {
				t.Fatal(err)
			}
		}
		n, err := db.Changes(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if n <= last {
			t.Fatalf("write %d: Changes %d, not above %d", i, n, last)
		}
		last = n
		if err := db.Prune(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if n2, _ := db.Changes(ctx, "k"); n2 != n {
			t.Fatalf("Prune changed Changes %d -> %d", n, n2)
		}
	}
}

func TestSchemaTooNew(t *testing.T) {
	ctx := t.Context()
	url := pgtest.URL(t)
	schema := pgtest.NewSchema(t, url)
	db, err := postgres.Open(ctx, url, postgres.Options{Schema: schema, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var got int
	if err := conn.QueryRow(ctx, "SELECT max(version) FROM "+schema+".cvault_schema_migrations").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != postgres.SchemaVersion() {
		t.Fatalf("recorded schema %d, want %d", got, postgres.SchemaVersion())
	}
	if _, err := conn.Exec(ctx, "INSERT INTO "+schema+".cvault_schema_migrations (version) VALUES (99)"); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.Open(ctx, url, postgres.Options{Schema: schema, MaxConns: 2}); !errors.Is(err, postgres.ErrSchemaTooNew) {
		t.Fatalf("Open = %v, want ErrSchemaTooNew", err)
	}
}

func TestConcurrentOpenMigratesOnce(t *testing.T) {
	ctx := t.Context()
	url := pgtest.URL(t)
	schema := pgtest.NewSchema(t, url)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			db, err := postgres.Open(ctx, url, postgres.Options{Schema: schema, MaxConns: 1})
			if err == nil {
				_, err = store.Put(ctx, db, "k", strconv.Itoa(i), nil, store.Absent)
				db.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRejectsBadInput(t *testing.T) {
	ctx := t.Context()
	if _, err := postgres.Open(ctx, "postgres://u:s3cret@[::1", postgres.Options{}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("bad URL: %v (must fail without echoing the password)", err)
	}
	if _, err := postgres.Open(ctx, pgtest.DefaultURL, postgres.Options{Schema: "x; DROP"}); err == nil {
		t.Fatal("bad schema name accepted")
	}
}

// TestUnreachable checks pgtest's policy in a child process: skip locally,
// fail under CI.
func TestUnreachable(t *testing.T) {
	if os.Getenv("CVAULT_PGTEST_CHILD") != "" {
		pgtest.Open(t, postgres.Options{})
		t.Fatal("unreachable database did not stop the test")
	}
	for _, tt := range []struct {
		ci      string
		wantOut string
		wantErr bool
	}{
		{"", "--- SKIP", false},
		{"true", "--- FAIL", true},
	} {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestUnreachable$", "-test.v")
		cmd.Env = append(os.Environ(), "CVAULT_PGTEST_CHILD=1", "CI="+tt.ci,
			"CVAULT_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
		out, err := cmd.CombinedOutput()
		if (err != nil) != tt.wantErr || !strings.Contains(string(out), tt.wantOut) {
			t.Errorf("CI=%q: err %v, want %q in:\n%s", tt.ci, err, tt.wantOut, out)
		}
	}
}
