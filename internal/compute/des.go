package compute

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/cvault/cvault/internal/arm"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/compute/diskcrypt"
	"github.com/cvault/cvault/internal/identity"
	"github.com/cvault/cvault/internal/store"
)

func badRequest(code, format string, args ...any) *azure.Error {
	return azure.Errorf(http.StatusBadRequest, code, format, args...)
}

func conflict(code, format string, args ...any) *azure.Error {
	return azure.Errorf(http.StatusConflict, code, format, args...)
}

// Identity types.
const (
	idNone       = "None"
	idSystem     = "SystemAssigned"
	idUser       = "UserAssigned"
	idSystemUser = "SystemAssigned, UserAssigned"
)

func normIdentityType(t string) (string, bool) {
	switch strings.ToLower(strings.ReplaceAll(t, " ", "")) {
	case "", "none":
		return idNone, true
	case "systemassigned":
		return idSystem, true
	case "userassigned":
		return idUser, true
	case "systemassigned,userassigned":
		return idSystemUser, true
	}
	return "", false
}

// resolveIdentity fills a resource's identity block: the system-assigned
// identity is created (createdSystem tells the caller to delete it if the
// resource is not stored in the end); user-assigned ones must exist.
func (s *Service) resolveIdentity(ctx context.Context, owner string, in *ResourceIdentity) (out *ResourceIdentity, createdSystem bool, err error) {
	if in == nil {
		return nil, false, nil
	}
	t, ok := normIdentityType(in.Type)
	if !ok {
		return nil, false, badRequest("InvalidParameter", "The identity type '%s' is not valid; use SystemAssigned, UserAssigned, 'SystemAssigned, UserAssigned' or None.", in.Type)
	}
	if t == idNone {
		return nil, false, nil
	}
	out = &ResourceIdentity{Type: t}
	if t == idUser || t == idSystemUser {
		if len(in.UserAssignedIdentities) == 0 {
			return nil, false, badRequest("InvalidParameter", "The identity type '%s' needs at least one entry in userAssignedIdentities.", t)
		}
		out.UserAssignedIdentities = map[string]*UserIdentity{}
		for id := range in.UserAssignedIdentities {
			rid, err := azure.ParseResourceID(id)
			if err != nil || !strings.EqualFold(rid.Type(), identity.UserAssignedIdentityType) {
				return nil, false, badRequest("InvalidParameter", "'%s' is not a user-assigned identity resource ID.", id)
			}
			mi, err := s.cfg.Identity.GetUserAssignedIdentity(ctx, rid.Subscription, rid.ResourceGroup, rid.Name())
			if errors.Is(err, identity.ErrNotFound) {
				return nil, false, badRequest("FailedIdentityOperation", "The user-assigned identity '%s' was not found.", id)
			}
			if err != nil {
				return nil, false, err
			}
			out.UserAssignedIdentities[mi.ID] = &UserIdentity{PrincipalID: mi.PrincipalID, ClientID: mi.ClientID}
		}
	} else if len(in.UserAssignedIdentities) > 0 {
		return nil, false, badRequest("InvalidParameter", "userAssignedIdentities may only be given with identity type UserAssigned.")
	}
	if t == idSystem || t == idSystemUser {
		mi, err := s.systemIdentity(ctx, owner)
		if err != nil {
			return nil, false, err
		}
		if mi == nil {
			created, err := s.cfg.Identity.PutSystemAssignedIdentity(ctx, owner)
			if err != nil {
				return nil, false, fmt.Errorf("compute: system-assigned identity: %w", err)
			}
			mi, createdSystem = &created, true
		}
		out.PrincipalID, out.TenantID = mi.PrincipalID, mi.TenantID
	}
	return out, createdSystem, nil
}

// systemIdentity returns owner's existing system-assigned identity or nil.
func (s *Service) systemIdentity(ctx context.Context, owner string) (*identity.UserAssignedIdentity, error) {
	mi, err := s.cfg.Identity.SystemAssignedIdentity(ctx, owner)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &mi, nil
}

// desPrincipal picks the identity a DES reaches its key with: the
// user-assigned identity when there is one (the only kind a federated
// credential accepts), else the system-assigned identity.
func desPrincipal(des *DiskEncryptionSet, tenant string) (keyPrincipal, error) {
	p := keyPrincipal{homeTenant: tenant, federatedClientID: des.Properties.FederatedClientID}
	if des.Identity != nil && len(des.Identity.UserAssignedIdentities) > 0 {
		ids := make([]string, 0, len(des.Identity.UserAssignedIdentities))
		for id := range des.Identity.UserAssignedIdentities {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		p.identityID = ids[0]
		return p, nil
	}
	if des.Identity != nil && des.Identity.PrincipalID != "" {
		p.identityID = des.ID
		return p, nil
	}
	return p, &KeyError{Code: CodeKeyVaultAccessForbidden, Message: fmt.Sprintf("The disk encryption set %s has no managed identity to reach its key with.", des.Name)}
}

func (s *Service) desPrincipal(ctx context.Context, des *DiskEncryptionSet) (keyPrincipal, error) {
	rid, err := azure.ParseResourceID(des.ID)
	if err != nil {
		return keyPrincipal{}, err
	}
	tenant, err := s.cfg.ARM.TenantOfSubscription(ctx, rid.Subscription)
	if err != nil {
		return keyPrincipal{}, err
	}
	return desPrincipal(des, tenant)
}

// checkDESBody validates the properties of a DES to be stored.
func checkDESBody(des *DiskEncryptionSet) (keyRef, error) {
	p := &des.Properties
	switch p.EncryptionType {
	case "":
		p.EncryptionType = EncryptionAtRestWithCustomerKey
	case EncryptionAtRestWithCustomerKey, EncryptionAtRestWithPlatformAndCustomerKeys, ConfidentialVMEncryptedWithCustomerKey:
	default:
		return keyRef{}, badRequest("InvalidParameter", "The value '%s' of encryptionType is not valid; use %s, %s or %s.", p.EncryptionType,
			EncryptionAtRestWithCustomerKey, EncryptionAtRestWithPlatformAndCustomerKeys, ConfidentialVMEncryptedWithCustomerKey)
	}
	if p.ActiveKey == nil || p.ActiveKey.KeyURL == "" {
		return keyRef{}, badRequest("InvalidParameter", "Required parameter 'activeKey.keyUrl' is missing (null).")
	}
	ref, ok := parseKeyURL(p.ActiveKey.KeyURL)
	if !ok {
		return keyRef{}, badRequest("InvalidParameter", "The keyUrl '%s' is not a valid versioned key URL (https://{vault}/keys/{name}/{version}).", p.ActiveKey.KeyURL)
	}
	if strings.EqualFold(p.FederatedClientID, "None") {
		p.FederatedClientID = ""
	}
	if p.FederatedClientID != "" {
		if !azure.IsGUID(p.FederatedClientID) {
			return keyRef{}, badRequest("InvalidParameter", "federatedClientId '%s' must be an application (client) ID.", p.FederatedClientID)
		}
		if des.Identity == nil || len(des.Identity.UserAssignedIdentities) == 0 {
			return keyRef{}, badRequest("InvalidParameter", "federatedClientId needs a user-assigned identity on the disk encryption set: only user-assigned identities can be federated identity credentials.")
		}
	}
	if p.ConfidentialRotation() && p.RotationToLatestKeyVersionEnabled != nil && *p.RotationToLatestKeyVersionEnabled {
		return keyRef{}, badRequest("InvalidParameter", "Automatic key rotation is not supported for disk encryption sets of type %s.", ConfidentialVMEncryptedWithCustomerKey)
	}
	return ref, nil
}

// ConfidentialRotation reports a confidential-VM DES.
func (p DESProperties) ConfidentialRotation() bool {
	return p.EncryptionType == ConfidentialVMEncryptedWithCustomerKey
}

// GetDES returns a DES.
func (s *Service) GetDES(ctx context.Context, id string) (DiskEncryptionSet, error) {
	var des DiskEncryptionSet
	_, err := getJSON(ctx, s.cfg.Store, KindDES, resKey(id), &des)
	return des, err
}

// ListDES lists a subscription's (or group's) DES.
func (s *Service) ListDES(ctx context.Context, sub, rg string) ([]DiskEncryptionSet, error) {
	all, err := listJSON[DiskEncryptionSet](ctx, s.cfg.Store, KindDES, scopePrefix(sub, rg))
	if err != nil {
		return nil, err
	}
	return all, nil
}

// PutDES creates or replaces a DES. On create and whenever the key, its
// identity or the federated app change, the DES proves it can use the key
// (verify): a failure is a *KeyError and nothing is stored.
func (s *Service) PutDES(ctx context.Context, id azure.ResourceID, in DiskEncryptionSet) (DiskEncryptionSet, bool, error) {
	loc, err := s.cfg.ARM.CheckLocation(in.Location)
	if err != nil {
		return DiskEncryptionSet{}, false, badRequest("LocationNotAvailableForResourceType", "The provided location '%s' is not available for resource type '%s'.", in.Location, TypeDES)
	}
	if err := s.cfg.ARM.ResourceGroupExists(ctx, id.Subscription, id.ResourceGroup); err != nil {
		return DiskEncryptionSet{}, false, azure.Errorf(http.StatusNotFound, "ResourceGroupNotFound", "Resource group '%s' could not be found.", id.ResourceGroup)
	}
	old, oldErr := s.GetDES(ctx, id.String())
	if oldErr != nil && !errors.Is(oldErr, ErrNotFound) {
		return DiskEncryptionSet{}, false, oldErr
	}
	exists := oldErr == nil
	des := DiskEncryptionSet{ID: id.String(), Name: id.Name(), Type: TypeDES, Location: loc, Tags: in.Tags, Properties: in.Properties}
	if exists {
		des.ID, des.Name = old.ID, old.Name
		if arm.NormalizeLocation(old.Location) != loc {
			return DiskEncryptionSet{}, false, badRequest("InvalidParameter", "Changing property 'location' is not allowed.")
		}
	}
	return s.storeDES(ctx, des, in.Identity, exists, old)
}

// PatchDES applies a DiskEncryptionSetUpdate.
func (s *Service) PatchDES(ctx context.Context, id azure.ResourceID, u DESUpdate) (DiskEncryptionSet, error) {
	old, err := s.GetDES(ctx, id.String())
	if err != nil {
		return DiskEncryptionSet{}, err
	}
	des := old
	des.Properties.PreviousKeys = nil
	if u.Tags != nil {
		des.Tags = u.Tags
	}
	idIn := old.Identity
	if u.Identity != nil {
		idIn = u.Identity
	}
	if p := u.Properties; p != nil {
		if p.EncryptionType != nil {
			des.Properties.EncryptionType = *p.EncryptionType
		}
		if p.ActiveKey != nil {
			k := *p.ActiveKey
			des.Properties.ActiveKey = &k
		}
		if p.RotationToLatestKeyVersionEnabled != nil {
			des.Properties.RotationToLatestKeyVersionEnabled = p.RotationToLatestKeyVersionEnabled
		}
		if p.FederatedClientID != nil {
			des.Properties.FederatedClientID = *p.FederatedClientID
		}
	}
	out, _, err := s.storeDES(ctx, des, idIn, true, old)
	return out, err
}

func (s *Service) storeDES(ctx context.Context, des DiskEncryptionSet, idIn *ResourceIdentity, exists bool, old DiskEncryptionSet) (DiskEncryptionSet, bool, error) {
	if exists && old.Properties.EncryptionType != "" && des.Properties.EncryptionType != "" && des.Properties.EncryptionType != old.Properties.EncryptionType {
		return DiskEncryptionSet{}, false, badRequest("PropertyChangeNotAllowed", "Changing property 'encryptionType' is not allowed.")
	}
	if exists && des.Properties.EncryptionType == "" {
		des.Properties.EncryptionType = old.Properties.EncryptionType
	}
	// Read-only properties are the server's, whatever the body says.
	// autoKeyRotationError is cleared by any save: the owner has acted on it.
	des.Properties.PreviousKeys, des.Properties.KeyRotation, des.Properties.LastKeyRotationTimestamp = nil, nil, nil
	des.Properties.AutoKeyRotationError = nil
	if exists {
		des.Properties.PreviousKeys = old.Properties.PreviousKeys
		des.Properties.KeyRotation = old.Properties.KeyRotation
		des.Properties.LastKeyRotationTimestamp = old.Properties.LastKeyRotationTimestamp
	}
	keyChanged := !exists || old.Properties.ActiveKey == nil || des.Properties.ActiveKey == nil || old.Properties.ActiveKey.KeyURL != des.Properties.ActiveKey.KeyURL
	// After a partial rotation, saving the old key again moves the disks
	// already on the target back: that is a rotation too.
	if kr := old.Properties.KeyRotation; exists && !keyChanged && kr != nil && kr.State == RotationFailed && des.Properties.ActiveKey != nil && !sameKeyURL(kr.TargetKey.KeyURL, des.Properties.ActiveKey.KeyURL) {
		keyChanged = true
	}
	rotate := exists && keyChanged
	if rotate {
		// Refusals that need no key access come first: nothing is touched.
		if err := s.checkRotationAllowed(ctx, s.cfg.Store, &des, true); err != nil {
			return DiskEncryptionSet{}, false, err
		}
	}
	ident, createdSystem, err := s.resolveIdentity(ctx, des.ID, idIn)
	if err != nil {
		return DiskEncryptionSet{}, false, err
	}
	des.Identity = ident
	cleanup := func() {
		if createdSystem {
			_, _ = s.cfg.Identity.DeleteSystemAssignedIdentity(context.WithoutCancel(ctx), des.ID)
		}
	}
	ref, err := checkDESBody(&des)
	if err != nil {
		cleanup()
		return DiskEncryptionSet{}, false, err
	}
	principalChanged := !exists || old.Properties.FederatedClientID != des.Properties.FederatedClientID || !sameIdentity(old.Identity, des.Identity)
	// A brand-new system-assigned identity cannot have been granted access
	// yet (Azure's flow grants it after the DES exists), so only identities
	// that existed before this request are checked now; disks check later.
	if (keyChanged || principalChanged) && !(createdSystem && (des.Identity == nil || len(des.Identity.UserAssignedIdentities) == 0)) {
		p, err := s.desPrincipal(ctx, &des)
		if err != nil {
			cleanup()
			return DiskEncryptionSet{}, false, err
		}
		if kerr := s.keys.verify(ctx, p, ref, des.Location, des.Properties.ConfidentialRotation(), s.cfg.Rand); kerr != nil {
			cleanup()
			return DiskEncryptionSet{}, false, kerr
		}
	}
	// The Orchestrator is a pre-existing principal: checked on create too.
	if keyChanged && des.Properties.ConfidentialRotation() {
		if kerr := s.checkOrchestrator(ctx, ref); kerr != nil {
			cleanup()
			return DiskEncryptionSet{}, false, kerr
		}
	}
	des.Properties.ProvisioningState = StateSucceeded
	if des.Properties.PreviousKeys == nil {
		des.Properties.PreviousKeys = []KeyForDES{}
	}
	var rot *rotationStart
	if rotate {
		if rot, err = s.prepareRotation(ctx, &des, old); err != nil {
			cleanup()
			return DiskEncryptionSet{}, false, err
		}
	}
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		var cur DiskEncryptionSet
		v, err := getJSON(ctx, tx, KindDES, resKey(des.ID), &cur)
		switch {
		case err == nil && !exists:
			return fmt.Errorf("%w: created concurrently", ErrConflict)
		case errors.Is(err, ErrNotFound):
			if exists {
				return fmt.Errorf("%w: deleted concurrently", ErrConflict)
			}
			v = store.Absent
		case err != nil:
			return err
		}
		if exists && !rotate && cur.Properties.KeyRotation != nil {
			// A rotation's progress, written meanwhile, is kept.
			des.Properties.KeyRotation, des.Properties.PreviousKeys = cur.Properties.KeyRotation, cur.Properties.PreviousKeys
			des.Properties.LastKeyRotationTimestamp = cur.Properties.LastKeyRotationTimestamp
			des.Properties.ActiveKey = cur.Properties.ActiveKey
			if cur.Properties.KeyRotation.State == RotationInProgress {
				des.Properties.ProvisioningState = StateUpdating
			}
		}
		if rot != nil {
			if err := s.putRotation(ctx, tx, &des, rot); err != nil {
				return err
			}
		}
		return putJSON(ctx, tx, KindDES, resKey(des.ID), des, v)
	})
	if err != nil {
		cleanup()
		if rot != nil {
			s.abandonOperation(ctx, rot, err)
		}
		return DiskEncryptionSet{}, false, err
	}
	if exists && old.Identity != nil && old.Identity.PrincipalID != "" && (des.Identity == nil || des.Identity.PrincipalID == "") {
		_, _ = s.cfg.Identity.DeleteSystemAssignedIdentity(ctx, des.ID)
	}
	if rot != nil {
		s.Kick()
	}
	return des, !exists, nil
}

func sameIdentity(a, b *ResourceIdentity) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	if a == nil {
		return true
	}
	if a.Type != b.Type || a.PrincipalID != b.PrincipalID || len(a.UserAssignedIdentities) != len(b.UserAssignedIdentities) {
		return false
	}
	for k := range a.UserAssignedIdentities {
		found := false
		for k2 := range b.UserAssignedIdentities {
			if strings.EqualFold(k, k2) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func rewrapErr(err error) error {
	var ke *KeyError
	if errors.As(err, &ke) {
		return ke
	}
	return err
}

// DeleteDES deletes a DES no disk uses; false when it did not exist.
func (s *Service) DeleteDES(ctx context.Context, id string) (bool, error) {
	des, err := s.GetDES(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	disks, err := s.disksOfDES(ctx, des.ID)
	if err != nil {
		return false, err
	}
	if len(disks) > 0 {
		return false, conflict("OperationNotAllowed", "The disk encryption set %s cannot be deleted: it is in use by %d disk(s), e.g. %s.", des.Name, len(disks), disks[0].ID)
	}
	if err := s.cfg.Store.Update(ctx, func(tx store.Tx) error { return deleteKey(ctx, tx, KindDES, resKey(des.ID)) }); err != nil {
		return false, err
	}
	if des.Identity != nil && des.Identity.PrincipalID != "" {
		if _, err := s.cfg.Identity.DeleteSystemAssignedIdentity(ctx, des.ID); err != nil {
			return true, err
		}
	}
	return true, nil
}

// AssociatedResources lists the IDs of the disks using a DES.
func (s *Service) AssociatedResources(ctx context.Context, id string) ([]string, error) {
	des, err := s.GetDES(ctx, id)
	if err != nil {
		return nil, err
	}
	disks, err := s.disksOfDES(ctx, des.ID)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(disks))
	for i, d := range disks {
		out[i] = d.ID
	}
	return out, nil
}

// disksOfDES lists the disks of the DES's subscription that use it.
func (s *Service) disksOfDES(ctx context.Context, desID string) ([]Disk, error) {
	rid, err := azure.ParseResourceID(desID)
	if err != nil {
		return nil, err
	}
	all, err := listJSON[Disk](ctx, s.cfg.Store, KindDisk, scopePrefix(rid.Subscription, ""))
	if err != nil {
		return nil, err
	}
	var out []Disk
	for _, d := range all {
		if strings.EqualFold(diskDESID(&d), desID) {
			out = append(out, d)
		}
	}
	return out, nil
}

// diskDESID is the DES a disk's data key is wrapped by ("" = platform key).
func diskDESID(d *Disk) string {
	if sp := d.Properties.SecurityProfile; sp != nil && sp.SecureVMDiskEncryptionSetID != "" {
		return sp.SecureVMDiskEncryptionSetID
	}
	if e := d.Properties.Encryption; e != nil {
		return e.DiskEncryptionSetID
	}
	return ""
}

// diskWrapper is the Wrapper of a disk's encryption settings under des
// (nil des: platform key only).
func (s *Service) diskWrapper(ctx context.Context, d *Disk, des *DiskEncryptionSet) (diskcrypt.Wrapper, error) {
	platform := s.cfg.DiskData.Platform()
	if des == nil {
		return platform, nil
	}
	p, err := s.desPrincipal(ctx, des)
	if err != nil {
		return nil, err
	}
	ref, ok := parseKeyURL(des.Properties.ActiveKey.KeyURL)
	if !ok {
		return nil, fmt.Errorf("compute: stored DES %s has a bad key URL", des.ID)
	}
	cw := &customerWrapper{k: s.keys, p: p, ref: ref}
	if sp := d.Properties.SecurityProfile; sp != nil && sp.SecurityType == SecurityCVMDiskCustomerKey {
		return guestOnly{cw}, nil
	}
	if d.Properties.Encryption != nil && d.Properties.Encryption.Type == EncryptionAtRestWithPlatformAndCustomerKeys {
		return diskcrypt.Double(platform, cw), nil
	}
	return cw, nil
}
