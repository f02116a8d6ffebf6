// Package storetest holds the conformance suite every store.Store
// implementation must pass (store/embedded, store/postgres): preconditions,
// version rules, listing order, transaction atomicity and isolation, change
// counters, and lost-update freedom under concurrency.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/cvault/cvault/internal/store"
)

// Run runs the conformance suite. open must return a fresh, empty store for
// each call and arrange its cleanup (t.Cleanup); Run closes nothing itself.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"GetMissing", testGetMissing},
		{"PutGetRoundTrip", testPutGetRoundTrip},
		{"Values", testValues},
		{"PutPreconditions", testPutPreconditions},
		{"DeletePreconditions", testDeletePreconditions},
		{"InvalidNames", testInvalidNames},
		{"VersionsIncrease", testVersionsIncrease},
		{"KindsAreSeparate", testKindsAreSeparate},
		{"List", testList},
		{"ListPaging", testListPaging},
		{"UpdateRollsBackOnError", testUpdateRollsBackOnError},
		{"UpdateRollsBackOnPanic", testUpdateRollsBackOnPanic},
		{"UpdateReadsOwnWrites", testUpdateReadsOwnWrites},
		{"UpdateErrorUnchanged", testUpdateErrorUnchanged},
		{"ViewSnapshot", testViewSnapshot},
		{"Changes", testChanges},
		{"Ping", testPing},
		{"ConcurrentUpdate", testConcurrentUpdate},
		{"ConcurrentPutRetry", testConcurrentPutRetry},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

const kind = "thing"

func mustPut(t *testing.T, s store.Store, kind, key string, value []byte, ifVersion int64) int64 {
	t.Helper()
	v, err := store.Put(t.Context(), s, kind, key, value, ifVersion)
	if err != nil {
		t.Fatalf("Put(%q, %q, if=%d): %v", kind, key, ifVersion, err)
	}
	if v <= 0 {
		t.Fatalf("Put(%q, %q) returned version %d, want > 0", kind, key, v)
	}
	return v
}

func mustGet(t *testing.T, s store.Store, kind, key string) store.Record {
	t.Helper()
	r, err := s.Get(t.Context(), kind, key)
	if err != nil {
		t.Fatalf("Get(%q, %q): %v", kind, key, err)
	}
	return r
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

func keys(rs []store.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Key
	}
	return out
}

func testGetMissing(t *testing.T, s store.Store) {
	_, err := s.Get(t.Context(), kind, "nope")
	wantErr(t, "Get missing", err, store.ErrNotFound)
	_, err = s.Get(t.Context(), "never-written-kind", "nope")
	wantErr(t, "Get missing kind", err, store.ErrNotFound)
	rs, err := s.List(t.Context(), "never-written-kind", "", "", 0)
	if err != nil || len(rs) != 0 {
		t.Fatalf("List of unknown kind = %v, %v; want empty, nil", rs, err)
	}
}

func testPutGetRoundTrip(t *testing.T, s store.Store) {
	v := mustPut(t, s, kind, "a/b", []byte(`{"x":1}`), store.Absent)
	r := mustGet(t, s, kind, "a/b")
	want := store.Record{Kind: kind, Key: "a/b", Value: []byte(`{"x":1}`), Version: v}
	if r.Kind != want.Kind || r.Key != want.Key || !bytes.Equal(r.Value, want.Value) || r.Version != want.Version {
		t.Fatalf("Get = %+v, want %+v", r, want)
	}
	// The returned value must be the caller's to keep: mutating it changes nothing stored.
	r.Value[0] = 'X'
	if r2 := mustGet(t, s, kind, "a/b"); !bytes.Equal(r2.Value, want.Value) {
		t.Fatalf("stored value changed through a returned slice: %q", r2.Value)
	}
	// And the caller may reuse the slice it passed to Put.
	buf := []byte("first")
	mustPut(t, s, kind, "buf", buf, store.Any)
	copy(buf, "XXXXX")
	if r := mustGet(t, s, kind, "buf"); string(r.Value) != "first" {
		t.Fatalf("stored value aliases the Put argument: %q", r.Value)
	}
}

func testValues(t *testing.T, s store.Store) {
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>8)
	}
	binary := []byte{0, 1, 2, 0xff, 0xfe, 0, '\n', '\'', '"', '\\', 0x80}
	for _, tt := range []struct {
		name  string
		value []byte
	}{
		{"empty", []byte{}},
		{"nil", nil},
		{"binary", binary},
		{"1MiB", big},
		{"utf8", []byte("ключ 鍵 🔑")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := mustPut(t, s, kind, tt.name, tt.value, store.Any)
			r := mustGet(t, s, kind, tt.name)
			if !bytes.Equal(r.Value, tt.value) || r.Version != v {
				t.Fatalf("Get = %d bytes v%d, want %d bytes v%d", len(r.Value), r.Version, len(tt.value), v)
			}
			rs, err := s.List(t.Context(), kind, tt.name, "", 1)
			if err != nil || len(rs) != 1 || !bytes.Equal(rs[0].Value, tt.value) {
				t.Fatalf("List(%q) did not return the value: %d records, %v", tt.name, len(rs), err)
			}
		})
	}
	// Binary keys (any bytes but NUL-free UTF-8 is not required): byte-exact.
	for _, key := range []string{"\xff\xfe", "a\x00b", "é/ü"} {
		mustPut(t, s, "binkey", key, []byte(key), store.Absent)
		if r := mustGet(t, s, "binkey", key); r.Key != key || string(r.Value) != key {
			t.Fatalf("binary key %q round trip = %+v", key, r)
		}
	}
}

func testPutPreconditions(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Exact version on a missing record: conflict (a version was required).
	_, err := store.Put(ctx, s, kind, "k", []byte("x"), 12345)
	wantErr(t, "Put(missing, exact)", err, store.ErrConflict)

	v1 := mustPut(t, s, kind, "k", []byte("1"), store.Absent)
	_, err = store.Put(ctx, s, kind, "k", []byte("2"), store.Absent)
	wantErr(t, "Put(existing, Absent)", err, store.ErrConflict)

	v2 := mustPut(t, s, kind, "k", []byte("2"), v1)
	if v2 <= v1 {
		t.Fatalf("version after update %d, want > %d", v2, v1)
	}
	_, err = store.Put(ctx, s, kind, "k", []byte("stale"), v1)
	wantErr(t, "Put(stale version)", err, store.ErrConflict)
	_, err = store.Put(ctx, s, kind, "k", []byte("future"), v2+1000)
	wantErr(t, "Put(future version)", err, store.ErrConflict)

	v3 := mustPut(t, s, kind, "k", []byte("3"), store.Any)
	if v3 <= v2 {
		t.Fatalf("version after Any %d, want > %d", v3, v2)
	}
	mustPut(t, s, kind, "fresh", []byte("any-create"), store.Any)

	// Failed preconditions change nothing.
	if r := mustGet(t, s, kind, "k"); string(r.Value) != "3" || r.Version != v3 {
		t.Fatalf("Get after failed writes = %q v%d, want \"3\" v%d", r.Value, r.Version, v3)
	}
}

func testDeletePreconditions(t *testing.T, s store.Store) {
	ctx := t.Context()
	wantErr(t, "Delete(missing, exact)", store.Delete(ctx, s, kind, "k", 7), store.ErrNotFound)
	wantErr(t, "Delete(missing, Absent)", store.Delete(ctx, s, kind, "k", store.Absent), store.ErrNotFound)
	if err := store.Delete(ctx, s, kind, "k", store.Any); err != nil {
		t.Fatalf("Delete(missing, Any) = %v, want nil", err)
	}

	stale := mustPut(t, s, kind, "k", []byte("x"), store.Absent)
	v := mustPut(t, s, kind, "k", []byte("y"), stale)
	wantErr(t, "Delete(stale)", store.Delete(ctx, s, kind, "k", stale), store.ErrConflict)
	wantErr(t, "Delete(future)", store.Delete(ctx, s, kind, "k", v+1), store.ErrConflict)
	wantErr(t, "Delete(existing, Absent)", store.Delete(ctx, s, kind, "k", store.Absent), store.ErrConflict)
	mustGet(t, s, kind, "k") // still there

	if err := store.Delete(ctx, s, kind, "k", v); err != nil {
		t.Fatalf("Delete(exact) = %v", err)
	}
	_, err := s.Get(ctx, kind, "k")
	wantErr(t, "Get after delete", err, store.ErrNotFound)
	wantErr(t, "Delete twice", store.Delete(ctx, s, kind, "k", v), store.ErrNotFound)

	mustPut(t, s, kind, "k2", []byte("x"), store.Any)
	if err := store.Delete(ctx, s, kind, "k2", store.Any); err != nil {
		t.Fatalf("Delete(existing, Any) = %v", err)
	}
	_, err = s.Get(ctx, kind, "k2")
	wantErr(t, "Get after Delete(Any)", err, store.ErrNotFound)
}

func testInvalidNames(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, tt := range []struct{ kind, key string }{{"", "k"}, {kind, ""}} {
		if _, err := store.Put(ctx, s, tt.kind, tt.key, []byte("x"), store.Any); err == nil {
			t.Errorf("Put(%q, %q) succeeded, want an error", tt.kind, tt.key)
		}
	}
	if _, err := s.List(ctx, "", "", "", 0); err == nil {
		t.Errorf("List with empty kind succeeded, want an error")
	}
}

func testVersionsIncrease(t *testing.T, s store.Store) {
	ctx := t.Context()
	seen := map[int64]bool{}
	var last int64
	next := func(what string, v int64) {
		t.Helper()
		if v <= last {
			t.Fatalf("%s: version %d not above previous %d", what, v, last)
		}
		if seen[v] {
			t.Fatalf("%s: version %d reused", what, v)
		}
		seen[v], last = true, v
	}
	for i := range 5 {
		next("put", mustPut(t, s, kind, "k"+strconv.Itoa(i%2), []byte("v"), store.Any))
		next("other kind", mustPut(t, s, "other", "k", []byte("v"), store.Any))
	}
	// Delete and recreate: the new record's version is fresh.
	r := mustGet(t, s, kind, "k0")
	if err := store.Delete(ctx, s, kind, "k0", r.Version); err != nil {
		t.Fatal(err)
	}
	next("recreate", mustPut(t, s, kind, "k0", []byte("again"), store.Absent))
	// Several writes in one transaction each get their own version.
	var vs []int64
	err := s.Update(ctx, func(tx store.Tx) error {
		for i := range 3 {
			v, err := tx.Put(ctx, kind, "tx"+strconv.Itoa(i), []byte("v"), store.Any)
			if err != nil {
				return err
			}
			vs = append(vs, v)
		}
		v, err := tx.Put(ctx, kind, "tx0", []byte("again"), store.Any)
		vs = append(vs, v)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		next("in tx", v)
	}
	if r := mustGet(t, s, kind, "tx0"); r.Version != vs[3] {
		t.Fatalf("tx0 version %d, want the last write's %d", r.Version, vs[3])
	}
}

func testKindsAreSeparate(t *testing.T, s store.Store) {
	mustPut(t, s, "a", "k", []byte("in a"), store.Absent)
	mustPut(t, s, "ab", "k", []byte("in ab"), store.Absent) // kind names that share a prefix
	mustPut(t, s, "a/b", "k", []byte("in a/b"), store.Absent)
	for _, k := range []string{"a", "ab", "a/b"} {
		if r := mustGet(t, s, k, "k"); string(r.Value) != "in "+k || r.Kind != k {
			t.Fatalf("Get(%q) = %+v", k, r)
		}
		rs, err := s.List(t.Context(), k, "", "", 0)
		if err != nil || len(rs) != 1 {
			t.Fatalf("List(%q) = %d records, %v; want 1", k, len(rs), err)
		}
	}
}

// listKeys are written in scrambled order; sorted is their byte order.
var listKeys = []string{
	"vault/b", "vault/a/key/2", "vault", "vault/a", "vault/a/key/10", "vault/a/key/1",
	"vaults/x", "vault/a/key", "vault/a/keys/1", "vault/A", "vault/a-1", "vault/a/key/1/v",
	"z", "Vault/a", "vault/\xc3\xa9", "vault/\x7f", "", // "" is skipped below (keys are non-empty)
}

func putListKeys(t *testing.T, s store.Store) []string {
	var sorted []string
	for _, k := range listKeys {
		if k == "" {
			continue
		}
		mustPut(t, s, kind, k, []byte("v:"+k), store.Absent)
		sorted = append(sorted, k)
	}
	slices.Sort(sorted) // Go string order is byte order
	mustPut(t, s, "other", "vault/a/key/1", []byte("other kind"), store.Absent)
	return sorted
}

func testList(t *testing.T, s store.Store) {
	sorted := putListKeys(t, s)
	filter := func(prefix, after string, limit int) []string {
		var out []string
		for _, k := range sorted {
			if len(k) >= len(prefix) && k[:len(prefix)] == prefix && k > after {
				if limit > 0 && len(out) == limit {
					break
				}
				out = append(out, k)
			}
		}
		return out
	}
	for _, tt := range []struct {
		prefix, after string
		limit         int
	}{
		{"", "", 0},
		{"", "", 3},
		{"vault/", "", 0},
		{"vault/a/", "", 0},
		{"vault/a/key/", "", 0},
		{"vault/a/key/1", "", 0},
		{"vault/a/key", "", 0},
		{"vault/a", "vault/a/key", 0},
		{"vault/a", "vault/a/key/1", 2},
		{"vault/", "vault/a/zzz", 0},
		{"", "vault/\x7f", 0},
		{"vault/\xc3", "", 0},
		{"vault/\xff", "", 0},
		{"nomatch/", "", 0},
		{"vault", "", -1},
		{"vault/", "vaults", 0}, // after beyond the prefix range
		{"vault/", "a", 0},      // after before the prefix range
		{"", "zz", 0},
	} {
		name := fmt.Sprintf("prefix=%q,after=%q,limit=%d", tt.prefix, tt.after, tt.limit)
		t.Run(name, func(t *testing.T) {
			rs, err := s.List(t.Context(), kind, tt.prefix, tt.after, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			got, want := keys(rs), filter(tt.prefix, tt.after, tt.limit)
			if !slices.Equal(got, want) {
				t.Fatalf("List = %q\nwant  %q", got, want)
			}
			for _, r := range rs {
				if r.Kind != kind || string(r.Value) != "v:"+r.Key || r.Version <= 0 {
					t.Fatalf("List record %+v is wrong", r)
				}
			}
		})
	}
}

func testListPaging(t *testing.T, s store.Store) {
	sorted := putListKeys(t, s)
	for _, page := range []int{1, 2, 5} {
		var got []string
		after := ""
		for {
			rs, err := s.List(t.Context(), kind, "", after, page)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) > page {
				t.Fatalf("page of %d returned %d records", page, len(rs))
			}
			if len(rs) == 0 {
				break
			}
			got = append(got, keys(rs)...)
			after = rs[len(rs)-1].Key
		}
		if !slices.Equal(got, sorted) {
			t.Fatalf("paging by %d = %q, want %q", page, got, sorted)
		}
	}
}

var errAbort = errors.New("storetest: abort")

func testUpdateRollsBackOnError(t *testing.T, s store.Store) {
	ctx := t.Context()
	v := mustPut(t, s, kind, "keep", []byte("orig"), store.Absent)
	mustPut(t, s, kind, "gone", []byte("orig"), store.Absent)
	before, err := s.Changes(ctx, kind)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.Put(ctx, kind, "keep", []byte("changed"), v); err != nil {
			return err
		}
		if _, err := tx.Put(ctx, kind, "new", []byte("new"), store.Absent); err != nil {
			return err
		}
		if _, err := tx.Put(ctx, "other", "new", []byte("new"), store.Absent); err != nil {
			return err
		}
		if err := tx.Delete(ctx, kind, "gone", store.Any); err != nil {
			return err
		}
		return fmt.Errorf("wrapped: %w", errAbort)
	})
	wantErr(t, "Update", err, errAbort)
	assertUntouched(t, s, v, before)
}

func assertUntouched(t *testing.T, s store.Store, keepVersion, changes int64) {
	t.Helper()
	ctx := t.Context()
	if r := mustGet(t, s, kind, "keep"); string(r.Value) != "orig" || r.Version != keepVersion {
		t.Fatalf("keep = %q v%d after rollback, want orig v%d", r.Value, r.Version, keepVersion)
	}
	mustGet(t, s, kind, "gone")
	_, err := s.Get(ctx, kind, "new")
	wantErr(t, "Get(new) after rollback", err, store.ErrNotFound)
	_, err = s.Get(ctx, "other", "new")
	wantErr(t, "Get(other/new) after rollback", err, store.ErrNotFound)
	if after, err := s.Changes(ctx, kind); err != nil || after != changes {
		t.Fatalf("Changes after rollback = %d, %v; want %d", after, err, changes)
	}
	// The store is still usable.
	mustPut(t, s, kind, "after", []byte("x"), store.Absent)
}

func testUpdateRollsBackOnPanic(t *testing.T, s store.Store) {
	ctx := t.Context()
	v := mustPut(t, s, kind, "keep", []byte("orig"), store.Absent)
	mustPut(t, s, kind, "gone", []byte("orig"), store.Absent)
	before, err := s.Changes(ctx, kind)
	if err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if r := recover(); r != "storetest panic" {
				t.Fatalf("recovered %v, want the panic from fn", r)
			}
		}()
		_ = s.Update(ctx, func(tx store.Tx) error {
			if _, err := tx.Put(ctx, kind, "keep", []byte("changed"), store.Any); err != nil {
				return err
			}
			if _, err := tx.Put(ctx, kind, "new", []byte("new"), store.Any); err != nil {
				return err
			}
			if err := tx.Delete(ctx, kind, "gone", store.Any); err != nil {
				return err
			}
			panic("storetest panic")
		})
	}()
	assertUntouched(t, s, v, before)
}

func testUpdateReadsOwnWrites(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPut(t, s, kind, "a/1", []byte("old"), store.Absent)
	mustPut(t, s, kind, "a/3", []byte("doomed"), store.Absent)
	err := s.Update(ctx, func(tx store.Tx) error {
		v, err := tx.Put(ctx, kind, "a/1", []byte("new"), store.Any)
		if err != nil {
			return err
		}
		if r, err := tx.Get(ctx, kind, "a/1"); err != nil || string(r.Value) != "new" || r.Version != v {
			return fmt.Errorf("tx.Get = %+v, %v; want new v%d", r, err, v)
		}
		if _, err := tx.Put(ctx, kind, "a/2", []byte("created"), store.Absent); err != nil {
			return err
		}
		if err := tx.Delete(ctx, kind, "a/3", store.Any); err != nil {
			return err
		}
		if _, err := tx.Get(ctx, kind, "a/3"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("tx.Get of a record deleted in tx: %v, want ErrNotFound", err)
		}
		rs, err := tx.List(ctx, kind, "a/", "", 0)
		if err != nil {
			return err
		}
		if got := keys(rs); !slices.Equal(got, []string{"a/1", "a/2"}) {
			return fmt.Errorf("tx.List = %q, want [a/1 a/2]", got)
		}
		if string(rs[0].Value) != "new" || string(rs[1].Value) != "created" {
			return fmt.Errorf("tx.List values = %q, %q", rs[0].Value, rs[1].Value)
		}
		// Preconditions see the tx's own writes.
		if _, err := tx.Put(ctx, kind, "a/2", []byte("x"), store.Absent); !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("Put(Absent) of a record created in tx: %v, want ErrConflict", err)
		}
		if _, err := tx.Put(ctx, kind, "a/3", []byte("back"), store.Absent); err != nil {
			return fmt.Errorf("recreate in tx: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := s.List(ctx, kind, "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(rs); !slices.Equal(got, []string{"a/1", "a/2", "a/3"}) {
		t.Fatalf("after commit List = %q", got)
	}
}

func testUpdateErrorUnchanged(t *testing.T, s store.Store) {
	ctx := t.Context()
	// A precondition failure inside fn, passed through, is the caller's to see;
	// the store must not retry it into success or swallow it.
	mustPut(t, s, kind, "k", []byte("x"), store.Absent)
	calls := 0
	err := s.Update(ctx, func(tx store.Tx) error {
		calls++
		_, err := tx.Put(ctx, kind, "k", []byte("y"), store.Absent)
		return err
	})
	wantErr(t, "Update passing ErrConflict", err, store.ErrConflict)
	if calls != 1 {
		t.Fatalf("fn ran %d times for a precondition failure, want 1", calls)
	}
	// A tx whose fn ignores a failed precondition still commits its other writes.
	err = s.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.Put(ctx, kind, "k", []byte("y"), store.Absent); !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("want ErrConflict, got %v", err)
		}
		if err := tx.Delete(ctx, kind, "missing", 5); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("want ErrNotFound, got %v", err)
		}
		_, err := tx.Put(ctx, kind, "k2", []byte("z"), store.Absent)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, kind, "k2")
	// A canceled context fails the call.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Update(cctx, func(tx store.Tx) error { return nil }); err == nil {
		t.Fatalf("Update with a canceled context succeeded")
	}
}

func testViewSnapshot(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPut(t, s, kind, "a", []byte("a1"), store.Absent)
	mustPut(t, s, kind, "b", []byte("b1"), store.Absent)
	err := s.View(ctx, func(r store.Reader) error {
		ra, err := r.Get(ctx, kind, "a")
		if err != nil || string(ra.Value) != "a1" {
			return fmt.Errorf("first read: %+v, %v", ra, err)
		}
		// Another writer commits while the snapshot is open. (It must not
		// need this View to finish: it runs to completion before we go on.)
		werr := make(chan error, 1)
		go func() {
			werr <- s.Update(ctx, func(tx store.Tx) error {
				if _, err := tx.Put(ctx, kind, "a", []byte("a2"), store.Any); err != nil {
					return err
				}
				if _, err := tx.Put(ctx, kind, "c", []byte("c2"), store.Absent); err != nil {
					return err
				}
				return tx.Delete(ctx, kind, "b", store.Any)
			})
		}()
		if err := <-werr; err != nil {
			return fmt.Errorf("concurrent Update: %w", err)
		}
		ra, err = r.Get(ctx, kind, "a")
		if err != nil || string(ra.Value) != "a1" {
			return fmt.Errorf("snapshot saw a later write: %q, %v", ra.Value, err)
		}
		if rb, err := r.Get(ctx, kind, "b"); err != nil || string(rb.Value) != "b1" {
			return fmt.Errorf("snapshot saw a later delete: %+v, %v", rb, err)
		}
		rs, err := r.List(ctx, kind, "", "", 0)
		if err != nil {
			return err
		}
		if got := keys(rs); !slices.Equal(got, []string{"a", "b"}) {
			return fmt.Errorf("snapshot List = %q, want [a b]", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := mustGet(t, s, kind, "a"); string(r.Value) != "a2" {
		t.Fatalf("after View, a = %q, want a2", r.Value)
	}
	errView := errors.New("view error")
	if err := s.View(ctx, func(store.Reader) error { return errView }); !errors.Is(err, errView) {
		t.Fatalf("View error = %v, want %v", err, errView)
	}
}

func testChanges(t *testing.T, s store.Store) {
	ctx := t.Context()
	changes := func(k string) int64 {
		t.Helper()
		n, err := s.Changes(ctx, k)
		if err != nil {
			t.Fatalf("Changes(%q): %v", k, err)
		}
		return n
	}
	grows := func(what string, k string, write func()) {
		t.Helper()
		before, other := changes(k), changes("unrelated")
		write()
		if after := changes(k); after <= before {
			t.Fatalf("%s: Changes(%q) %d -> %d, want growth", what, k, before, after)
		}
		if o := changes("unrelated"); o != other {
			t.Fatalf("%s: Changes(unrelated) %d -> %d, want unchanged", what, other, o)
		}
	}
	stays := func(what string, k string, write func()) {
		t.Helper()
		before := changes(k)
		write()
		if after := changes(k); after != before {
			t.Fatalf("%s: Changes(%q) %d -> %d, want unchanged", what, k, before, after)
		}
	}
	grows("create", kind, func() { mustPut(t, s, kind, "k", []byte("1"), store.Absent) })
	grows("overwrite", kind, func() { mustPut(t, s, kind, "k", []byte("2"), store.Any) })
	stays("write other kind", kind, func() { mustPut(t, s, "other", "k", []byte("1"), store.Any) })
	stays("failed precondition", kind, func() {
		_, err := store.Put(ctx, s, kind, "k", []byte("3"), store.Absent)
		wantErr(t, "Put", err, store.ErrConflict)
	})
	stays("read", kind, func() { mustGet(t, s, kind, "k") })
	grows("delete", kind, func() {
		if err := store.Delete(ctx, s, kind, "k", store.Any); err != nil {
			t.Fatal(err)
		}
	})
	stays("delete of other kind", kind, func() {
		if err := store.Delete(ctx, s, "other", "k", store.Any); err != nil {
			t.Fatal(err)
		}
	})
	grows("recreate", kind, func() { mustPut(t, s, kind, "k", []byte("again"), store.Absent) })
	grows("many writes", kind, func() {
		for i := range 20 {
			mustPut(t, s, kind, "m"+strconv.Itoa(i), []byte("x"), store.Any)
		}
	})
}

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// Goroutines × increments for the lost-update tests (16 × 50 per the issue).
const (
	workers    = 16
	increments = 50
)

func testConcurrentUpdate(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPut(t, s, kind, "counter", []byte("0"), store.Absent)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range increments {
				err := s.Update(ctx, func(tx store.Tx) error {
					r, err := tx.Get(ctx, kind, "counter")
					if err != nil {
						return err
					}
					n, err := strconv.Atoi(string(r.Value))
					if err != nil {
						return err
					}
					_, err = tx.Put(ctx, kind, "counter", []byte(strconv.Itoa(n+1)), r.Version)
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Update: %v", err)
	}
	if r := mustGet(t, s, kind, "counter"); string(r.Value) != strconv.Itoa(workers*increments) {
		t.Fatalf("counter = %s, want %d (lost updates)", r.Value, workers*increments)
	}
}

func testConcurrentPutRetry(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPut(t, s, kind, "counter", []byte("0"), store.Absent)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range increments {
				for {
					r, err := s.Get(ctx, kind, "counter")
					if err != nil {
						errs <- err
						return
					}
					n, err := strconv.Atoi(string(r.Value))
					if err != nil {
						errs <- err
						return
					}
					_, err = store.Put(ctx, s, kind, "counter", []byte(strconv.Itoa(n+1)), r.Version)
					if errors.Is(err, store.ErrConflict) {
						continue // someone else won; read again
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Put: %v", err)
	}
	if r := mustGet(t, s, kind, "counter"); string(r.Value) != strconv.Itoa(workers*increments) {
		t.Fatalf("counter = %s, want %d (lost updates)", r.Value, workers*increments)
	}
}
