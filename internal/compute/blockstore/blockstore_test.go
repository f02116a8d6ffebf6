package blockstore_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/cvault/cvault/internal/compute/blockstore"
	"github.com/cvault/cvault/internal/store"
	"github.com/cvault/cvault/internal/store/embedded/embeddedtest"
	"github.com/cvault/cvault/internal/store/postgres"
	"github.com/cvault/cvault/internal/store/postgres/pgtest"
)

func TestDir(t *testing.T) {
	d, err := blockstore.NewDir(t.TempDir(), 100)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	testStore(t, d)
}

func TestStore(t *testing.T) {
	for name, open := range map[string]func(testing.TB) store.Store{
		"embedded": func(t testing.TB) store.Store { return embeddedtest.Open(t) },
		"postgres": func(t testing.TB) store.Store { return pgtest.Open(t, postgres.Options{}) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			d, err := blockstore.NewStore(s, 100)
			if err != nil {
				t.Fatal(err)
			}
			testStore(t, d)
			testRanges(t, d)
			testBatches(t, s)
			testConcurrent(t, d)
		})
	}
}

// testStore is the contract every Store keeps, with records of 100 bytes.
func testStore(t *testing.T, d blockstore.Store) {
	t.Helper()
	ctx := context.Background()
	buf := bytes.Repeat([]byte{1}, 300)
	// A disk never written reads as zeros and occupies nothing.
	if err := d.ReadRecords(ctx, "a", buf, 5); err != nil || !bytes.Equal(buf, make([]byte, 300)) {
		t.Fatalf("read of missing disk: %v", err)
	}
	if u, err := d.Size(ctx, "a"); err != nil || u != (blockstore.Usage{}) {
		t.Fatalf("size of missing disk: %+v %v", u, err)
	}
	// Record 10000 only: the file is sparse, earlier records read as zeros.
	rec := bytes.Repeat([]byte{7}, 100)
	if err := d.WriteRecords(ctx, "a", rec, 10000); err != nil {
		t.Fatal(err)
	}
	u, _ := d.Size(ctx, "a")
	if u.Length != 10001*100 || u.Allocated >= u.Length {
		t.Fatalf("usage %+v: not sparse", u)
	}
	got := make([]byte, 200)
	if err := d.ReadRecords(ctx, "a", got, 9999); err != nil || !bytes.Equal(got[:100], make([]byte, 100)) || !bytes.Equal(got[100:], rec) {
		t.Fatalf("read around the written record: %v", err)
	}
	// Past the end reads as zeros.
	if err := d.ReadRecords(ctx, "a", got, 20000); err != nil || !bytes.Equal(got, make([]byte, 200)) {
		t.Fatalf("read past the end: %v", err)
	}
	if err := d.ClearRecords(ctx, "a", 10000, 5); err != nil {
		t.Fatal(err)
	}
	if err := d.ReadRecords(ctx, "a", got[:100], 10000); err != nil || !bytes.Equal(got[:100], make([]byte, 100)) {
		t.Fatalf("cleared record: %v", err)
	}
	if err := d.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if u, _ := d.Size(ctx, "a"); u.Length != 0 {
		t.Fatal("deleted disk still has data")
	}
	for _, bad := range []func() error{
		func() error { return d.WriteRecords(ctx, "../x", rec, 0) },
		func() error { return d.WriteRecords(ctx, "a", rec[:50], 0) },
		func() error { return d.ReadRecords(ctx, "a", rec, -1) },
		func() error { return d.Delete(ctx, "..") },
	} {
		if err := bad(); !errors.Is(err, blockstore.ErrInvalid) {
			t.Errorf("got %v, want ErrInvalid", err)
		}
	}
}

// recs returns n records of 100 bytes, record i filled with byte base+i.
func recs(base byte, n int) []byte {
	p := make([]byte, 0, n*100)
	for i := range n {
		p = append(p, bytes.Repeat([]byte{base + byte(i)}, 100)...)
	}
	return p
}

// testRanges writes, overwrites, reads and clears multi-record ranges that
// straddle hex-digit boundaries of the record index (the key prefixes).
func testRanges(t *testing.T, d blockstore.Store) {
	ctx := context.Background()
	if err := d.WriteRecords(ctx, "r", recs(1, 40), 0xf0); err != nil { // 0xf0..0x117
		t.Fatal(err)
	}
	if err := d.WriteRecords(ctx, "r.b", recs(9, 1), 0xf0); err != nil { // a disk whose ID extends "r"
		t.Fatal(err)
	}
	if err := d.WriteRecords(ctx, "r", recs(100, 4), 0xff); err != nil { // overwrite across the boundary
		t.Fatal(err)
	}
	want := append(make([]byte, 100*0x10), recs(1, 15)...) // 0xe0..0xef unwritten, then 0xf0..0xfe
	want = append(want, recs(100, 4)...)                   // 0xff..0x102
	want = append(want, recs(1+19, 21)...)                 // 0x103..0x117
	want = append(want, make([]byte, 100*8)...)            // 0x118..0x11f unwritten
	got := make([]byte, len(want))
	if err := d.ReadRecords(ctx, "r", got, 0xe0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read of a range: %v (equal %v)", err, bytes.Equal(got, want))
	}
	if u, err := d.Size(ctx, "r"); err != nil || u.Length != 0x118*100 || u.Allocated != 40*100 {
		t.Fatalf("usage %+v %v", u, err)
	}
	// Clearing the middle leaves both ends.
	if err := d.ClearRecords(ctx, "r", 0xf1, 0x110-0xf1); err != nil {
		t.Fatal(err)
	}
	copy(want[100*0x11:100*0x30], make([]byte, 100*(0x30-0x11)))
	if err := d.ReadRecords(ctx, "r", got, 0xe0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read after clear: %v", err)
	}
	if err := d.Delete(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 100)
	if err := d.ReadRecords(ctx, "r.b", one, 0xf0); err != nil || !bytes.Equal(one, recs(9, 1)) {
		t.Fatalf("deleting r touched r.b: %v", err)
	}
}

// testBatches deletes and clears more records than one store Update holds,
// and checks nothing of the disk is left in the store.
func testBatches(t *testing.T, s store.Store) {
	ctx := context.Background()
	d, err := blockstore.NewStore(s, 1)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte{5}, 700)
	if err := d.WriteRecords(ctx, "big", big, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.ClearRecords(ctx, "big", 10, 600); err != nil {
		t.Fatal(err)
	}
	if u, err := d.Size(ctx, "big"); err != nil || u.Length != 700 || u.Allocated != 100 {
		t.Fatalf("usage after clearing 600 of 700: %+v %v", u, err)
	}
	if err := d.WriteRecords(ctx, "big", big, 1000); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{blockstore.BlockKind, blockstore.SizeKind} {
		if left, err := s.List(ctx, kind, "big", "", 0); err != nil || len(left) != 0 {
			t.Fatalf("%s records left after Delete: %d %v", kind, len(left), err)
		}
	}
}

// testConcurrent has writers extend one disk at once (on PostgreSQL their
// transactions conflict on the size record and are retried).
func testConcurrent(t *testing.T, d blockstore.Store) {
	ctx := context.Background()
	const writers, each = 6, 3
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() { errs <- d.WriteRecords(ctx, "c", recs(byte(10*w), each), int64(w*each)) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, writers*each*100)
	if err := d.ReadRecords(ctx, "c", got, 0); err != nil {
		t.Fatal(err)
	}
	for w := range writers {
		if !bytes.Equal(got[w*each*100:(w+1)*each*100], recs(byte(10*w), each)) {
			t.Errorf("writer %d's records lost", w)
		}
	}
	if u, err := d.Size(ctx, "c"); err != nil || u.Length != writers*each*100 {
		t.Fatalf("usage %+v %v", u, err)
	}
}
