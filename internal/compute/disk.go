package compute

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/cvault/cvault/internal/arm"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/compute/diskcrypt"
	"github.com/cvault/cvault/internal/compute/diskdata"
	"github.com/cvault/cvault/internal/store"
)

const gib = 1 << 30

// MaxDiskSizeGB is the largest disk (Azure's 32 TiB managed-disk limit).
const MaxDiskSizeGB = 32767

// GetDisk returns a disk.
func (s *Service) GetDisk(ctx context.Context, id string) (Disk, error) {
	var d Disk
	_, err := getJSON(ctx, s.cfg.Store, KindDisk, resKey(id), &d)
	return d, err
}

// ListDisks lists a subscription's (or group's) disks.
func (s *Service) ListDisks(ctx context.Context, sub, rg string) ([]Disk, error) {
	return listJSON[Disk](ctx, s.cfg.Store, KindDisk, scopePrefix(sub, rg))
}

// desFor loads the DES a disk names and checks it fits the disk.
func (s *Service) desFor(ctx context.Context, d *Disk) (*DiskEncryptionSet, error) {
	desID := diskDESID(d)
	if desID == "" {
		return nil, nil
	}
	des, err := s.GetDES(ctx, desID)
	if errors.Is(err, ErrNotFound) {
		return nil, badRequest("InvalidParameter", "The disk encryption set '%s' was not found.", desID)
	}
	if err != nil {
		return nil, err
	}
	if arm.NormalizeLocation(des.Location) != arm.NormalizeLocation(d.Location) {
		return nil, badRequest("InvalidParameter", "The disk encryption set %s is in '%s' but the disk is in '%s': disks, disk encryption sets and their key vault must be in the same region.", des.Name, des.Location, d.Location)
	}
	drid, _ := azure.ParseResourceID(d.ID)
	erid, _ := azure.ParseResourceID(des.ID)
	if !strings.EqualFold(drid.Subscription, erid.Subscription) {
		return nil, badRequest("InvalidParameter", "The disk encryption set must be in the disk's subscription.")
	}
	return &des, nil
}

// checkDiskEncryption validates a new disk's encryption and security profile.
func (s *Service) checkDiskEncryption(ctx context.Context, d *Disk) (*DiskEncryptionSet, error) {
	p := &d.Properties
	if p.Encryption == nil {
		p.Encryption = &Encryption{}
	}
	e := p.Encryption
	if e.Type == "" {
		e.Type = EncryptionAtRestWithPlatformKey
		if e.DiskEncryptionSetID != "" {
			e.Type = EncryptionAtRestWithCustomerKey
		}
	}
	switch e.Type {
	case EncryptionAtRestWithPlatformKey:
		if e.DiskEncryptionSetID != "" {
			return nil, badRequest("InvalidParameter", "diskEncryptionSetId cannot be given with encryption type %s.", e.Type)
		}
	case EncryptionAtRestWithCustomerKey, EncryptionAtRestWithPlatformAndCustomerKeys:
		if e.DiskEncryptionSetID == "" {
			return nil, badRequest("InvalidParameter", "Encryption type %s needs encryption.diskEncryptionSetId.", e.Type)
		}
	default:
		return nil, badRequest("InvalidParameter", "The value '%s' of encryption.type is not valid.", e.Type)
	}
	if sp := p.SecurityProfile; sp != nil && sp.SecurityType != "" {
		switch sp.SecurityType {
		case SecurityTrustedLaunch:
		case SecurityCVMGuestStateOnlyPlatformKey, SecurityCVMDiskPlatformKey, SecurityCVMNonPersistedTPM, SecurityCVMDiskCustomerKey:
			if p.OSType == "" {
				return nil, badRequest("InvalidParameter", "Security type %s applies to OS disks only: osType is required.", sp.SecurityType)
			}
			if sp.SecurityType == SecurityCVMDiskCustomerKey {
				if sp.SecureVMDiskEncryptionSetID == "" {
					return nil, badRequest("InvalidParameter", "Security type %s needs securityProfile.secureVMDiskEncryptionSetId.", sp.SecurityType)
				}
				if e.DiskEncryptionSetID != "" {
					return nil, badRequest("InvalidParameter", "A %s disk takes its key from secureVMDiskEncryptionSetId, not encryption.diskEncryptionSetId.", sp.SecurityType)
				}
			} else if sp.SecureVMDiskEncryptionSetID != "" {
				return nil, badRequest("InvalidParameter", "secureVMDiskEncryptionSetId is only valid with security type %s.", SecurityCVMDiskCustomerKey)
			}
		default:
			return nil, badRequest("InvalidParameter", "The value '%s' of securityProfile.securityType is not valid.", sp.SecurityType)
		}
	}
	des, err := s.desFor(ctx, d)
	if err != nil || des == nil {
		return des, err
	}
	cvmDisk := p.SecurityProfile != nil && p.SecurityProfile.SecurityType == SecurityCVMDiskCustomerKey
	switch {
	case cvmDisk && des.Properties.EncryptionType != ConfidentialVMEncryptedWithCustomerKey:
		return nil, badRequest("InvalidParameter", "secureVMDiskEncryptionSetId must name a disk encryption set of type %s.", ConfidentialVMEncryptedWithCustomerKey)
	case !cvmDisk && des.Properties.EncryptionType != e.Type:
		return nil, badRequest("InvalidParameter", "The disk's encryption type %s does not match the disk encryption set's %s.", e.Type, des.Properties.EncryptionType)
	}
	if cvmDisk {
		ref, ok := parseKeyURL(des.Properties.ActiveKey.KeyURL)
		if !ok {
			return nil, fmt.Errorf("compute: stored DES %s has a bad key URL", des.ID)
		}
		if kerr := s.checkOrchestrator(ctx, ref); kerr != nil {
			return nil, kerr
		}
	}
	if des.Properties.FederatedClientID != "" && d.SKU != nil && (strings.EqualFold(d.SKU.Name, "UltraSSD_LRS") || strings.EqualFold(d.SKU.Name, "PremiumV2_LRS")) {
		return nil, badRequest("InvalidParameter", "Ultra disks and Premium SSD v2 disks do not support cross-tenant customer-managed keys (federatedClientId).")
	}
	return des, nil
}

// PutDisk creates a disk, or updates tags and size of an existing one. A new
// disk gets its own random data key, wrapped by its DES's key through the
// vault (and by the platform key); a failure to reach the key is a
// *KeyError and nothing is stored.
func (s *Service) PutDisk(ctx context.Context, id azure.ResourceID, in Disk) (Disk, bool, error) {
	old, err := s.GetDisk(ctx, id.String())
	if err == nil {
		return s.updateDisk(ctx, old, in.Tags, in.Properties.DiskSizeGB, in.Properties.Encryption)
	}
	if !errors.Is(err, ErrNotFound) {
		return Disk{}, false, err
	}
	d, err := s.createDisk(ctx, id, in)
	return d, err == nil, err
}

func (s *Service) createDisk(ctx context.Context, id azure.ResourceID, in Disk) (Disk, error) {
	loc, err := s.cfg.ARM.CheckLocation(in.Location)
	if err != nil {
		return Disk{}, badRequest("LocationNotAvailableForResourceType", "The provided location '%s' is not available for resource type '%s'.", in.Location, TypeDisk)
	}
	if err := s.cfg.ARM.ResourceGroupExists(ctx, id.Subscription, id.ResourceGroup); err != nil {
		return Disk{}, azure.Errorf(http.StatusNotFound, "ResourceGroupNotFound", "Resource group '%s' could not be found.", id.ResourceGroup)
	}
	d := Disk{ID: id.String(), Name: id.Name(), Type: TypeDisk, Location: loc, Tags: in.Tags, SKU: in.SKU, Zones: in.Zones, Properties: in.Properties}
	if d.SKU == nil {
		d.SKU = &DiskSKU{Name: "Standard_LRS"}
	}
	p := &d.Properties
	var size int64
	switch strings.ToLower(p.CreationData.CreateOption) {
	case "empty", "fromimage":
		if p.DiskSizeGB == nil {
			if strings.EqualFold(p.CreationData.CreateOption, "Empty") {
				return Disk{}, badRequest("InvalidParameter", "diskSizeGB is required for createOption Empty.")
			}
			v := int32(30)
			p.DiskSizeGB = &v
		}
		if *p.DiskSizeGB < 1 || *p.DiskSizeGB > MaxDiskSizeGB {
			return Disk{}, badRequest("InvalidParameter", "diskSizeGB must be between 1 and %d.", MaxDiskSizeGB)
		}
		size = int64(*p.DiskSizeGB) * gib
		p.DiskState = DiskUnattached
	case "upload":
		size = p.CreationData.UploadSizeBytes
		if size <= 0 || size%diskdata.PageSize != 0 || size > MaxDiskSizeGB*gib {
			return Disk{}, badRequest("InvalidParameter", "creationData.uploadSizeBytes must be a positive multiple of 512 up to 32 TiB.")
		}
		gb := int32((size + gib - 1) / gib)
		p.DiskSizeGB = &gb
		p.DiskState = DiskReadyToUpload
	default:
		return Disk{}, badRequest("InvalidParameter", "createOption '%s' is not supported; use Empty, Upload or FromImage.", p.CreationData.CreateOption)
	}
	des, err := s.checkDiskEncryption(ctx, &d)
	if err != nil {
		return Disk{}, err
	}
	uid, err := s.newGUID()
	if err != nil {
		return Disk{}, err
	}
	p.UniqueID, p.DiskSizeBytes = uid, size
	now := s.now()
	p.TimeCreated, p.ProvisioningState = &now, StateSucceeded
	w, err := s.diskWrapper(ctx, &d, des)
	if err != nil {
		return Disk{}, err
	}
	create := s.cfg.DiskData.Create
	if _, ok := w.(guestOnly); ok {
		create = s.cfg.DiskData.CreateGuestKeyed // the signed URL serves its ciphertext
	}
	if err := create(ctx, uid, size, w); err != nil {
		return Disk{}, rewrapErr(err)
	}
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		if err := putJSON(ctx, tx, KindDisk, resKey(d.ID), d, store.Absent); err != nil {
			return err
		}
		return putJSON(ctx, tx, KindDiskData, uid, resKey(d.ID), store.Absent)
	})
	if err != nil {
		_ = s.cfg.DiskData.Delete(context.WithoutCancel(ctx), uid)
		return Disk{}, err
	}
	return d, nil
}

func (s *Service) updateDisk(ctx context.Context, old Disk, tags map[string]string, sizeGB *int32, enc *Encryption) (Disk, bool, error) {
	if enc != nil && (enc.Type != "" && enc.Type != old.Properties.Encryption.Type ||
		enc.DiskEncryptionSetID != "" && !strings.EqualFold(enc.DiskEncryptionSetID, old.Properties.Encryption.DiskEncryptionSetID)) {
		return Disk{}, false, badRequest("PropertyChangeNotAllowed", "Changing a disk's encryption is not supported by cvault.")
	}
	if sizeGB != nil && old.Properties.DiskSizeGB != nil && *sizeGB != *old.Properties.DiskSizeGB {
		return Disk{}, false, badRequest("PropertyChangeNotAllowed", "Changing property 'diskSizeGB' is not supported by cvault.")
	}
	var out Disk
	err := s.updateDiskRecord(ctx, old.ID, func(d *Disk) error {
		if tags != nil {
			d.Tags = tags
		}
		out = *d
		return nil
	})
	return out, false, err
}

// PatchDisk applies a disk PATCH.
func (s *Service) PatchDisk(ctx context.Context, id string, u DiskUpdate) (Disk, error) {
	old, err := s.GetDisk(ctx, id)
	if err != nil {
		return Disk{}, err
	}
	var size *int32
	var enc *Encryption
	if u.Properties != nil {
		size, enc = u.Properties.DiskSizeGB, u.Properties.Encryption
	}
	d, _, err := s.updateDisk(ctx, old, u.Tags, size, enc)
	return d, err
}

func (s *Service) updateDiskRecord(ctx context.Context, id string, fn func(*Disk) error) error {
	return s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		var d Disk
		v, err := getJSON(ctx, tx, KindDisk, resKey(id), &d)
		if err != nil {
			return err
		}
		if err := fn(&d); err != nil {
			return err
		}
		return putJSON(ctx, tx, KindDisk, resKey(id), d, v)
	})
}

// DeleteDisk deletes an unattached disk with its data; false when absent.
func (s *Service) DeleteDisk(ctx context.Context, id string) (bool, error) {
	d, err := s.GetDisk(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if d.ManagedBy != "" {
		return false, conflict("OperationNotAllowed", "Disk %s is attached to VM %s.", d.Name, d.ManagedBy)
	}
	return true, s.deleteDiskData(ctx, d)
}

func (s *Service) deleteDiskData(ctx context.Context, d Disk) error {
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		if err := deleteKey(ctx, tx, KindDisk, resKey(d.ID)); err != nil {
			return err
		}
		return deleteKey(ctx, tx, KindDiskData, d.Properties.UniqueID)
	})
	if err != nil {
		return err
	}
	if err := s.cfg.DiskData.Delete(ctx, d.Properties.UniqueID); err != nil && !errors.Is(err, diskdata.ErrNotFound) {
		return err
	}
	return nil
}

// GrantAccess (beginGetAccess) returns a signed URL for the disk's data.
// Write access is for Upload disks awaiting their data; a disk attached to
// a running VM cannot be exported.
func (s *Service) GrantAccess(ctx context.Context, id, access string, seconds int32) (string, error) {
	d, err := s.GetDisk(ctx, id)
	if err != nil {
		return "", err
	}
	write := false
	switch strings.ToLower(access) {
	case "read":
	case "write":
		write = true
	default:
		return "", badRequest("InvalidParameter", "access must be Read or Write, not '%s'.", access)
	}
	if seconds <= 0 {
		return "", badRequest("InvalidParameter", "durationInSeconds must be positive.")
	}
	if write && d.Properties.DiskState != DiskReadyToUpload && d.Properties.DiskState != DiskActiveUpload {
		return "", conflict("OperationNotAllowed", "Write access is granted only to disks created with createOption Upload that are ReadyToUpload (disk %s is %s).", d.Name, d.Properties.DiskState)
	}
	if d.Properties.DiskState == DiskAttached {
		if err := s.checkVMNotRunning(ctx, d.ManagedBy); err != nil {
			return "", err
		}
	}
	url, err := s.cfg.DiskData.GrantAccess(ctx, d.Properties.UniqueID, time.Duration(seconds)*time.Second, write)
	if err != nil {
		return "", err
	}
	state := DiskActiveSAS
	if write {
		state = DiskActiveUpload
	}
	if err := s.updateDiskRecord(ctx, d.ID, func(d *Disk) error { d.Properties.DiskState = state; return nil }); err != nil {
		return "", err
	}
	return url, nil
}

// RevokeAccess (endGetAccess) voids the disk's signed URLs.
func (s *Service) RevokeAccess(ctx context.Context, id string) error {
	d, err := s.GetDisk(ctx, id)
	if err != nil {
		return err
	}
	if err := s.cfg.DiskData.RevokeAccess(ctx, d.Properties.UniqueID); err != nil {
		return err
	}
	return s.updateDiskRecord(ctx, d.ID, func(d *Disk) error {
		switch {
		case d.ManagedBy != "":
			d.Properties.DiskState = DiskAttached
		default:
			d.Properties.DiskState = DiskUnattached
		}
		return nil
	})
}

// Wrapper implements diskdata.Keyring: the Wrapper that unwraps disk data
// dataID's key under keyID, from the disk's DES (reached over HTTPS).
func (s *Service) Wrapper(ctx context.Context, dataID, keyID string) (diskcrypt.Wrapper, error) {
	platform := s.cfg.DiskData.Platform()
	if keyID == platform.KeyID() {
		return platform, nil
	}
	var key string
	if _, err := getJSON(ctx, s.cfg.Store, KindDiskData, dataID, &key); err != nil {
		return nil, err
	}
	var d Disk
	if _, err := getJSON(ctx, s.cfg.Store, KindDisk, key, &d); err != nil {
		return nil, err
	}
	des, err := s.GetDES(ctx, diskDESID(&d))
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", d.ID, err)
	}
	return s.diskWrapper(ctx, &d, &des)
}
