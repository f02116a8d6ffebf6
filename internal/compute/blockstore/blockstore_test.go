package blockstore_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/cvault/cvault/internal/compute/blockstore"
)

func TestDir(t *testing.T) {
	ctx := context.Background()
	d, err := blockstore.NewDir(t.TempDir(), 100)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
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
