package diskdata

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"

	"github.com/cvault/cvault/internal/compute/blockstore"
	"github.com/cvault/cvault/internal/compute/diskcrypt"
)

// Guest-keyed disks (ConfidentialVM_DiskEncryptedWithCustomerKey): the
// server holds their data key only wrapped and cannot unwrap it, so their
// signed URL serves the stored sector records as they are — ciphertext —
// and takes whole records on upload. Record i (sector i, RecordSize bytes:
// nonce ‖ AES-256-GCM ciphertext ‖ tag, see diskcrypt) sits at byte
// i×RecordSize; the guest that released the key opens them itself. The
// blob's metadata (x-ms-meta-*, what pageblob.GetProperties returns as
// Metadata) says how, including the wrapped data key.

// ErrUnaligned: a raw write that is not whole sector records.
var ErrUnaligned = errors.New("diskdata: raw writes must be whole sector records")

// Raw sector format, as named in the blob metadata.
const RawFormat = "cvault-sector-aes256gcm-v1"

// CreateGuestKeyed is Create for a disk whose data key only its guest
// unwraps: its signed URLs serve raw sector records.
func (s *Service) CreateGuestKeyed(ctx context.Context, id string, sizeBytes int64, w diskcrypt.Wrapper) error {
	return s.create(ctx, id, sizeBytes, w, true)
}

// WrappedKey returns the disk's current data key as stored (wrapped).
func (s *Service) WrappedKey(ctx context.Context, id string) (diskcrypt.WrappedKey, error) {
	d, _, err := s.get(ctx, s.cfg.Store, id)
	if err != nil {
		return diskcrypt.WrappedKey{}, err
	}
	return d.Key.Current, nil
}

// IO is byte-addressed I/O on a disk through its signed URL: decrypted
// (*diskcrypt.Disk) or raw (*RawDisk).
type IO interface {
	Size() int64
	ReadAt(ctx context.Context, p []byte, off int64) error
	WriteAt(ctx context.Context, p []byte, off int64) error
	Zero(ctx context.Context, off, n int64) error
}

// AuthorizeIO checks a signed URL like Authorize and returns the disk's
// I/O: raw records for a guest-keyed disk, decrypted data otherwise.
func (s *Service) AuthorizeIO(ctx context.Context, id string, q url.Values, write bool) (IO, error) {
	d, err := s.authorize(ctx, id, q, write)
	if err != nil {
		return nil, err
	}
	if d.GuestKeyed {
		sectors := (d.SizeBytes + diskcrypt.SectorSize - 1) / diskcrypt.SectorSize
		return &RawDisk{id: d.ID, sectors: sectors, blocks: s.cfg.Blocks, key: d.Key.Current}, nil
	}
	return s.open(ctx, d)
}

// RawDisk is a guest-keyed disk's stored records, byte-addressed.
type RawDisk struct {
	id      string
	sectors int64
	blocks  blockstore.Store
	key     diskcrypt.WrappedKey
}

// Size is the records' total length.
func (r *RawDisk) Size() int64 { return r.sectors * diskcrypt.RecordSize }

// Metadata describes the raw format for the guest: the disk ID bound into
// every sector's associated data, the sector geometry, and the data key
// wrapped (RSA-OAEP-256) by the key version it names.
func (r *RawDisk) Metadata() map[string]string {
	return map[string]string{
		"cvaultformat":     RawFormat,
		"cvaultdiskid":     r.id,
		"cvaultsectorsize": strconv.Itoa(diskcrypt.SectorSize),
		"cvaultrecordsize": strconv.Itoa(diskcrypt.RecordSize),
		"cvaultkeyid":      r.key.KeyID,
		"cvaultwrappedkey": base64.StdEncoding.EncodeToString(r.key.Wrapped),
	}
}

func (r *RawDisk) check(off, n int64) error {
	if off < 0 || n < 0 || off > r.Size() || n > r.Size()-off {
		return fmt.Errorf("raw disk %s: %d bytes at %d of %d: %w", r.id, n, off, r.Size(), diskcrypt.ErrRange)
	}
	return nil
}

// ReadAt fills p with the stored records from byte off.
func (r *RawDisk) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := r.check(off, int64(len(p))); err != nil || len(p) == 0 {
		return err
	}
	first := off / diskcrypt.RecordSize
	last := (off + int64(len(p)) - 1) / diskcrypt.RecordSize
	buf := make([]byte, (last-first+1)*diskcrypt.RecordSize)
	if err := r.blocks.ReadRecords(ctx, r.id, buf, first); err != nil {
		return err
	}
	copy(p, buf[off-first*diskcrypt.RecordSize:])
	return nil
}

func (r *RawDisk) aligned(off, n int64) error {
	if off%diskcrypt.RecordSize != 0 || n%diskcrypt.RecordSize != 0 {
		return fmt.Errorf("raw disk %s: %d bytes at %d: %w", r.id, n, off, ErrUnaligned)
	}
	return r.check(off, n)
}

// WriteAt stores whole records as given: the guest sealed them.
func (r *RawDisk) WriteAt(ctx context.Context, p []byte, off int64) error {
	if err := r.aligned(off, int64(len(p))); err != nil || len(p) == 0 {
		return err
	}
	return r.blocks.WriteRecords(ctx, r.id, p, off/diskcrypt.RecordSize)
}

// Zero returns whole records to the never-written state.
func (r *RawDisk) Zero(ctx context.Context, off, n int64) error {
	if err := r.aligned(off, n); err != nil || n == 0 {
		return err
	}
	return r.blocks.ClearRecords(ctx, r.id, off/diskcrypt.RecordSize, n/diskcrypt.RecordSize)
}
