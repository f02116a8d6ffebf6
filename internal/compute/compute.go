// Package compute is cvault's Microsoft.Compute resource provider: disk
// encryption sets (DES), managed disks and confidential virtual machines
// (the compute issue; seed 003's cross-tenant customer-managed keys, seed
// 002's confidential-VM rules, seed 004's DES shared by many VMs).
//
// A DES reaches its customer's key exactly as Azure's disk resource
// provider does: as its managed identity, over HTTPS, with the official
// azkeys client. With federatedClientId set, the identity's token (audience
// api://AzureADTokenExchange) is exchanged at the key's tenant's token
// endpoint — the tenant learned from the vault's 401 challenge — for a
// token of the provider's multi-tenant app (azidentity's
// ClientAssertionCredential). Nothing here calls the key vault service as a
// function, so the customer's RBAC, the federated credential and the
// service principal in the customer's tenant are all exercised for real.
//
// Each disk's data key (diskcrypt, diskdata) is wrapped by the DES's key
// (and, for EncryptionAtRestWithPlatformAndCustomerKeys, by the platform key
// too); the service is the diskdata.Keyring that unwraps it again. Starting
// a VM unwraps its disks' keys afresh, so a customer who disables the key
// stops VM starts at once and disk reads once the DEK cache TTL has passed.
//
// Key-access failures are Azure-shaped errors (*KeyError): the long-running
// operation of the PUT ends Failed with the code, and nothing is stored.
// Azure does not document the exact codes (wire §7.5); cvault uses
// KeyVaultAccessForbidden (no token, no federated credential match, no
// service principal, no role), KeyVaultKeyDisabled, KeyVaultKeyNotFound,
// KeyVaultRegionMismatch and KeyVaultKeyNotSupported.
package compute

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cvault/cvault/internal/arm"
	"github.com/cvault/cvault/internal/compute/diskdata"
	"github.com/cvault/cvault/internal/identity"
	"github.com/cvault/cvault/internal/jobs"
	"github.com/cvault/cvault/internal/store"
)

// Store kinds owned by this package. Keys are lower-case resource IDs.
const (
	KindDES      = "compute.des"
	KindDisk     = "compute.disk"
	KindVM       = "compute.vm"
	KindDiskData = "compute.diskdata" // disk data ID → disk resource key
)

// Namespace is the resource provider namespace.
const Namespace = "Microsoft.Compute"

// Sentinel errors.
var (
	// ErrNotFound: no such resource.
	ErrNotFound = errors.New("compute: not found")
	// ErrConflict: the resource changed concurrently.
	ErrConflict = errors.New("compute: conflict")
)

// Identity is what compute needs from the identity service: system-assigned
// identities bound to their owner, user-assigned identities, and tokens the
// platform obtains as those identities.
type Identity interface {
	PutSystemAssignedIdentity(ctx context.Context, owner string) (identity.UserAssignedIdentity, error)
	SystemAssignedIdentity(ctx context.Context, owner string) (identity.UserAssignedIdentity, error)
	DeleteSystemAssignedIdentity(ctx context.Context, owner string) (bool, error)
	GetUserAssignedIdentity(ctx context.Context, sub, rg, name string) (identity.UserAssignedIdentity, error)
	PlatformIdentityToken(ctx context.Context, identityID, resource string) (*identity.Token, error)
	IssueOwnerSecret(ctx context.Context, owner string, identities []string) (string, error)
	FirstPartyToken(ctx context.Context, tenant, appID, resource string) (*identity.Token, error)
}

// Config wires the service.
type Config struct {
	Store    store.Store
	ARM      *arm.Service
	Identity Identity
	DiskData *diskdata.Service
	// Authority is the token service's base URL (azidentity's authority host).
	Authority string
	// HTTPClient reaches key vaults and the token endpoint over HTTPS.
	HTTPClient *http.Client
	// Jobs leases key rotations (nil: a queue of this process alone).
	Jobs *jobs.Queue
	// RotationWorkers bounds the disks re-wrapped at once (default 16).
	RotationWorkers int
	// RotationHook, when set, is called at each step of each disk's
	// re-wrap (Step* constants): crash tests kill the process there.
	RotationHook func(step string)
	Now          func() time.Time
	Rand         io.Reader
}

// Service is the compute resource provider.
type Service struct {
	cfg  Config
	keys *keyAccess
	// kick wakes this server's rotation runner when it starts a rotation.
	kick chan struct{}
}

// New checks cfg and returns the service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.ARM == nil || cfg.Identity == nil || cfg.DiskData == nil || cfg.HTTPClient == nil || cfg.Authority == "" {
		return nil, errors.New("compute: Store, ARM, Identity, DiskData, HTTPClient and Authority are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.RotationWorkers <= 0 {
		cfg.RotationWorkers = 16
	}
	s := &Service{cfg: cfg, kick: make(chan struct{}, 1)}
	if s.cfg.Jobs == nil {
		owner, err := s.newGUID()
		if err != nil {
			return nil, err
		}
		if s.cfg.Jobs, err = jobs.New(jobs.Config{Store: cfg.Store, Owner: "compute-" + owner, Now: cfg.Now}); err != nil {
			return nil, err
		}
	}
	s.keys = newKeyAccess(cfg.HTTPClient, strings.TrimRight(cfg.Authority, "/")+"/", s.miToken)
	return s, nil
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }

func (s *Service) newGUID() (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(s.cfg.Rand, b[:]); err != nil {
		return "", fmt.Errorf("compute: random: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

func resKey(id string) string { return strings.ToLower(strings.TrimRight(id, "/")) }

func getJSON(ctx context.Context, r store.Reader, kind, key string, v any) (int64, error) {
	rec, err := r.Get(ctx, kind, key)
	if errors.Is(err, store.ErrNotFound) {
		return 0, fmt.Errorf("%s %s: %w", kind, key, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("compute: read %s: %w", kind, err)
	}
	if err := json.Unmarshal(rec.Value, v); err != nil {
		return 0, fmt.Errorf("compute: decode %s %s: %w", kind, key, err)
	}
	return rec.Version, nil
}

func putJSON(ctx context.Context, tx store.Tx, kind, key string, v any, ifVersion int64) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("compute: encode %s: %w", kind, err)
	}
	if _, err := tx.Put(ctx, kind, key, b, ifVersion); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("%s %s: %w", kind, key, ErrConflict)
		}
		return fmt.Errorf("compute: write %s: %w", kind, err)
	}
	return nil
}

func deleteKey(ctx context.Context, tx store.Tx, kind, key string) error {
	if err := tx.Delete(ctx, kind, key, store.Any); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("compute: delete %s: %w", kind, err)
	}
	return nil
}

func listJSON[T any](ctx context.Context, r store.Reader, kind, prefix string) ([]T, error) {
	recs, err := r.List(ctx, kind, prefix, "", 0)
	if err != nil {
		return nil, fmt.Errorf("compute: list %s: %w", kind, err)
	}
	out := make([]T, 0, len(recs))
	for _, rec := range recs {
		var v T
		if err := json.Unmarshal(rec.Value, &v); err != nil {
			return nil, fmt.Errorf("compute: decode %s %s: %w", kind, rec.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// scopePrefix is the store-key prefix of a subscription's or group's resources.
func scopePrefix(sub, rg string) string {
	p := "/subscriptions/" + sub + "/"
	if rg != "" {
		p += "resourcegroups/" + rg + "/"
	}
	return strings.ToLower(p)
}
