package diskcrypt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cvault/cvault/internal/barrier"
	"github.com/cvault/cvault/internal/compute/blockstore"
	"github.com/cvault/cvault/internal/compute/diskcrypt"
	"github.com/cvault/cvault/internal/store/embedded/embeddedtest"
)

func newDisk(t testing.TB, size int64) (*diskcrypt.Disk, *blockstore.Dir) {
	t.Helper()
	bs, err := blockstore.NewDir(t.TempDir(), diskcrypt.RecordSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	dek := make([]byte, 32)
	rand.Read(dek)
	c, err := diskcrypt.NewCipher(dek, "d1", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return diskcrypt.NewDisk("d1", size, c, bs, diskcrypt.NewLocks()), bs
}

// pattern is recognisable plaintext: a marker repeated.
func pattern(n int) []byte {
	return bytes.Repeat([]byte("PLAINTEXT-MARKER"), n/16+1)[:n]
}

func TestDiskRoundTripAndNoPlaintext(t *testing.T) {
	ctx := context.Background()
	const size = 64*diskcrypt.SectorSize + 512
	d, bs := newDisk(t, size)
	want := make([]byte, size)
	for _, w := range []struct{ off, n int64 }{
		{0, 512}, {512, 3 * 512}, {4096 * 3, 4096 * 5}, {4096*10 + 512, 4096*2 + 1024}, {size - 512, 512}, {4096*20 + 7, 1},
	} {
		p := pattern(int(w.n))
		if err := d.WriteAt(ctx, p, w.off); err != nil {
			t.Fatalf("write %+v: %v", w, err)
		}
		copy(want[w.off:], p)
	}
	got := make([]byte, size)
	if err := d.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("read back differs")
	}
	// Unaligned read in the middle.
	part := make([]byte, 5000)
	if err := d.ReadAt(ctx, part, 4096*10+100); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(part, want[4096*10+100:4096*10+5100]) {
		t.Fatal("partial read differs")
	}
	raw, err := os.ReadFile(bs.Path("d1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("PLAINTEXT-MARKER")) || bytes.Contains(raw, []byte("MARKERPLAIN")) {
		t.Fatal("block file holds plaintext")
	}
	// Unwritten sectors are holes, never stored ciphertext of zeros.
	if !diskcrypt.IsUnwritten(raw[40*diskcrypt.RecordSize : 41*diskcrypt.RecordSize]) {
		t.Fatal("unwritten sector 40 is not a hole")
	}
	// Zeroing whole sectors makes holes again; partial zero re-seals.
	if err := d.Zero(ctx, 4096*3+512, 4096*4); err != nil {
		t.Fatal(err)
	}
	clear(want[4096*3+512 : 4096*7+512])
	if err := d.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("read after zero differs")
	}
	raw, _ = os.ReadFile(bs.Path("d1"))
	if !diskcrypt.IsUnwritten(raw[5*diskcrypt.RecordSize : 6*diskcrypt.RecordSize]) {
		t.Fatal("zeroed sector 5 is not a hole")
	}
	// Out of range.
	if err := d.WriteAt(ctx, make([]byte, 1024), size-512); !errors.Is(err, diskcrypt.ErrRange) {
		t.Fatalf("write past end: %v", err)
	}
	if err := d.ReadAt(ctx, make([]byte, 1), size); !errors.Is(err, diskcrypt.ErrRange) {
		t.Fatalf("read past end: %v", err)
	}
}

func TestTamperAndSwapDetected(t *testing.T) {
	ctx := context.Background()
	d, bs := newDisk(t, 8*diskcrypt.SectorSize)
	if err := d.WriteAt(ctx, pattern(8*diskcrypt.SectorSize), 0); err != nil {
		t.Fatal(err)
	}
	path := bs.Path("d1")
	orig, _ := os.ReadFile(path)
	for _, tt := range []struct {
		name   string
		mutate func(b []byte)
		sector int64
	}{
		{"bit flip in ciphertext", func(b []byte) { b[2*diskcrypt.RecordSize+100] ^= 1 }, 2},
		{"bit flip in nonce", func(b []byte) { b[3*diskcrypt.RecordSize] ^= 0x80 }, 3},
		{"bit flip in tag", func(b []byte) { b[5*diskcrypt.RecordSize-1] ^= 1 }, 4},
		{"sector swap", func(b []byte) {
			copy(b[6*diskcrypt.RecordSize:7*diskcrypt.RecordSize], orig[1*diskcrypt.RecordSize:2*diskcrypt.RecordSize])
		}, 6},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := bytes.Clone(orig)
			tt.mutate(b)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, diskcrypt.SectorSize)
			err := d.ReadAt(ctx, buf, tt.sector*diskcrypt.SectorSize)
			if !errors.Is(err, diskcrypt.ErrIntegrity) {
				t.Fatalf("read of tampered sector: %v", err)
			}
			if err := d.ReadAt(ctx, buf, 0); err != nil { // untouched sector 0 still reads
				t.Fatalf("read of intact sector: %v", err)
			}
		})
	}
	// A record moved to another disk (same key, other disk ID) does not open either.
	dek := make([]byte, 32)
	c1, _ := diskcrypt.NewCipher(dek, "a", rand.Reader)
	c2, _ := diskcrypt.NewCipher(dek, "b", rand.Reader)
	rec := make([]byte, diskcrypt.RecordSize)
	if err := c1.Seal(rec, pattern(diskcrypt.SectorSize), 0); err != nil {
		t.Fatal(err)
	}
	if err := c2.Open(make([]byte, diskcrypt.SectorSize), rec, 0); !errors.Is(err, diskcrypt.ErrIntegrity) {
		t.Fatalf("cross-disk record opened: %v", err)
	}
}

func TestConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	const writers, per = 8, 16 // each writer owns 16 sectors, interleaved by 512-byte pages
	d, _ := newDisk(t, writers*per*diskcrypt.SectorSize)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			p := bytes.Repeat([]byte{byte(w + 1)}, 512)
			for i := range per * 8 { // every 512-byte page of the writer's sectors
				off := (int64(w*per)*8 + int64(i)) * 512
				if err := d.WriteAt(ctx, p, off); err != nil {
					t.Error(err)
					return
				}
			}
		})
		// A reader races the writers: it must never see a torn sector.
		wg.Go(func() {
			buf := make([]byte, writers*per*diskcrypt.SectorSize)
			for range 5 {
				if err := d.ReadAt(ctx, buf, 0); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := make([]byte, writers*per*diskcrypt.SectorSize)
	if err := d.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	for w := range writers {
		seg := got[w*per*diskcrypt.SectorSize : (w+1)*per*diskcrypt.SectorSize]
		if !bytes.Equal(seg, bytes.Repeat([]byte{byte(w + 1)}, len(seg))) {
			t.Fatalf("writer %d's sectors differ", w)
		}
	}
}

// Adjacent writers share sectors (512-byte pages of the same 4 KiB sector):
// the read-modify-write must not lose either's page.
func TestConcurrentPagesInOneSector(t *testing.T) {
	ctx := context.Background()
	d, _ := newDisk(t, 4*diskcrypt.SectorSize)
	var wg sync.WaitGroup
	for page := range 32 {
		wg.Go(func() {
			if err := d.WriteAt(ctx, bytes.Repeat([]byte{byte(page + 1)}, 512), int64(page)*512); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got := make([]byte, 4*diskcrypt.SectorSize)
	if err := d.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	for page := range 32 {
		if !bytes.Equal(got[page*512:(page+1)*512], bytes.Repeat([]byte{byte(page + 1)}, 512)) {
			t.Fatalf("page %d lost", page)
		}
	}
}

func TestEnvelope(t *testing.T) {
	ctx := context.Background()
	k1, k2 := make([]byte, 32), make([]byte, 32)
	rand.Read(k1)
	rand.Read(k2)
	p1, _ := diskcrypt.NewPlatform("platform/1", k1)
	other, _ := diskcrypt.NewPlatform("platform/1", k2) // same id, different key
	p2, _ := diskcrypt.NewPlatform("platform/2", k2)

	dek, rec, err := diskcrypt.NewKey(ctx, p1, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rec.Current.Wrapped, dek) {
		t.Fatal("wrapped key contains the DEK")
	}
	got, err := rec.Unwrap(ctx, p1)
	if err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("unwrap: %v", err)
	}
	if _, err := rec.Unwrap(ctx, other); !errors.Is(err, diskcrypt.ErrUnwrap) {
		t.Fatalf("unwrap with another platform key: %v", err)
	}
	if _, err := rec.Unwrap(ctx, p2); !errors.Is(err, diskcrypt.ErrUnknownKey) {
		t.Fatalf("unwrap with a wrapper of another key id: %v", err)
	}

	// Rotation: write ahead, verify, commit; Current opens at every step.
	ahead, err := rec.Rewrap(ctx, p1, p2)
	if err != nil {
		t.Fatal(err)
	}
	if ahead.Current.KeyID != "platform/1" || ahead.Pending.KeyID != "platform/2" {
		t.Fatalf("rewrap record: %+v", ahead)
	}
	if _, err := ahead.Unwrap(ctx, p1); err != nil {
		t.Fatalf("current after write-ahead: %v", err)
	}
	if err := ahead.VerifyPending(ctx, p2); err != nil {
		t.Fatal(err)
	}
	done, err := ahead.Commit()
	if err != nil || done.Pending != nil || done.Current.KeyID != "platform/2" {
		t.Fatalf("commit: %+v %v", done, err)
	}
	if got, err := done.Unwrap(ctx, p2); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("unwrap after commit: %v", err)
	}
	if _, err := done.Commit(); !errors.Is(err, diskcrypt.ErrNoPending) {
		t.Fatalf("second commit: %v", err)
	}
	// A record whose wrapped key was swapped for another disk's is caught by the check value.
	_, rec2, _ := diskcrypt.NewKey(ctx, p1, rand.Reader)
	swapped := rec
	swapped.Current = rec2.Current
	if _, err := swapped.Unwrap(ctx, p1); !errors.Is(err, diskcrypt.ErrWrongKey) {
		t.Fatalf("swapped wrapped key: %v", err)
	}

	// Double: both layers are needed.
	dbl := diskcrypt.Double(p1, p2)
	_, drec, err := diskcrypt.NewKey(ctx, dbl, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if drec.Current.KeyID != "platform/1|platform/2" {
		t.Fatalf("double key id %q", drec.Current.KeyID)
	}
	if _, err := drec.Unwrap(ctx, dbl); err != nil {
		t.Fatal(err)
	}
	if _, err := drec.Unwrap(ctx, diskcrypt.Double(p1, other)); err == nil {
		t.Fatal("double unwrap without the inner key succeeded")
	}
}

func TestLoadOrCreatePlatform(t *testing.T) {
	ctx := context.Background()
	st := embeddedtest.Open(t)
	root := make([]byte, 32)
	sl, _ := barrier.New(root)
	a, err := diskcrypt.LoadOrCreatePlatform(ctx, st, sl, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := diskcrypt.LoadOrCreatePlatform(ctx, st, sl, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w, id, _ := a.WrapKey(ctx, make([]byte, 32))
	if _, err := b.UnwrapKey(ctx, w, id); err != nil {
		t.Fatalf("second load differs: %v", err)
	}
	rec, _ := st.Get(ctx, "disk-platform-key", "1")
	if len(rec.Value) < 32+16 {
		t.Fatal("platform key not sealed")
	}
	root[0] ^= 1
	sl2, _ := barrier.New(root)
	if _, err := diskcrypt.LoadOrCreatePlatform(ctx, st, sl2, rand.Reader); !errors.Is(err, barrier.ErrUnseal) {
		t.Fatalf("load under another root key: %v", err)
	}
}

func TestCacheTTL(t *testing.T) {
	now := time.Unix(1000, 0)
	c := diskcrypt.NewCache(time.Minute, func() time.Time { return now })
	ciph, _ := diskcrypt.NewCipher(make([]byte, 32), "d", rand.Reader)
	c.Put("d\x00k", ciph)
	if _, ok := c.Get("d\x00k"); !ok {
		t.Fatal("fresh entry missing")
	}
	now = now.Add(time.Minute)
	if _, ok := c.Get("d\x00k"); ok {
		t.Fatal("entry outlived its TTL")
	}
	c.Put("d\x00k", ciph)
	c.Forget("d\x00")
	if _, ok := c.Get("d\x00k"); ok {
		t.Fatal("forgotten entry present")
	}
	off := diskcrypt.NewCache(0, nil)
	off.Put("x", ciph)
	if _, ok := off.Get("x"); ok {
		t.Fatal("disabled cache kept an entry")
	}
}

func TestCipherHidesKey(t *testing.T) {
	dek := bytes.Repeat([]byte{0xAB}, 32)
	c, _ := diskcrypt.NewCipher(dek, "d", rand.Reader)
	p, _ := diskcrypt.NewPlatform("platform/1", dek)
	for _, s := range []string{c.String(), p.String()} {
		if bytes.Contains([]byte(s), []byte("ab")) || bytes.Contains([]byte(s), []byte("171")) {
			t.Fatalf("String shows key material: %s", s)
		}
	}
}
