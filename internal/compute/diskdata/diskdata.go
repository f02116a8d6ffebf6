// Package diskdata holds the data side of managed disks (the compute
// issue, seed 003; re-wrap for rotation, seed 004): each disk's size, its
// wrapped data key (current and, during a rotation, pending), its
// encrypted blocks, and the expiring signed URLs of beginGetAccess /
// endGetAccess through which data goes in and out. The ARM disk resource
// (compute) creates a record here per disk and hands over the Wrapper of
// its encryption settings; the signed-URL routes live in diskdata/diskhttp.
package diskdata

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cvault/cvault/internal/barrier"
	"github.com/cvault/cvault/internal/compute/blockstore"
	"github.com/cvault/cvault/internal/compute/diskcrypt"
	"github.com/cvault/cvault/internal/store"
)

// Store kinds owned by this package.
const (
	kindDisk   = "diskdata"     // key: lower-case disk ID; value: record JSON
	kindSASKey = "diskdata-key" // key "sas": the sealed HMAC key of signed URLs
	sasKeyName = "sas"
)

// SAS query parameters, shaped like a managed disk's SAS URL.
const (
	sasVersion   = "2018-03-28"
	maxSizeBytes = 32 << 40 // Azure's largest managed disk (32 TiB; Ultra/v2 go to 64 TiB)
	// PageSize is the page-blob alignment of writes and sizes.
	PageSize = 512
)

var (
	// ErrNotFound: no disk with that ID.
	ErrNotFound = errors.New("diskdata: disk not found")
	// ErrExists: a disk with that ID already exists.
	ErrExists = errors.New("diskdata: disk already exists")
	// ErrInvalid: a malformed disk ID, size or duration.
	ErrInvalid = errors.New("diskdata: invalid argument")
	// ErrAccessDenied: a signed URL that is malformed, tampered with,
	// expired or revoked.
	ErrAccessDenied = errors.New("diskdata: access signature invalid or expired")
	// ErrPermission: a valid signed URL that does not grant the operation.
	ErrPermission = errors.New("diskdata: access signature does not permit this operation")
	// ErrKeyUnavailable: the disk's data key cannot be unwrapped now (the
	// wrapping key is unknown here, disabled or refused by its vault).
	ErrKeyUnavailable = errors.New("diskdata: the disk's data key cannot be unwrapped")
)

// Keyring finds the Wrapper able to unwrap a disk's data key under keyID
// (a platform key, a customer key version, or a Double of both). The
// compute service implements it over its DES records; its Wrapper for a
// customer key calls the customer's vault over HTTPS.
type Keyring interface {
	Wrapper(ctx context.Context, diskID, keyID string) (diskcrypt.Wrapper, error)
}

// Config wires the service.
type Config struct {
	Store  store.Store
	Sealer barrier.Sealer
	Blocks blockstore.Store
	// Keyring resolves unwrapping keys; nil means only Platform's key.
	Keyring Keyring
	// Platform is the platform-key wrapper (diskcrypt.LoadOrCreatePlatform).
	Platform *diskcrypt.Platform
	// BaseURL is the public base URL signed URLs start with.
	BaseURL *url.URL
	// DEKCacheTTL bounds how long an unwrapped data key is reused; zero
	// means 5 minutes, negative disables the cache.
	DEKCacheTTL time.Duration
	Now         func() time.Time
	Rand        io.Reader
}

// DefaultDEKCacheTTL is the unwrapped-key lifetime when Config leaves it zero.
const DefaultDEKCacheTTL = 5 * time.Minute

// Service is the managed-disk data service.
type Service struct {
	cfg    Config
	cache  *diskcrypt.Cache
	locks  *diskcrypt.Locks
	sasKey atomic.Pointer[[]byte] // loaded once; never changes for a store
}

// New checks cfg and returns the service.
func New(cfg Config) (*Service, error) {
	var errs []error
	if cfg.Store == nil {
		errs = append(errs, errors.New("diskdata: Store is required"))
	}
	if cfg.Sealer == nil {
		errs = append(errs, errors.New("diskdata: Sealer is required"))
	}
	if cfg.Blocks == nil {
		errs = append(errs, errors.New("diskdata: Blocks is required"))
	}
	if cfg.Platform == nil {
		errs = append(errs, errors.New("Platform is required"))
	}
	if cfg.BaseURL == nil {
		errs = append(errs, errors.New("BaseURL is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("diskdata: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.DEKCacheTTL == 0 {
		cfg.DEKCacheTTL = DefaultDEKCacheTTL
	}
	if cfg.Keyring == nil {
		cfg.Keyring = platformOnly{cfg.Platform}
	}
	return &Service{cfg: cfg, cache: diskcrypt.NewCache(cfg.DEKCacheTTL, cfg.Now), locks: diskcrypt.NewLocks()}, nil
}

type platformOnly struct{ p *diskcrypt.Platform }

func (p platformOnly) Wrapper(ctx context.Context, diskID, keyID string) (diskcrypt.Wrapper, error) {
	if keyID != p.p.KeyID() {
		return nil, fmt.Errorf("key %s: %w", keyID, diskcrypt.ErrUnknownKey)
	}
	return p.p, nil
}

// Platform is the platform-key wrapper (for EncryptionAtRestWithPlatformKey
// disks and the outer layer of double encryption).
func (s *Service) Platform() *diskcrypt.Platform { return s.cfg.Platform }

// record is a disk's stored state.
type record struct {
	ID        string              `json:"id"`
	SizeBytes int64               `json:"sizeBytes"`
	Key       diskcrypt.KeyRecord `json:"key"`
	Access    access              `json:"access"`
	Created   time.Time           `json:"created"`
	// GuestKeyed disks' data keys are unwrapped only by their guest: the
	// signed URL serves their sector records raw (raw.go).
	GuestKeyed bool `json:"guestKeyed,omitempty"`
}

// access is the disk's signed-URL state. Gen is in every signature, so
// bumping it (RevokeAccess) voids every URL handed out before.
type access struct {
	Gen     int64     `json:"gen"`
	Active  bool      `json:"active"`
	Write   bool      `json:"write"`
	Expires time.Time `json:"expires"`
}

// Info is what callers may read of a disk.
type Info struct {
	ID           string
	SizeBytes    int64
	KeyID        string // the key (version) wrapping the data key now
	PendingKeyID string // during a rotation: the key it is being re-wrapped to
	AccessActive bool   // a signed URL was granted and not revoked or expired
	AccessWrite  bool
	AccessUntil  time.Time
}

func diskKey(id string) string { return strings.ToLower(id) }

func (s *Service) check(id string) error {
	if !blockstore.ValidDiskID(id) {
		return fmt.Errorf("disk id %q: %w", id, ErrInvalid)
	}
	return nil
}

// Create makes a disk of sizeBytes (a multiple of 512) with a fresh data
// key wrapped by w. Nothing is written to the block store until data arrives.
func (s *Service) Create(ctx context.Context, id string, sizeBytes int64, w diskcrypt.Wrapper) error {
	return s.create(ctx, id, sizeBytes, w, false)
}

func (s *Service) create(ctx context.Context, id string, sizeBytes int64, w diskcrypt.Wrapper, guestKeyed bool) error {
	if err := s.check(id); err != nil {
		return err
	}
	if sizeBytes <= 0 || sizeBytes%PageSize != 0 || sizeBytes > maxSizeBytes {
		return fmt.Errorf("size %d must be a positive multiple of %d up to %d: %w", sizeBytes, PageSize, int64(maxSizeBytes), ErrInvalid)
	}
	dek, key, err := diskcrypt.NewKey(ctx, w, s.cfg.Rand)
	if err != nil {
		return err
	}
	clear(dek)
	rec := record{ID: id, SizeBytes: sizeBytes, Key: key, Created: s.cfg.Now().UTC(), GuestKeyed: guestKeyed}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("diskdata: %w", err)
	}
	if _, err := store.Put(ctx, s.cfg.Store, kindDisk, diskKey(id), b, store.Absent); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("disk %s: %w", id, ErrExists)
		}
		return fmt.Errorf("diskdata: create %s: %w", id, err)
	}
	return nil
}

func (s *Service) get(ctx context.Context, r store.Reader, id string) (record, int64, error) {
	if err := s.check(id); err != nil {
		return record{}, 0, err
	}
	rec, err := r.Get(ctx, kindDisk, diskKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return record{}, 0, fmt.Errorf("disk %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return record{}, 0, fmt.Errorf("diskdata: %w", err)
	}
	var d record
	if err := json.Unmarshal(rec.Value, &d); err != nil {
		return record{}, 0, fmt.Errorf("diskdata: record %s: %w", id, err)
	}
	return d, rec.Version, nil
}

// update applies fn to the disk's record in one store update.
func (s *Service) update(ctx context.Context, id string, fn func(*record) error) (record, error) {
	var out record
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		d, v, err := s.get(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := fn(&d); err != nil {
			return err
		}
		b, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("diskdata: %w", err)
		}
		if _, err := tx.Put(ctx, kindDisk, diskKey(id), b, v); err != nil {
			return fmt.Errorf("diskdata: %w", err)
		}
		out = d
		return nil
	})
	return out, err
}

// Get describes a disk.
func (s *Service) Get(ctx context.Context, id string) (Info, error) {
	d, _, err := s.get(ctx, s.cfg.Store, id)
	if err != nil {
		return Info{}, err
	}
	info := Info{ID: d.ID, SizeBytes: d.SizeBytes, KeyID: d.Key.Current.KeyID,
		AccessActive: d.Access.Active && s.cfg.Now().Before(d.Access.Expires),
		AccessWrite:  d.Access.Write, AccessUntil: d.Access.Expires}
	if d.Key.Pending != nil {
		info.PendingKeyID = d.Key.Pending.KeyID
	}
	return info, nil
}

// Delete removes the disk's record, blocks and cached key.
func (s *Service) Delete(ctx context.Context, id string) error {
	if err := s.check(id); err != nil {
		return err
	}
	err := store.Delete(ctx, s.cfg.Store, kindDisk, diskKey(id), store.Any)
	if err != nil {
		return fmt.Errorf("diskdata: delete %s: %w", id, err)
	}
	s.cache.Forget(diskKey(id) + "\x00")
	return s.cfg.Blocks.Delete(ctx, id)
}

// Open returns the disk's encrypted I/O, unwrapping its data key through
// the keyring unless a live cached copy exists.
func (s *Service) Open(ctx context.Context, id string) (*diskcrypt.Disk, error) {
	d, _, err := s.get(ctx, s.cfg.Store, id)
	if err != nil {
		return nil, err
	}
	return s.open(ctx, d)
}

// Unlock unwraps the disk's data key afresh through the keyring, ignoring
// any cached copy, and caches the result: what a VM start does, so a key
// the customer disabled stops the start at once rather than after the TTL.
func (s *Service) Unlock(ctx context.Context, id string) error {
	d, _, err := s.get(ctx, s.cfg.Store, id)
	if err != nil {
		return err
	}
	s.cache.Forget(diskKey(d.ID) + "\x00")
	_, err = s.open(ctx, d)
	return err
}

func (s *Service) open(ctx context.Context, d record) (*diskcrypt.Disk, error) {
	cur := d.Key.Current
	sum := sha256.Sum256(cur.Wrapped)
	ck := diskKey(d.ID) + "\x00" + cur.KeyID + "\x00" + string(sum[:16])
	if c, ok := s.cache.Get(ck); ok {
		return diskcrypt.NewDisk(d.ID, d.SizeBytes, c, s.cfg.Blocks, s.locks), nil
	}
	w, err := s.cfg.Keyring.Wrapper(ctx, d.ID, cur.KeyID)
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w: %w", d.ID, ErrKeyUnavailable, err)
	}
	dek, err := d.Key.Unwrap(ctx, w)
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w: %w", d.ID, ErrKeyUnavailable, err)
	}
	c, err := diskcrypt.NewCipher(dek, d.ID, s.cfg.Rand)
	clear(dek)
	if err != nil {
		return nil, err
	}
	s.cache.Put(ck, c)
	return diskcrypt.NewDisk(d.ID, d.SizeBytes, c, s.cfg.Blocks, s.locks), nil
}

// PrepareRewrap is a rotation's write-ahead step: it re-wraps the disk's
// data key from its current key (through the keyring) to `to`, and stores
// the result as Pending beside Current in one update. Reads keep using
// Current. Calling it again replaces Pending.
func (s *Service) PrepareRewrap(ctx context.Context, id string, to diskcrypt.Wrapper) (pendingKeyID string, err error) {
	return s.PrepareRewrapFrom(ctx, id, nil, to)
}

// PrepareRewrapFrom is PrepareRewrap unwrapping Current with from (nil:
// the keyring's Wrapper for it). A key rotation passes its own: the
// keyring refuses to unwrap confidential-VM disks for reads, but their
// rotation must unwrap (in memory, with every VM on the set stopped).
func (s *Service) PrepareRewrapFrom(ctx context.Context, id string, from, to diskcrypt.Wrapper) (pendingKeyID string, err error) {
	d, _, err := s.get(ctx, s.cfg.Store, id)
	if err != nil {
		return "", err
	}
	if from == nil {
		if from, err = s.cfg.Keyring.Wrapper(ctx, id, d.Key.Current.KeyID); err != nil {
			return "", fmt.Errorf("disk %s: %w: %w", id, ErrKeyUnavailable, err)
		}
	}
	next, err := d.Key.Rewrap(ctx, from, to)
	if err != nil {
		return "", fmt.Errorf("disk %s: %w", id, err)
	}
	_, err = s.update(ctx, id, func(r *record) error {
		if r.Key.Current.KeyID != d.Key.Current.KeyID || string(r.Key.Current.Wrapped) != string(d.Key.Current.Wrapped) {
			return fmt.Errorf("disk %s: re-wrapped concurrently: %w", id, store.ErrConflict)
		}
		r.Key.Pending = next.Pending
		return nil
	})
	if err != nil {
		return "", err
	}
	return next.Pending.KeyID, nil
}

// CommitRewrap switches the disk's Pending wrap to Current in one update
// (after checking, when verify is set, that Pending opens to the same key
// through the keyring). Without a pending wrap it is diskcrypt.ErrNoPending.
func (s *Service) CommitRewrap(ctx context.Context, id string, verify bool) error {
	return s.commitRewrap(ctx, id, verify, nil)
}

// CommitRewrapWith is CommitRewrap verifying Pending with w (nil: the
// keyring's Wrapper), for the same reason as PrepareRewrapFrom.
func (s *Service) CommitRewrapWith(ctx context.Context, id string, w diskcrypt.Wrapper) error {
	return s.commitRewrap(ctx, id, true, w)
}

func (s *Service) commitRewrap(ctx context.Context, id string, verify bool, w diskcrypt.Wrapper) error {
	var verified []byte
	if verify {
		d, _, err := s.get(ctx, s.cfg.Store, id)
		if err != nil {
			return err
		}
		if d.Key.Pending == nil {
			return fmt.Errorf("disk %s: %w", id, diskcrypt.ErrNoPending)
		}
		if w == nil {
			if w, err = s.cfg.Keyring.Wrapper(ctx, id, d.Key.Pending.KeyID); err != nil {
				return fmt.Errorf("disk %s: %w: %w", id, ErrKeyUnavailable, err)
			}
		}
		if err := d.Key.VerifyPending(ctx, w); err != nil {
			return fmt.Errorf("disk %s: %w", id, err)
		}
		verified = d.Key.Pending.Wrapped
	}
	_, err := s.update(ctx, id, func(r *record) error {
		if verified != nil && (r.Key.Pending == nil || string(r.Key.Pending.Wrapped) != string(verified)) {
			return fmt.Errorf("disk %s: pending re-wrap replaced concurrently: %w", id, store.ErrConflict)
		}
		k, err := r.Key.Commit()
		if err != nil {
			return fmt.Errorf("disk %s: %w", id, err)
		}
		r.Key = k
		return nil
	})
	return err
}

// VerifyKey unwraps the disk's data key from Current with w, checks it
// against the disk's check value and forgets it; it returns the key ID.
func (s *Service) VerifyKey(ctx context.Context, id string, w diskcrypt.Wrapper) (string, error) {
	d, _, err := s.get(ctx, s.cfg.Store, id)
	if err != nil {
		return "", err
	}
	dek, err := d.Key.Unwrap(ctx, w)
	if err != nil {
		return "", fmt.Errorf("disk %s: %w: %w", id, ErrKeyUnavailable, err)
	}
	clear(dek)
	return d.Key.Current.KeyID, nil
}

// GrantAccess (beginGetAccess) returns a signed URL for the disk's data,
// valid for d and read-only unless write. The URL is
// BASE/disks-data/{id}?sv=…&sr=b&sp=r|rw&se={expiry}&sig={HMAC-SHA256}.
func (s *Service) GrantAccess(ctx context.Context, id string, d time.Duration, write bool) (string, error) {
	if d <= 0 || d > 7*24*time.Hour {
		return "", fmt.Errorf("access duration %s must be between 1s and 7 days: %w", d, ErrInvalid)
	}
	key, err := s.signingKey(ctx)
	if err != nil {
		return "", err
	}
	exp := s.cfg.Now().Add(d).UTC().Truncate(time.Second)
	rec, err := s.update(ctx, id, func(r *record) error {
		if r.Access.Active && s.cfg.Now().Before(r.Access.Expires) && r.Access.Write != write {
			// Azure refuses mixing: a disk is either being read or uploaded.
			return fmt.Errorf("disk %s already has %s access: %w", id, map[bool]string{true: "write", false: "read"}[r.Access.Write], ErrInvalid)
		}
		r.Access.Active, r.Access.Write = true, write
		if exp.After(r.Access.Expires) { // several grants: the disk stays open until the last expires
			r.Access.Expires = exp
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sp := "r"
	if write {
		sp = "rw"
	}
	se := exp.Format(time.RFC3339)
	q := url.Values{}
	q.Set("sv", sasVersion)
	q.Set("sr", "b")
	q.Set("sp", sp)
	q.Set("se", se)
	q.Set("sig", sign(key, rec.ID, sp, se, rec.Access.Gen))
	u := *s.cfg.BaseURL
	u.Path = "/disks-data/" + rec.ID
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// RevokeAccess (endGetAccess) voids every signed URL of the disk.
func (s *Service) RevokeAccess(ctx context.Context, id string) error {
	_, err := s.update(ctx, id, func(r *record) error {
		r.Access = access{Gen: r.Access.Gen + 1}
		return nil
	})
	return err
}

// Authorize checks a signed URL's query for disk id and returns the disk
// for I/O. write asks for write permission. A signature that does not
// verify, an expired or revoked URL, or a URL for an unknown disk is
// ErrAccessDenied (they are indistinguishable to the caller, as in Azure);
// a good signature without the permission is ErrPermission.
func (s *Service) Authorize(ctx context.Context, id string, q url.Values, write bool) (*diskcrypt.Disk, error) {
	d, err := s.authorize(ctx, id, q, write)
	if err != nil {
		return nil, err
	}
	return s.open(ctx, d)
}

// authorize checks a signed URL (see Authorize) and returns the disk's record.
func (s *Service) authorize(ctx context.Context, id string, q url.Values, write bool) (record, error) {
	sp, se, sig := q.Get("sp"), q.Get("se"), q.Get("sig")
	if sp != "r" && sp != "rw" || se == "" || sig == "" || !blockstore.ValidDiskID(id) {
		return record{}, ErrAccessDenied
	}
	exp, err := time.Parse(time.RFC3339, se)
	if err != nil {
		return record{}, ErrAccessDenied
	}
	key, err := s.signingKey(ctx)
	if err != nil {
		return record{}, err
	}
	d, _, err := s.get(ctx, s.cfg.Store, id)
	if errors.Is(err, ErrNotFound) {
		return record{}, ErrAccessDenied
	}
	if err != nil {
		return record{}, err
	}
	want := sign(key, d.ID, sp, se, d.Access.Gen)
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return record{}, ErrAccessDenied
	}
	if !s.cfg.Now().Before(exp) || !d.Access.Active {
		return record{}, fmt.Errorf("signed expiry %s: %w", se, ErrAccessDenied)
	}
	if write && sp != "rw" {
		return record{}, ErrPermission
	}
	return d, nil
}

// sign is the URL signature: base64(HMAC-SHA256(key, fields)). The access
// generation is signed but not sent: RevokeAccess changes it.
func sign(key []byte, id, sp, se string, gen int64) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("cvault/disk-sas/v1\n" + diskKey(id) + "\n" + sp + "\n" + se + "\n" + sasVersion + "\n" + strconv.FormatInt(gen, 10)))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// sasKey returns the HMAC key of signed URLs, creating it (sealed) on
// first use; every server on the store shares it.
func (s *Service) signingKey(ctx context.Context) ([]byte, error) {
	if k := s.sasKey.Load(); k != nil {
		return *k, nil
	}
	k, err := s.loadSigningKey(ctx)
	if err != nil {
		return nil, err
	}
	s.sasKey.Store(&k)
	return k, nil
}

func (s *Service) loadSigningKey(ctx context.Context) ([]byte, error) {
	aad := kindSASKey + "/" + sasKeyName
	for range 2 {
		rec, err := s.cfg.Store.Get(ctx, kindSASKey, sasKeyName)
		if err == nil {
			k, err := s.cfg.Sealer.Unseal(aad, rec.Value)
			if err != nil {
				return nil, fmt.Errorf("diskdata: signing key: %w", err)
			}
			return k, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("diskdata: signing key: %w", err)
		}
		k := make([]byte, 32)
		if _, err := io.ReadFull(s.cfg.Rand, k); err != nil {
			return nil, fmt.Errorf("diskdata: signing key: %w", err)
		}
		sealed, err := s.cfg.Sealer.Seal(aad, k)
		if err != nil {
			return nil, fmt.Errorf("diskdata: signing key: %w", err)
		}
		if _, err := store.Put(ctx, s.cfg.Store, kindSASKey, sasKeyName, sealed, store.Absent); err == nil {
			return k, nil
		} else if !errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("diskdata: signing key: %w", err)
		}
	}
	return nil, errors.New("diskdata: signing key: could not create or read")
}
