// Package blockstore holds the encrypted blocks of managed disks at rest
// (the compute issue's "block store"; seed 003's disks). A Store keeps, per
// disk, an array of fixed-size records — one per sector, already encrypted
// by diskcrypt — and knows nothing of keys or plaintext. A record that was
// never written reads as all zeros, so unwritten sectors cost no space.
//
// Dir keeps one sparse file per disk, {dir}/{diskID}.blk, record i at
// offset i×RecordSize (one server, or a shared filesystem). DB (NewStore)
// keeps one store record per written record, so every server on one
// PostgreSQL database shares disk contents. The interface is
// record-addressed, not byte-addressed, so an object-storage backend (one
// object per run of records) can implement it later.
package blockstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sync"
)

// ErrInvalid reports a malformed disk ID, a buffer that is not a whole
// number of records, or a negative record index.
var ErrInvalid = errors.New("blockstore: invalid argument")

// Store holds the records of many disks. Implementations are safe for
// concurrent use; concurrent writes to the same record are the caller's
// to order (diskcrypt locks per sector for its read-modify-write).
type Store interface {
	// ReadRecords fills p (a whole number of records) from record first on.
	// Records never written, or beyond the end of what was written, read
	// as zeros; a disk with no records at all reads as zeros too.
	ReadRecords(ctx context.Context, diskID string, p []byte, first int64) error
	// WriteRecords stores p (a whole number of records) from record first on.
	WriteRecords(ctx context.Context, diskID string, p []byte, first int64) error
	// ClearRecords returns n records from first on to the never-written
	// (all-zero) state.
	ClearRecords(ctx context.Context, diskID string, first, n int64) error
	// Delete removes every record of the disk; deleting a missing disk is no error.
	Delete(ctx context.Context, diskID string) error
	// Size reports the bytes held for the disk: the apparent length and
	// the space actually allocated (sparse files allocate only what was written).
	Size(ctx context.Context, diskID string) (Usage, error)
}

// Usage is what a disk occupies in a Store.
type Usage struct {
	Length    int64 // apparent length in bytes (last written record's end)
	Allocated int64 // bytes actually allocated (≤ Length for sparse files, when known)
}

// diskIDRE bounds disk IDs to names that are safe as file names and object keys.
var diskIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidDiskID reports whether id is usable as a disk ID.
func ValidDiskID(id string) bool { return diskIDRE.MatchString(id) && id != "." && id != ".." }

// Dir is the sparse-file Store.
type Dir struct {
	dir        string
	recordSize int

	mu    sync.Mutex
	files map[string]*os.File // open files, shared by all callers (pread/pwrite are concurrency-safe)
}

var _ Store = (*Dir)(nil)

// NewDir returns a Store of records of recordSize bytes in dir, creating
// dir (0700) if needed.
func NewDir(dir string, recordSize int) (*Dir, error) {
	if recordSize <= 0 {
		return nil, fmt.Errorf("blockstore: record size %d: %w", recordSize, ErrInvalid)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("blockstore: %w", err)
	}
	return &Dir{dir: dir, recordSize: recordSize, files: map[string]*os.File{}}, nil
}

// RecordSize is the size of one record.
func (d *Dir) RecordSize() int { return d.recordSize }

// Path is the file holding a disk's records (tests scan it for plaintext).
func (d *Dir) Path(diskID string) string { return filepath.Join(d.dir, diskID+".blk") }

// file returns the disk's open file; create says whether to create it.
func (d *Dir) file(diskID string, create bool) (*os.File, error) {
	if !ValidDiskID(diskID) {
		return nil, fmt.Errorf("blockstore: disk id %q: %w", diskID, ErrInvalid)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if f := d.files[diskID]; f != nil {
		return f, nil
	}
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE
	}
	f, err := os.OpenFile(d.Path(diskID), flag, 0o600)
	if err != nil {
		return nil, err
	}
	d.files[diskID] = f
	return f, nil
}

func (d *Dir) check(p []byte, first int64) error {
	if len(p)%d.recordSize != 0 || first < 0 {
		return fmt.Errorf("blockstore: %d bytes at record %d: %w", len(p), first, ErrInvalid)
	}
	return nil
}

// ReadRecords implements Store.
func (d *Dir) ReadRecords(ctx context.Context, diskID string, p []byte, first int64) error {
	if err := d.check(p, first); err != nil {
		return err
	}
	f, err := d.file(diskID, false)
	if errors.Is(err, os.ErrNotExist) {
		clear(p)
		return nil
	}
	if err != nil {
		return fmt.Errorf("blockstore: read %s: %w", diskID, err)
	}
	n, err := f.ReadAt(p, first*int64(d.recordSize))
	if errors.Is(err, io.EOF) {
		clear(p[n:]) // past the last written record: never written
		err = nil
	}
	if err != nil {
		return fmt.Errorf("blockstore: read %s: %w", diskID, err)
	}
	return nil
}

// WriteRecords implements Store.
func (d *Dir) WriteRecords(ctx context.Context, diskID string, p []byte, first int64) error {
	if err := d.check(p, first); err != nil {
		return err
	}
	f, err := d.file(diskID, true)
	if err != nil {
		return fmt.Errorf("blockstore: write %s: %w", diskID, err)
	}
	if _, err := f.WriteAt(p, first*int64(d.recordSize)); err != nil {
		return fmt.Errorf("blockstore: write %s: %w", diskID, err)
	}
	return nil
}

// ClearRecords implements Store. It writes zeros (a portable choice; a
// hole punch would also free the space, which is Linux-specific).
func (d *Dir) ClearRecords(ctx context.Context, diskID string, first, n int64) error {
	if first < 0 || n < 0 {
		return fmt.Errorf("blockstore: clear %d records at %d: %w", n, first, ErrInvalid)
	}
	f, err := d.file(diskID, false)
	if errors.Is(err, os.ErrNotExist) {
		return nil // nothing written, nothing to clear
	}
	if err != nil {
		return fmt.Errorf("blockstore: clear %s: %w", diskID, err)
	}
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("blockstore: clear %s: %w", diskID, err)
	}
	rs := int64(d.recordSize)
	start, end := first*rs, min((first+n)*rs, st.Size())
	zeros := make([]byte, min(end-start, 1<<20))
	for off := start; off < end; {
		k := min(int64(len(zeros)), end-off)
		if _, err := f.WriteAt(zeros[:k], off); err != nil {
			return fmt.Errorf("blockstore: clear %s: %w", diskID, err)
		}
		off += k
	}
	return nil
}

// Delete implements Store.
func (d *Dir) Delete(ctx context.Context, diskID string) error {
	if !ValidDiskID(diskID) {
		return fmt.Errorf("blockstore: disk id %q: %w", diskID, ErrInvalid)
	}
	d.mu.Lock()
	f := d.files[diskID]
	delete(d.files, diskID)
	d.mu.Unlock()
	if f != nil {
		_ = f.Close() // an in-flight read on it fails with os.ErrClosed, as it should for a deleted disk
	}
	if err := os.Remove(d.Path(diskID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("blockstore: delete %s: %w", diskID, err)
	}
	return nil
}

// Size implements Store.
func (d *Dir) Size(ctx context.Context, diskID string) (Usage, error) {
	if !ValidDiskID(diskID) {
		return Usage{}, fmt.Errorf("blockstore: disk id %q: %w", diskID, ErrInvalid)
	}
	st, err := os.Stat(d.Path(diskID))
	if errors.Is(err, os.ErrNotExist) {
		return Usage{}, nil
	}
	if err != nil {
		return Usage{}, fmt.Errorf("blockstore: size %s: %w", diskID, err)
	}
	return Usage{Length: st.Size(), Allocated: allocated(st)}, nil
}

// Close closes every open file.
func (d *Dir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for id, f := range d.files {
		errs = append(errs, f.Close())
		delete(d.files, id)
	}
	return errors.Join(errs...)
}
