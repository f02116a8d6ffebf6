// Package keyvault holds Azure Key Vault for cvault: vaults as ARM resources
// (Microsoft.KeyVault/vaults, with soft delete, purge protection and globally
// unique names) and the keys data plane behind them — key versions whose
// private material is sealed by the barrier, attributes, release policies,
// soft-deleted keys, rotation and rotation policies, key backups (sealed
// under the root key, restorable within one subscription and geography),
// a scheduler that rotates keys and purges what is past its purge date,
// and the cryptographic operations. It serves seed 000 (premium vault, exportable key
// with a release policy, access policies) and seed 003 (customer-managed key
// in a purge-protected RBAC vault wrapping disk keys).
//
// The package holds no HTTP: keyvault/kvhttp serves it in the shapes of
// armkeyvault and azkeys, and asks authz for every authorization decision
// (RBAC data actions or the vault's access policies, as the vault is set).
package keyvault

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/cvault/cvault/internal/authz"
	"github.com/cvault/cvault/internal/barrier"
	"github.com/cvault/cvault/internal/store"
)

// Store kinds owned by this package.
const (
	KindVault      = "kv.vault"  // lower(vault name) → Vault (names are global)
	KindKey        = "kv.key"    // vault/lower(key name) → keyRecord
	KindKeyVersion = "kv.keyver" // vault/lower(key name)/version → Version
)

// Sentinel errors. Errors carrying a client-facing message are *Error
// values that unwrap to one of these.
var (
	ErrVaultNotFound   = errors.New("keyvault: vault not found")
	ErrVaultNameTaken  = errors.New("keyvault: vault name already in use")
	ErrVaultDeleted    = errors.New("keyvault: vault name held by a deleted vault")
	ErrInvalidName     = errors.New("keyvault: invalid name")
	ErrInvalidVault    = errors.New("keyvault: invalid vault properties")
	ErrPurgeProtected  = errors.New("keyvault: purge protection is enabled")
	ErrKeyNotFound     = errors.New("keyvault: key not found")
	ErrKeyDeleted      = errors.New("keyvault: key is in deleted state")
	ErrBadParameter    = errors.New("keyvault: bad parameter")
	ErrKeyDisabled     = errors.New("keyvault: key disabled")
	ErrKeyNotYetValid  = errors.New("keyvault: key not yet valid")
	ErrKeyExpired      = errors.New("keyvault: key expired")
	ErrOpNotPermitted  = errors.New("keyvault: operation not permitted on this key")
	ErrTooManyVersions = errors.New("keyvault: too many key versions")
	ErrConflict        = errors.New("keyvault: conflicting concurrent change")
)

// Error is a service error with the message the client sees.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

func errf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// SKU names.
const (
	SKUStandard = "standard"
	SKUPremium  = "premium"
)

// Vault is a Microsoft.KeyVault/vaults resource.
type Vault struct {
	Subscription  string            `json:"subscription"`
	ResourceGroup string            `json:"resourceGroup"`
	Name          string            `json:"name"` // as created
	Location      string            `json:"location"`
	Tags          map[string]string `json:"tags,omitempty"`
	Properties    VaultProperties   `json:"properties"`
	Created       time.Time         `json:"created"`
	Updated       time.Time         `json:"updated"`
	// Deleted is set while the vault is soft-deleted.
	Deleted *Deletion `json:"deleted,omitempty"`
}

// VaultProperties are the vault's ARM properties.
type VaultProperties struct {
	TenantID                     string               `json:"tenantId"`
	SKU                          string               `json:"sku"` // standard | premium
	AccessPolicies               []authz.AccessPolicy `json:"accessPolicies"`
	EnabledForDeployment         bool                 `json:"enabledForDeployment"`
	EnabledForDiskEncryption     bool                 `json:"enabledForDiskEncryption"`
	EnabledForTemplateDeployment bool                 `json:"enabledForTemplateDeployment"`
	EnableRBACAuthorization      bool                 `json:"enableRbacAuthorization"`
	SoftDeleteRetentionInDays    int                  `json:"softDeleteRetentionInDays"`
	EnablePurgeProtection        bool                 `json:"enablePurgeProtection"`
	PublicNetworkAccess          string               `json:"publicNetworkAccess,omitempty"`
}

// Deletion records when something was soft-deleted and when it is purged.
type Deletion struct {
	Deleted            time.Time `json:"deleted"`
	ScheduledPurgeDate time.Time `json:"scheduledPurgeDate"`
}

// ID is the vault's ARM resource ID.
func (v *Vault) ID() string {
	return "/subscriptions/" + v.Subscription + "/resourceGroups/" + v.ResourceGroup + "/providers/Microsoft.KeyVault/vaults/" + v.Name
}

// Key is the store key of the vault (its folded name).
func (v *Vault) Key() string { return strings.ToLower(v.Name) }

// Premium reports whether the vault may hold HSM keys.
func (v *Vault) Premium() bool { return v.Properties.SKU == SKUPremium }

// RecoveryLevel is Key Vault's recoveryLevel for the vault's objects.
func (v *Vault) RecoveryLevel() string {
	lvl := "Recoverable"
	if v.Properties.SoftDeleteRetentionInDays < 90 {
		lvl = "CustomizedRecoverable"
	}
	if !v.Properties.EnablePurgeProtection {
		lvl += "+Purgeable"
	}
	return lvl
}

// Config configures the Service.
type Config struct {
	Store  store.Store
	Sealer barrier.Sealer
	// Resources answers whether a resource group exists and which tenant a
	// subscription belongs to (the arm service).
	Resources Resources
	Now       func() time.Time
	Rand      io.Reader
	// MaxVersions bounds the versions of one key (default 500).
	MaxVersions int
}

// Resources is what the vault service needs of ARM.
type Resources interface {
	ResourceGroupExists(ctx context.Context, sub, name string) error
	CheckLocation(l string) (string, error)
}

// Service manages vaults and keys.
type Service struct {
	st    store.Store
	seal  barrier.Sealer
	res   Resources
	now   func() time.Time
	rand  io.Reader
	maxV  int
	cache keyCache
	dec   decoded
}

// New builds the service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Sealer == nil || cfg.Resources == nil {
		return nil, errors.New("keyvault: Store, Sealer and Resources are required")
	}
	s := &Service{st: cfg.Store, seal: cfg.Sealer, res: cfg.Resources, now: cfg.Now, rand: cfg.Rand, maxV: cfg.MaxVersions}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if s.maxV <= 0 {
		s.maxV = 500
	}
	s.cache.m = map[string]*cachedKey{}
	return s, nil
}

// vaultNameRE: 3-24 characters, letters, digits and hyphens, starting with
// a letter, ending with a letter or digit (no "--" is checked apart).
var vaultNameRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$`)

// ValidVaultName reports whether name is a valid vault name (Azure's rules).
func ValidVaultName(name string) bool {
	return vaultNameRE.MatchString(name) && !strings.Contains(name, "--")
}

func (s *Service) nowUTC() time.Time { return s.now().UTC().Truncate(time.Second) }

// validateProperties checks what a PUT/PATCH left in p against the
// previous state (nil on create) and the subscription's tenant. Every
// problem is reported at once.
func validateProperties(p *VaultProperties, prev *VaultProperties) error {
	var errs []string
	if !isGUID(p.TenantID) {
		errs = append(errs, "properties.tenantId must be a GUID")
	}
	switch strings.ToLower(p.SKU) {
	case SKUStandard, SKUPremium:
		p.SKU = strings.ToLower(p.SKU)
	default:
		errs = append(errs, fmt.Sprintf("sku.name %q is not one of standard, premium", p.SKU))
	}
	if p.SoftDeleteRetentionInDays == 0 {
		p.SoftDeleteRetentionInDays = 90
	}
	if p.SoftDeleteRetentionInDays < 7 || p.SoftDeleteRetentionInDays > 90 {
		errs = append(errs, "softDeleteRetentionInDays must be between 7 and 90")
	}
	if prev != nil && prev.EnablePurgeProtection && !p.EnablePurgeProtection {
		errs = append(errs, `the property "enablePurgeProtection" cannot be set to false; enabling purge protection for a vault is an irreversible action`)
	}
	if len(p.AccessPolicies) > 1024 {
		errs = append(errs, "a vault holds at most 1024 access policies")
	}
	for i, ap := range p.AccessPolicies {
		if !strings.EqualFold(ap.TenantID, p.TenantID) {
			errs = append(errs, fmt.Sprintf("accessPolicies[%d].tenantId must be the vault's tenant", i))
		}
		if !isGUID(ap.ObjectID) {
			errs = append(errs, fmt.Sprintf("accessPolicies[%d].objectId must be a GUID", i))
		}
		if ap.ApplicationID != "" && !isGUID(ap.ApplicationID) {
			errs = append(errs, fmt.Sprintf("accessPolicies[%d].applicationId must be a GUID", i))
		}
		for _, perm := range ap.Permissions.Keys {
			if !validKeyPermission(perm) {
				errs = append(errs, fmt.Sprintf("accessPolicies[%d].permissions.keys: %q is not a key permission", i, perm))
			}
		}
	}
	if p.PublicNetworkAccess == "" {
		p.PublicNetworkAccess = "Enabled"
	}
	if len(errs) > 0 {
		return errf(ErrInvalidVault, "%s.", strings.Join(errs, "; "))
	}
	return nil
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func isGUID(s string) bool { return guidRE.MatchString(s) }

// PutVault creates or replaces a vault (ARM PUT). tenant is the tenant of
// v.Subscription: a vault trusts only its subscription's tenant. created
// reports a create.
func (s *Service) PutVault(ctx context.Context, v Vault, tenant string) (_ Vault, created bool, err error) {
	if !ValidVaultName(v.Name) {
		return Vault{}, false, errf(ErrInvalidName, "The vault name '%s' is invalid. A vault's name must be between 3-24 alphanumeric characters. The name must begin with a letter, end with a letter or digit, and not contain consecutive hyphens.", v.Name)
	}
	if err := s.res.ResourceGroupExists(ctx, v.Subscription, v.ResourceGroup); err != nil {
		return Vault{}, false, err
	}
	loc, err := s.res.CheckLocation(v.Location)
	if err != nil {
		return Vault{}, false, err
	}
	v.Location = loc
	if v.Properties.TenantID != "" && !strings.EqualFold(v.Properties.TenantID, tenant) {
		return Vault{}, false, errf(ErrInvalidVault, "The tenant '%s' in properties.tenantId is not the tenant of subscription '%s'.", v.Properties.TenantID, v.Subscription)
	}
	err = s.st.Update(ctx, func(tx store.Tx) error {
		created = false
		var prev *Vault
		var ver int64 = store.Absent
		rec, err := tx.Get(ctx, KindVault, v.Key())
		switch {
		case err == nil:
			prev = new(Vault)
			if err := json.Unmarshal(rec.Value, prev); err != nil {
				return fmt.Errorf("vault %s: %w", v.Name, err)
			}
			ver = rec.Version
			if prev.Deleted != nil {
				return errf(ErrVaultDeleted, "A vault with the name '%s' already exists in deleted state. You need to either recover or purge the existing key vault.", prev.Name)
			}
			if !strings.EqualFold(prev.Subscription, v.Subscription) || !strings.EqualFold(prev.ResourceGroup, v.ResourceGroup) {
				return errf(ErrVaultNameTaken, "The vault name '%s' is already in use. Vault names are globally unique so it is possible that the name is already taken.", v.Name)
			}
		case errors.Is(err, store.ErrNotFound):
			created = true
		default:
			return err
		}
		out := v
		if prev != nil {
			out.Name, out.ResourceGroup, out.Subscription, out.Created = prev.Name, prev.ResourceGroup, prev.Subscription, prev.Created
			if v.Properties.AccessPolicies == nil {
				out.Properties.AccessPolicies = prev.Properties.AccessPolicies
			}
			if !strings.EqualFold(prev.Location, out.Location) {
				return errf(ErrInvalidVault, "The location of vault '%s' cannot change from '%s'.", prev.Name, prev.Location)
			}
			if err := validateProperties(&out.Properties, &prev.Properties); err != nil {
				return err
			}
		} else {
			out.Created = s.nowUTC()
			if err := validateProperties(&out.Properties, nil); err != nil {
				return err
			}
		}
		if out.Properties.AccessPolicies == nil {
			out.Properties.AccessPolicies = []authz.AccessPolicy{}
		}
		out.Updated = s.nowUTC()
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		if _, err := tx.Put(ctx, KindVault, out.Key(), b, ver); err != nil {
			return err
		}
		v = out
		return nil
	})
	if err != nil {
		return Vault{}, false, err
	}
	return v, created, nil
}

func (s *Service) getVault(ctx context.Context, r store.Reader, name string) (*Vault, int64, error) {
	rec, err := r.Get(ctx, KindVault, strings.ToLower(name))
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, errf(ErrVaultNotFound, "The vault '%s' was not found.", name)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("vault %s: %w", name, err)
	}
	v := new(Vault)
	if err := json.Unmarshal(rec.Value, v); err != nil {
		return nil, 0, fmt.Errorf("vault %s: %w", name, err)
	}
	return v, rec.Version, nil
}

// VaultByName returns an active (not deleted) vault by its global name.
func (s *Service) VaultByName(ctx context.Context, name string) (*Vault, error) {
	v, _, err := s.getVault(ctx, s.st, name)
	if err != nil {
		return nil, err
	}
	if v.Deleted != nil {
		return nil, errf(ErrVaultNotFound, "The vault '%s' was not found.", name)
	}
	return v, nil
}

// Vault returns an active vault of a resource group.
func (s *Service) Vault(ctx context.Context, sub, rg, name string) (*Vault, error) {
	v, err := s.VaultByName(ctx, name)
	if err != nil {
		return nil, err
	}
	if !strings.EqualFold(v.Subscription, sub) || !strings.EqualFold(v.ResourceGroup, rg) {
		return nil, errf(ErrVaultNotFound, "The vault '%s' was not found in resource group '%s'.", name, rg)
	}
	return v, nil
}

// VaultTenant returns the tenant of an active vault, for Key Vault's 401
// challenge (server.Config.VaultTenant).
func (s *Service) VaultTenant(ctx context.Context, name string) (string, error) {
	v, err := s.VaultByName(ctx, name)
	if err != nil {
		return "", err
	}
	return v.Properties.TenantID, nil
}

// Vaults lists the active vaults of a subscription, or of one resource
// group when rg is not "". Vault names are global, so this scans every
// vault record; a deployment holds far fewer vaults than keys.
func (s *Service) Vaults(ctx context.Context, sub, rg string) ([]Vault, error) {
	return s.listVaults(ctx, func(v *Vault) bool {
		return v.Deleted == nil && strings.EqualFold(v.Subscription, sub) && (rg == "" || strings.EqualFold(v.ResourceGroup, rg))
	})
}

// DeletedVaults lists a subscription's soft-deleted vaults.
func (s *Service) DeletedVaults(ctx context.Context, sub string) ([]Vault, error) {
	return s.listVaults(ctx, func(v *Vault) bool { return v.Deleted != nil && strings.EqualFold(v.Subscription, sub) })
}

func (s *Service) listVaults(ctx context.Context, keep func(*Vault) bool) ([]Vault, error) {
	recs, err := s.st.List(ctx, KindVault, "", "", 0)
	if err != nil {
		return nil, fmt.Errorf("list vaults: %w", err)
	}
	out := []Vault{}
	for _, rec := range recs {
		var v Vault
		if err := json.Unmarshal(rec.Value, &v); err != nil {
			return nil, fmt.Errorf("vault %s: %w", rec.Key, err)
		}
		if keep(&v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// DeletedVault returns a soft-deleted vault of a subscription at location.
func (s *Service) DeletedVault(ctx context.Context, sub, location, name string) (*Vault, error) {
	v, _, err := s.getVault(ctx, s.st, name)
	if err == nil && (v.Deleted == nil || !strings.EqualFold(v.Subscription, sub) || normLoc(v.Location) != normLoc(location)) {
		err = errf(ErrVaultNotFound, "The deleted vault '%s' was not found.", name)
	}
	if errors.Is(err, ErrVaultNotFound) {
		return nil, errf(ErrVaultNotFound, "The deleted vault '%s' was not found.", name)
	}
	return v, err
}

func normLoc(l string) string { return strings.ToLower(strings.ReplaceAll(l, " ", "")) }

// DeleteVault soft-deletes a vault: its keys stay, unusable, until the
// vault is recovered or purged. Deleting a missing vault is ErrVaultNotFound.
func (s *Service) DeleteVault(ctx context.Context, sub, rg, name string) error {
	return s.st.Update(ctx, func(tx store.Tx) error {
		v, ver, err := s.getVault(ctx, tx, name)
		if err != nil {
			return err
		}
		if v.Deleted != nil || !strings.EqualFold(v.Subscription, sub) || !strings.EqualFold(v.ResourceGroup, rg) {
			return errf(ErrVaultNotFound, "The vault '%s' was not found.", name)
		}
		now := s.nowUTC()
		v.Deleted = &Deletion{Deleted: now, ScheduledPurgeDate: now.AddDate(0, 0, v.Properties.SoftDeleteRetentionInDays)}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		_, err = tx.Put(ctx, KindVault, v.Key(), b, ver)
		return err
	})
}

// RecoverVault brings a soft-deleted vault back (ARM PUT with
// createMode=recover).
func (s *Service) RecoverVault(ctx context.Context, sub, rg, name string) (*Vault, error) {
	var out *Vault
	err := s.st.Update(ctx, func(tx store.Tx) error {
		v, ver, err := s.getVault(ctx, tx, name)
		if err != nil {
			return err
		}
		if v.Deleted == nil || !strings.EqualFold(v.Subscription, sub) || !strings.EqualFold(v.ResourceGroup, rg) {
			return errf(ErrVaultNotFound, "The deleted vault '%s' was not found.", name)
		}
		v.Deleted = nil
		v.Updated = s.nowUTC()
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err = tx.Put(ctx, KindVault, v.Key(), b, ver); err != nil {
			return err
		}
		out = v
		return nil
	})
	return out, err
}

// PurgeVault deletes a soft-deleted vault and all its keys for good,
// unless purge protection holds it until its scheduled purge date.
func (s *Service) PurgeVault(ctx context.Context, sub, location, name string) error {
	if _, err := s.DeletedVault(ctx, sub, location, name); err != nil {
		return err
	}
	err := s.st.Update(ctx, func(tx store.Tx) error {
		v, _, err := s.getVault(ctx, tx, name)
		if err != nil {
			return err
		}
		if v.Deleted == nil {
			return errf(ErrVaultNotFound, "The deleted vault '%s' was not found.", name)
		}
		if v.Properties.EnablePurgeProtection && s.now().Before(v.Deleted.ScheduledPurgeDate) {
			return errf(ErrPurgeProtected, "The vault '%s' has purge protection enabled and cannot be purged before %s.", v.Name, v.Deleted.ScheduledPurgeDate.Format(time.RFC3339))
		}
		return s.purgeVaultTx(ctx, tx, v)
	})
	if err == nil {
		s.cache.dropPrefix(strings.ToLower(name) + "/")
	}
	return err
}

func (s *Service) purgeVaultTx(ctx context.Context, tx store.Tx, v *Vault) error {
	for _, kind := range []string{KindKey, KindKeyVersion} {
		recs, err := tx.List(ctx, kind, v.Key()+"/", "", 0)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if err := tx.Delete(ctx, kind, rec.Key, store.Any); err != nil {
				return err
			}
		}
	}
	return tx.Delete(ctx, KindVault, v.Key(), store.Any)
}

// DeleteResourceGroupContents soft-deletes the vaults of a resource group
// (arm.GroupDeleter), as Azure does when their group goes.
func (s *Service) DeleteResourceGroupContents(ctx context.Context, sub, rg string) error {
	vs, err := s.Vaults(ctx, sub, rg)
	if err != nil {
		return err
	}
	for _, v := range vs {
		if err := s.DeleteVault(ctx, sub, rg, v.Name); err != nil && !errors.Is(err, ErrVaultNotFound) {
			return fmt.Errorf("delete vault %s: %w", v.Name, err)
		}
	}
	return nil
}

// keyCache keeps parsed private keys of versions by their store key; a
// version's material never changes and version ids are never reused, so
// entries never go stale. It is bounded and drops arbitrary entries.
type keyCache struct {
	mu sync.Mutex
	m  map[string]*cachedKey
}

const keyCacheMax = 4096

// VaultPage is Vaults a page at a time, for ARM's $top and nextLink: up
// to limit active vaults whose store key follows after ("" = from the
// start); next is where the following page starts ("" at the end).
func (s *Service) VaultPage(ctx context.Context, sub, rg, after string, limit int) (_ []Vault, next string, _ error) {
	if limit <= 0 {
		limit = 1000
	}
	out := []Vault{}
	for {
		recs, err := s.st.List(ctx, KindVault, "", after, limit)
		if err != nil {
			return nil, "", fmt.Errorf("list vaults: %w", err)
		}
		for _, rec := range recs {
			var v Vault
			if err := json.Unmarshal(rec.Value, &v); err != nil {
				return nil, "", fmt.Errorf("vault %s: %w", rec.Key, err)
			}
			if v.Deleted == nil && strings.EqualFold(v.Subscription, sub) && (rg == "" || strings.EqualFold(v.ResourceGroup, rg)) {
				out = append(out, v)
				if len(out) == limit {
					return out, rec.Key, nil
				}
			}
		}
		if len(recs) < limit {
			return out, "", nil
		}
		after = recs[len(recs)-1].Key
	}
}

// CheckVaultName answers ARM's checkNameAvailability: nil when name is a
// valid vault name nobody holds; ErrInvalidName, or ErrVaultNameTaken
// (also for a soft-deleted vault, which keeps its name until purged).
func (s *Service) CheckVaultName(ctx context.Context, name string) error {
	if !ValidVaultName(name) {
		return errf(ErrInvalidName, "Vault name must be between 3-24 alphanumeric characters. The name must begin with a letter, end with a letter or digit, and not contain consecutive hyphens.")
	}
	v, _, err := s.getVault(ctx, s.st, name)
	switch {
	case errors.Is(err, ErrVaultNotFound):
		return nil
	case err != nil:
		return err
	case v.Deleted != nil:
		return errf(ErrVaultNameTaken, "The vault name '%s' is already in use by a deleted vault. It can be used again once the deleted vault is purged.", name)
	}
	return errf(ErrVaultNameTaken, "The vault name '%s' is already in use. Vault names are globally unique so it is possible that the name is already taken. If you are sure that the vault name was not taken then it is possible that a vault with the same name was recently deleted but not purged after being placed in a recoverable state.", name)
}

// PurgeDue purges, at the service clock's now, every soft-deleted vault
// (with its keys) and every soft-deleted key whose scheduled purge date
// has passed, as Key Vault does after the retention period. Purge
// protection only forbids purging earlier, so it does not hold these.
// It returns how many vaults and keys it purged; several servers running
// it at once is safe (each purge re-reads its record in its transaction).
func (s *Service) PurgeDue(ctx context.Context) (vaults, keys int, err error) {
	now := s.now()
	var errs []error
	recs, err := s.st.List(ctx, KindVault, "", "", 0)
	if err != nil {
		return 0, 0, fmt.Errorf("purge scan: %w", err)
	}
	for _, rec := range recs {
		var v Vault
		if json.Unmarshal(rec.Value, &v) != nil || v.Deleted == nil || now.Before(v.Deleted.ScheduledPurgeDate) {
			continue
		}
		purged := false
		err := s.st.Update(ctx, func(tx store.Tx) error {
			purged = false
			cur, _, err := s.getVault(ctx, tx, v.Name)
			if errors.Is(err, ErrVaultNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			if cur.Deleted == nil || now.Before(cur.Deleted.ScheduledPurgeDate) {
				return nil // recovered (or re-deleted) meanwhile
			}
			purged = true
			return s.purgeVaultTx(ctx, tx, cur)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("purge vault %s: %w", v.Name, err))
			continue
		}
		if purged {
			s.cache.dropPrefix(rec.Key + "/")
			vaults++
		}
	}
	krecs, err := s.st.List(ctx, KindKey, "", "", 0)
	if err != nil {
		return vaults, keys, errors.Join(append(errs, fmt.Errorf("purge scan: %w", err))...)
	}
	for _, rec := range krecs {
		var kr keyRecord
		if json.Unmarshal(rec.Value, &kr) != nil || kr.Deleted == nil || now.Before(kr.Deleted.ScheduledPurgeDate) {
			continue
		}
		purged := false
		err := s.st.Update(ctx, func(tx store.Tx) error {
			purged = false
			cur, _, err := getKeyRecord(ctx, tx, rec.Key)
			if errors.Is(err, ErrKeyNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			if cur.Deleted == nil || now.Before(cur.Deleted.ScheduledPurgeDate) {
				return nil
			}
			purged = true
			return purgeKeyTx(ctx, tx, rec.Key)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("purge key %s: %w", rec.Key, err))
			continue
		}
		if purged {
			s.cache.dropPrefix(rec.Key + "/")
			keys++
		}
	}
	return vaults, keys, errors.Join(errs...)
}
