package keyvault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/cvault/cvault/internal/arm"
	"github.com/cvault/cvault/internal/jwk"
	"github.com/cvault/cvault/internal/store"
)

// ErrKeyExists is a restore onto a key name the vault already holds.
var ErrKeyExists = errors.New("keyvault: key already exists")

// backupAAD binds backup blobs to their purpose: a blob sealed under the
// deployment's root key for anything else does not open as a backup.
const backupAAD = "kv.backup/v1"

// backupBlob is the plaintext of a key backup. It is only ever held in
// memory: BackupKey seals it whole under the root key (AES-256-GCM through
// the barrier), so the blob is authenticated and carries no private
// material in clear, and only a vault of the same deployment opens it.
type backupBlob struct {
	Subscription   string          `json:"subscription"`
	Tenant         string          `json:"tenant"`
	Geography      string          `json:"geography"`
	Name           string          `json:"name"`
	Current        string          `json:"current"`
	RotationPolicy *RotationPolicy `json:"rotationPolicy,omitempty"`
	Versions       []backupVersion `json:"versions"`
}

type backupVersion struct {
	Version *Version `json:"version"` // Vault and Sealed cleared
	Private []byte   `json:"private"` // jwk.PrivateKey.Marshal output
}

// BackupKey returns a backup of a live key: every version with its
// private material, sealed under the root key. Only RestoreKey of this
// deployment opens it, into a vault of the same subscription (and so
// tenant) and the same Azure geography, as Key Vault restricts restores.
func (s *Service) BackupKey(ctx context.Context, vault *Vault, name string) ([]byte, error) {
	var b backupBlob
	defer func() {
		for _, v := range b.Versions {
			clear(v.Private)
		}
	}()
	err := s.st.View(ctx, func(r store.Reader) error {
		for _, v := range b.Versions {
			clear(v.Private)
		}
		kr, _, _, err := resolve(ctx, r, vault, name, "")
		if err != nil {
			return err
		}
		b = backupBlob{Subscription: strings.ToLower(vault.Subscription), Tenant: strings.ToLower(vault.Properties.TenantID),
			Geography: Geography(vault.Location), Name: kr.Name, Current: kr.Current, RotationPolicy: kr.RotationPolicy}
		recs, err := r.List(ctx, KindKeyVersion, keyKey(vault, name)+"/", "", 0)
		if err != nil {
			return fmt.Errorf("backup %s: %w", name, err)
		}
		for _, rec := range recs {
			v := new(Version)
			if err := json.Unmarshal(rec.Value, v); err != nil {
				return fmt.Errorf("key version %s: %w", rec.Key, err)
			}
			raw, err := s.seal.Unseal(v.SealAAD(), v.Sealed)
			if err != nil {
				return fmt.Errorf("unseal key %s/%s: %w", v.Name, v.Version, err)
			}
			v.Vault, v.Sealed = "", nil
			b.Versions = append(b.Versions, backupVersion{Version: v, Private: raw})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	plain, err := json.Marshal(&b)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", name, err)
	}
	defer clear(plain)
	sealed, err := s.seal.Seal(backupAAD, plain)
	if err != nil {
		return nil, fmt.Errorf("backup %s: seal: %w", name, err)
	}
	return sealed, nil
}

var versionIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// RestoreKey restores a backup made by BackupKey into vault under the
// backed-up key's name, with all its versions (same version ids), and
// returns the current version. A blob that does not open (tampered, or
// from another deployment) or comes from another subscription, tenant or
// geography is ErrBadParameter; a name the vault already holds, live or
// deleted, is ErrKeyExists.
func (s *Service) RestoreKey(ctx context.Context, vault *Vault, blob []byte) (*Version, error) {
	plain, err := s.seal.Unseal(backupAAD, blob)
	if err != nil {
		return nil, errf(ErrBadParameter, "The backup blob is invalid: it is corrupted or was not made by this service.")
	}
	defer clear(plain)
	var b backupBlob
	if err := json.Unmarshal(plain, &b); err != nil {
		return nil, errf(ErrBadParameter, "The backup blob is invalid: it cannot be read.")
	}
	defer func() {
		for _, v := range b.Versions {
			clear(v.Private)
		}
	}()
	if !strings.EqualFold(b.Subscription, vault.Subscription) || !strings.EqualFold(b.Tenant, vault.Properties.TenantID) ||
		b.Geography != Geography(vault.Location) {
		return nil, errf(ErrBadParameter, "A key backup can only be restored into a key vault of the same subscription and the same Azure geography as the vault it was taken from.")
	}
	if err := b.check(vault, s.maxV); err != nil {
		return nil, err
	}
	kk := keyKey(vault, b.Name)
	var out *Version
	err = s.st.Update(ctx, func(tx store.Tx) error {
		out = nil
		kr, _, err := getKeyRecord(ctx, tx, kk)
		switch {
		case err == nil && kr.Deleted != nil:
			return errf(ErrKeyDeleted, "Key %s is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged.", kr.Name)
		case err == nil:
			return errf(ErrKeyExists, "There is already a key with the name '%s' in this key vault; a backup cannot be restored over it.", kr.Name)
		case !errors.Is(err, ErrKeyNotFound):
			return err
		}
		for _, bv := range b.Versions {
			v := *bv.Version
			v.Vault, v.Name = vault.Key(), b.Name
			if v.Sealed, err = s.seal.Seal(v.SealAAD(), bv.Private); err != nil {
				return fmt.Errorf("seal: %w", err)
			}
			raw, err := json.Marshal(&v)
			if err != nil {
				return err
			}
			if _, err := tx.Put(ctx, KindKeyVersion, v.StoreKey(), raw, store.Absent); err != nil {
				return fmt.Errorf("restore %s/%s: %w", b.Name, v.Version, err)
			}
			if v.Version == b.Current {
				out = &v
			}
		}
		return putKeyRecord(ctx, tx, kk, &keyRecord{Name: b.Name, Current: b.Current, Versions: len(b.Versions),
			RotationPolicy: b.RotationPolicy}, store.Absent)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// check validates a decoded backup against the target vault: the blob is
// authenticated, so this guards the target's own rules (premium for HSM
// keys and release policies) and the blob's internal consistency.
func (b *backupBlob) check(vault *Vault, maxV int) error {
	if checkKeyName(b.Name) != nil || len(b.Versions) == 0 || len(b.Versions) > maxV {
		return errf(ErrBadParameter, "The backup blob is invalid: it holds no usable key.")
	}
	seen := map[string]bool{}
	for _, bv := range b.Versions {
		v := bv.Version
		if v == nil || !versionIDRE.MatchString(v.Version) || seen[v.Version] || v.Public == nil {
			return errf(ErrBadParameter, "The backup blob is invalid: it holds a malformed key version.")
		}
		seen[v.Version] = true
		if err := checkHSM(vault, v.KeyType); err != nil {
			return err
		}
		if v.Attributes.Exportable || v.ReleasePolicy != nil {
			if err := checkRelease(vault, v.KeyType, v.Attributes.Exportable, v.ReleasePolicy, ""); err != nil {
				return err
			}
		}
		if _, err := jwk.ParsePrivateKey(v.KeyType, bv.Private); err != nil {
			return errf(ErrBadParameter, "The backup blob is invalid: it holds a malformed key version.")
		}
	}
	if !seen[b.Current] {
		return errf(ErrBadParameter, "The backup blob is invalid: its current version is missing.")
	}
	return nil
}

// geographies maps Azure regions to their geography (Azure's data
// residency boundary); restores stay inside one, as Key Vault's do.
// Regions not listed (operator-configured names) are each their own.
var geographies = map[string]string{
	"eastus": "us", "eastus2": "us", "westus": "us", "westus2": "us", "westus3": "us", "centralus": "us",
	"northcentralus": "us", "southcentralus": "us", "westcentralus": "us",
	"canadacentral": "canada", "canadaeast": "canada", "brazilsouth": "brazil", "brazilsoutheast": "brazil",
	"mexicocentral": "mexico",
	"northeurope":   "europe", "westeurope": "europe", "uksouth": "uk", "ukwest": "uk",
	"francecentral": "france", "francesouth": "france", "germanywestcentral": "germany", "germanynorth": "germany",
	"switzerlandnorth": "switzerland", "switzerlandwest": "switzerland", "norwayeast": "norway", "norwaywest": "norway",
	"swedencentral": "sweden", "swedensouth": "sweden", "italynorth": "italy", "polandcentral": "poland", "spaincentral": "spain",
	"eastasia": "asiapacific", "southeastasia": "asiapacific", "japaneast": "japan", "japanwest": "japan",
	"koreacentral": "korea", "koreasouth": "korea", "australiaeast": "australia", "australiasoutheast": "australia",
	"australiacentral": "australia", "australiacentral2": "australia", "centralindia": "india", "southindia": "india",
	"westindia": "india", "uaenorth": "uae", "uaecentral": "uae", "qatarcentral": "qatar", "israelcentral": "israel",
	"southafricanorth": "southafrica", "southafricawest": "southafrica",
}

// Geography returns the Azure geography of a location.
func Geography(location string) string {
	l := arm.NormalizeLocation(location)
	if g, ok := geographies[l]; ok {
		return g
	}
	return l
}
