package blockstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/cvault/cvault/internal/store"
)

// Record kinds of the store-backed block store.
const (
	// BlockKind holds one record per written sector record, keyed
	// {diskID}/{16 lower-case hex digits of the record index}, so a prefix
	// List streams a disk in record order.
	BlockKind = "diskblock"
	// SizeKind holds one record per disk, keyed {diskID}: its apparent length.
	SizeKind = "diskblocksize"
)

// deleteBatch is how many records one Update of Delete or ClearRecords
// removes: bounded transactions, whatever the disk's size.
const deleteBatch = 256

// DB is the Store over cvault's store.Store: servers sharing one
// PostgreSQL database share disk contents with nothing on local disk.
// Records are ciphertext (diskcrypt encrypts before the block store), so
// nothing is sealed here. A multi-record WriteRecords is one store Update,
// so a range write is atomic.
type DB struct {
	s          store.Store
	recordSize int
}

var _ Store = (*DB)(nil)

// NewStore returns a Store of records of recordSize bytes kept in s.
func NewStore(s store.Store, recordSize int) (*DB, error) {
	if s == nil || recordSize <= 0 {
		return nil, fmt.Errorf("blockstore: store %v, record size %d: %w", s != nil, recordSize, ErrInvalid)
	}
	return &DB{s: s, recordSize: recordSize}, nil
}

// RecordSize is the size of one record.
func (d *DB) RecordSize() int { return d.recordSize }

type sizeRecord struct {
	Length int64 `json:"length"` // end of the last record ever written, in bytes
}

func blockKey(diskID string, i int64) string { return fmt.Sprintf("%s/%016x", diskID, i) }

// recordIndex parses the index out of a block key of diskID.
func recordIndex(diskID, key string) (int64, error) {
	var i int64
	hex, ok := strings.CutPrefix(key, diskID+"/")
	if !ok || len(hex) != 16 {
		return 0, fmt.Errorf("blockstore: malformed block key %q", key)
	}
	if _, err := fmt.Sscanf(hex, "%016x", &i); err != nil {
		return 0, fmt.Errorf("blockstore: malformed block key %q: %w", key, err)
	}
	return i, nil
}

// rangeList lists at most deleteBatch stored records from record first
// on, within [first, first+n) and perhaps beyond; full reports that it
// returned as many as it may (there may be more). The prefix is the key
// digits first and last share, so the store scans little beyond the range
// even where the disk is sparse.
func rangeList(ctx context.Context, r store.Reader, diskID string, first, n int64) (recs []store.Record, full bool, err error) {
	lo, hi := blockKey(diskID, first), blockKey(diskID, first+n-1)
	k := 0
	for k < len(lo) && lo[k] == hi[k] {
		k++
	}
	after := ""
	if first > 0 {
		after = blockKey(diskID, first-1)
	}
	limit := int(min(n, deleteBatch))
	recs, err = r.List(ctx, BlockKind, lo[:k], after, limit)
	return recs, len(recs) == limit, err
}

func (d *DB) check(diskID string, p []byte, first int64) error {
	if !ValidDiskID(diskID) {
		return fmt.Errorf("blockstore: disk id %q: %w", diskID, ErrInvalid)
	}
	if len(p)%d.recordSize != 0 || first < 0 {
		return fmt.Errorf("blockstore: %d bytes at record %d: %w", len(p), first, ErrInvalid)
	}
	return nil
}

// ReadRecords implements Store: one consistent snapshot of the range.
func (d *DB) ReadRecords(ctx context.Context, diskID string, p []byte, first int64) error {
	if err := d.check(diskID, p, first); err != nil {
		return err
	}
	clear(p)
	rs := int64(d.recordSize)
	n := int64(len(p)) / rs
	err := d.s.View(ctx, func(r store.Reader) error {
		for next, end := first, first+n; next < end; {
			recs, full, err := rangeList(ctx, r, diskID, next, end-next)
			if err != nil {
				return err
			}
			for _, rec := range recs {
				i, err := recordIndex(diskID, rec.Key)
				if err != nil {
					return err
				}
				if i >= end {
					return nil
				}
				if len(rec.Value) != d.recordSize {
					return fmt.Errorf("blockstore: record %d holds %d bytes, want %d", i, len(rec.Value), d.recordSize)
				}
				copy(p[(i-first)*rs:], rec.Value)
				next = i + 1
			}
			if !full {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		clear(p)
		return fmt.Errorf("blockstore: read %s: %w", diskID, err)
	}
	return nil
}

// WriteRecords implements Store in one Update (all or none of the range).
func (d *DB) WriteRecords(ctx context.Context, diskID string, p []byte, first int64) error {
	if err := d.check(diskID, p, first); err != nil {
		return err
	}
	if len(p) == 0 {
		return nil
	}
	rs := int64(d.recordSize)
	end := first*rs + int64(len(p))
	err := d.s.Update(ctx, func(tx store.Tx) error {
		for i := int64(0); i < int64(len(p))/rs; i++ {
			if _, err := tx.Put(ctx, BlockKind, blockKey(diskID, first+i), p[i*rs:(i+1)*rs], store.Any); err != nil {
				return err
			}
		}
		var sz sizeRecord
		rec, err := tx.Get(ctx, SizeKind, diskID)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		default:
			if err := json.Unmarshal(rec.Value, &sz); err != nil {
				return fmt.Errorf("size record: %w", err)
			}
		}
		if end <= sz.Length {
			return nil
		}
		v, err := json.Marshal(sizeRecord{Length: end})
		if err != nil {
			return err
		}
		_, err = tx.Put(ctx, SizeKind, diskID, v, store.Any)
		return err
	})
	if err != nil {
		return fmt.Errorf("blockstore: write %s: %w", diskID, err)
	}
	return nil
}

// ClearRecords implements Store by deleting the stored records of the
// range, deleteBatch per Update. The apparent length stays, as a file's would.
func (d *DB) ClearRecords(ctx context.Context, diskID string, first, n int64) error {
	if !ValidDiskID(diskID) || first < 0 || n < 0 {
		return fmt.Errorf("blockstore: clear %d records at %d of %q: %w", n, first, diskID, ErrInvalid)
	}
	// Each batch deletes what it listed, so the next one lists from first again.
	for more := n > 0; more; {
		err := d.s.Update(ctx, func(tx store.Tx) error {
			recs, full, err := rangeList(ctx, tx, diskID, first, n)
			if err != nil {
				return err
			}
			more = full
			for _, rec := range recs {
				i, err := recordIndex(diskID, rec.Key)
				if err != nil {
					return err
				}
				if i >= first+n {
					more = false
					return nil
				}
				if err := tx.Delete(ctx, BlockKind, rec.Key, store.Any); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("blockstore: clear %s: %w", diskID, err)
		}
	}
	return nil
}

// Delete implements Store, deleteBatch records per Update; the size record
// goes with the last batch.
func (d *DB) Delete(ctx context.Context, diskID string) error {
	if !ValidDiskID(diskID) {
		return fmt.Errorf("blockstore: disk id %q: %w", diskID, ErrInvalid)
	}
	for done := false; !done; {
		err := d.s.Update(ctx, func(tx store.Tx) error {
			recs, err := tx.List(ctx, BlockKind, diskID+"/", "", deleteBatch)
			if err != nil {
				return err
			}
			for _, rec := range recs {
				if err := tx.Delete(ctx, BlockKind, rec.Key, store.Any); err != nil {
					return err
				}
			}
			done = len(recs) < deleteBatch
			if done {
				return tx.Delete(ctx, SizeKind, diskID, store.Any)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("blockstore: delete %s: %w", diskID, err)
		}
	}
	return nil
}

// Size implements Store. Allocated counts the stored records, listing the
// whole disk: O(records), for reports and tests, not the I/O path.
func (d *DB) Size(ctx context.Context, diskID string) (Usage, error) {
	if !ValidDiskID(diskID) {
		return Usage{}, fmt.Errorf("blockstore: disk id %q: %w", diskID, ErrInvalid)
	}
	var u Usage
	err := d.s.View(ctx, func(r store.Reader) error {
		rec, err := r.Get(ctx, SizeKind, diskID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var sz sizeRecord
		if err := json.Unmarshal(rec.Value, &sz); err != nil {
			return fmt.Errorf("size record: %w", err)
		}
		u.Length = sz.Length
		for after := ""; ; {
			recs, err := r.List(ctx, BlockKind, diskID+"/", after, 1024)
			if err != nil {
				return err
			}
			u.Allocated += int64(len(recs)) * int64(d.recordSize)
			if len(recs) < 1024 {
				return nil
			}
			after = recs[len(recs)-1].Key
		}
	})
	if err != nil {
		return Usage{}, fmt.Errorf("blockstore: size %s: %w", diskID, err)
	}
	return u, nil
}
