package diskcrypt

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/cvault/cvault/internal/compute/blockstore"
)

// ErrRange means an I/O reaches outside the disk.
var ErrRange = errors.New("diskcrypt: range outside the disk")

// batch is how many sectors one store call moves (1 MiB of plaintext).
const batch = 256

// Disk is byte-addressed, encrypted I/O on one disk's records in a
// blockstore. Writers of overlapping sectors are serialized through Locks
// (shared by every Disk value of the same store); readers take no lock:
// a record caught half-written fails authentication and is read again
// under the lock, so a reader sees each sector either before or after a
// concurrent write, never a mix.
type Disk struct {
	id     string
	size   int64
	cipher *Cipher
	blocks blockstore.Store
	locks  *Locks
}

// NewDisk returns the I/O view of disk id of size bytes.
func NewDisk(id string, size int64, c *Cipher, blocks blockstore.Store, locks *Locks) *Disk {
	return &Disk{id: id, size: size, cipher: c, blocks: blocks, locks: locks}
}

// Size is the disk's size in bytes.
func (d *Disk) Size() int64 { return d.size }

func (d *Disk) check(off, n int64) error {
	if off < 0 || n < 0 || off > d.size || n > d.size-off {
		return fmt.Errorf("disk %s: %d bytes at %d of %d: %w", d.id, n, off, d.size, ErrRange)
	}
	return nil
}

// ReadAt fills p from offset off.
func (d *Disk) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := d.check(off, int64(len(p))); err != nil {
		return err
	}
	if len(p) == 0 {
		return nil
	}
	first, last := off/SectorSize, (off+int64(len(p))-1)/SectorSize
	recs := make([]byte, min(last-first+1, batch)*RecordSize)
	var sec [SectorSize]byte
	for s := first; s <= last; {
		n := min(last-s+1, batch)
		buf := recs[:n*RecordSize]
		if err := d.blocks.ReadRecords(ctx, d.id, buf, s); err != nil {
			return err
		}
		for i := range n {
			sector := s + i
			rec := buf[i*RecordSize : (i+1)*RecordSize]
			dst := sec[:]
			// Whole sectors decrypt straight into p; partial ones go through sec.
			lo := sector * SectorSize
			if lo >= off && lo+SectorSize <= off+int64(len(p)) {
				dst = p[lo-off : lo-off+SectorSize]
			}
			if err := d.cipher.Open(dst, rec, sector); err != nil {
				if err = d.reread(ctx, dst, rec, sector); err != nil {
					return fmt.Errorf("disk %s: %w", d.id, err)
				}
			}
			if &dst[0] == &sec[0] {
				from, to := max(lo, off), min(lo+SectorSize, off+int64(len(p)))
				copy(p[from-off:to-off], sec[from-lo:to-lo])
			}
		}
		s += n
	}
	return nil
}

// reread reads one sector again while holding its write lock: the first
// read may have raced a writer.
func (d *Disk) reread(ctx context.Context, dst, rec []byte, sector int64) error {
	unlock := d.locks.lock(d.id, sector, sector+1)
	defer unlock()
	if err := d.blocks.ReadRecords(ctx, d.id, rec, sector); err != nil {
		return err
	}
	return d.cipher.Open(dst, rec, sector)
}

// WriteAt writes p at offset off. Sectors only partly covered are read,
// merged and re-sealed under the write lock.
func (d *Disk) WriteAt(ctx context.Context, p []byte, off int64) error {
	return d.write(ctx, p, off, int64(len(p)))
}

// Zero sets n bytes from off to zero. Whole sectors return to the
// never-written state (no ciphertext of zeros is stored); partial sectors
// are re-sealed with the range zeroed.
func (d *Disk) Zero(ctx context.Context, off, n int64) error {
	return d.write(ctx, nil, off, n)
}

// write writes p (or zeros when p is nil) over [off, off+n).
func (d *Disk) write(ctx context.Context, p []byte, off, n int64) error {
	if err := d.check(off, n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	end := off + n
	first, last := off/SectorSize, (end-1)/SectorSize
	unlock := d.locks.lock(d.id, first, last+1)
	defer unlock()
	recs := make([]byte, min(last-first+1, batch)*RecordSize)
	var sec [SectorSize]byte
	for s := first; s <= last; {
		k := min(last-s+1, batch)
		buf := recs[:k*RecordSize]
		if p == nil {
			// Clearing: whole sectors become holes, with one store call per run.
			lo, hi := s, s+k
			if off > lo*SectorSize {
				lo++ // partial head sector, re-sealed below
			}
			if end < hi*SectorSize {
				hi--
			}
			if hi > lo {
				if err := d.blocks.ClearRecords(ctx, d.id, lo, hi-lo); err != nil {
					return err
				}
			}
		}
		dirty := false
		for i := range k {
			sector := s + i
			lo := sector * SectorSize
			whole := lo >= off && lo+SectorSize <= end
			rec := buf[i*RecordSize : (i+1)*RecordSize]
			if whole && p == nil {
				continue // cleared above
			}
			if whole {
				if err := d.cipher.Seal(rec, p[lo-off:lo-off+SectorSize], sector); err != nil {
					return err
				}
				dirty = true
				continue
			}
			// Partial sector: read, merge, re-seal.
			if err := d.blocks.ReadRecords(ctx, d.id, rec, sector); err != nil {
				return err
			}
			if err := d.cipher.Open(sec[:], rec, sector); err != nil {
				return fmt.Errorf("disk %s: %w", d.id, err)
			}
			from, to := max(lo, off), min(lo+SectorSize, end)
			if p == nil {
				clear(sec[from-lo : to-lo])
			} else {
				copy(sec[from-lo:to-lo], p[from-off:to-off])
			}
			if err := d.cipher.Seal(rec, sec[:], sector); err != nil {
				return err
			}
			if p == nil { // a clear writes only its partial sectors, one at a time
				if err := d.blocks.WriteRecords(ctx, d.id, rec, sector); err != nil {
					return err
				}
				continue
			}
			dirty = true
		}
		if dirty {
			if err := d.blocks.WriteRecords(ctx, d.id, buf, s); err != nil {
				return err
			}
		}
		s += k
	}
	clear(sec[:])
	return nil
}

// Locks serializes writers of overlapping sector ranges of the same disk.
// One Locks is shared by every Disk on a blockstore.
type Locks struct {
	mu   sync.Mutex
	cond *sync.Cond
	held map[string][]span
}

type span struct{ lo, hi int64 } // sectors [lo, hi)

// NewLocks returns an empty lock table.
func NewLocks() *Locks {
	l := &Locks{held: map[string][]span{}}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// lock waits until no held span of disk overlaps [lo, hi), takes it, and
// returns its release.
func (l *Locks) lock(disk string, lo, hi int64) func() {
	l.mu.Lock()
	for overlaps(l.held[disk], lo, hi) {
		l.cond.Wait()
	}
	l.held[disk] = append(l.held[disk], span{lo, hi})
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		spans := l.held[disk]
		for i, s := range spans {
			if s.lo == lo && s.hi == hi {
				spans = append(spans[:i], spans[i+1:]...)
				break
			}
		}
		if len(spans) == 0 {
			delete(l.held, disk)
		} else {
			l.held[disk] = spans
		}
		l.mu.Unlock()
		l.cond.Broadcast()
	}
}

func overlaps(spans []span, lo, hi int64) bool {
	for _, s := range spans {
		if s.lo < hi && lo < s.hi {
			return true
		}
	}
	return false
}
