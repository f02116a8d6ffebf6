package compute

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/cvault/cvault/internal/arm"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/store"
)

// confidentialSizeRE matches the confidential VM families of seed 002:
// DCasv5/ECasv5 (AMD SEV-SNP, 'a') and DCesv5/ECesv5 (Intel TDX, 'e'),
// with their local-disk 'd' variants and the v6 generation.
var confidentialSizeRE = regexp.MustCompile(`(?i)^Standard_(DC|EC)\d+(a|e)d?s_v[56]$`)

func isConfidentialSize(size string) bool { return confidentialSizeRE.MatchString(size) }

func isTDXSize(size string) bool {
	m := confidentialSizeRE.FindStringSubmatch(size)
	return m != nil && strings.EqualFold(m[2], "e")
}

func isConfidential(vm *VirtualMachine) bool {
	sp := vm.Properties.SecurityProfile
	return sp != nil && strings.EqualFold(sp.SecurityType, "ConfidentialVM")
}

func osEncryptionType(vm *VirtualMachine) string {
	sp := vm.Properties.StorageProfile
	if sp == nil || sp.OSDisk == nil || sp.OSDisk.ManagedDisk == nil || sp.OSDisk.ManagedDisk.SecurityProfile == nil {
		return ""
	}
	return sp.OSDisk.ManagedDisk.SecurityProfile.SecurityEncryptionType
}

func vmSize(vm *VirtualMachine) string {
	if vm.Properties.HardwareProfile == nil {
		return ""
	}
	return vm.Properties.HardwareProfile.VMSize
}

// checkVMRules enforces seed 002's confidential-VM rules on a new VM, or on
// an update against old.
func checkVMRules(vm *VirtualMachine, old *VirtualMachine) error {
	size := vmSize(vm)
	if size == "" {
		return badRequest("InvalidParameter", "Required parameter 'hardwareProfile.vmSize' is missing (null).")
	}
	cvm := isConfidential(vm)
	enc := osEncryptionType(vm)
	if old != nil {
		if cvm != isConfidential(old) {
			return badRequest("PropertyChangeNotAllowed", "Changing property 'securityProfile.securityType' is not allowed: a non-confidential VM cannot be converted to a confidential VM (or back); create a new VM.")
		}
		if enc != osEncryptionType(old) {
			return badRequest("PropertyChangeNotAllowed", "Changing property 'osDisk.managedDisk.securityProfile.securityEncryptionType' is not allowed: confidential disk encryption cannot be enabled or disabled after the VM is created.")
		}
	}
	if cvm {
		if !isConfidentialSize(size) {
			return badRequest("BadRequest", "The VM size '%s' is not supported for creation of VMs and Virtual Machine Scale Set with 'ConfidentialVM' security type; use a DCasv5/ECasv5 or DCesv5/ECesv5 size.", size)
		}
		switch enc {
		case securityEncryptionDiskWithVMGuestState, securityEncryptionVMGuestStateOnly:
		case securityEncryptionNonPersistedTPM:
			if !isTDXSize(size) {
				return badRequest("BadRequest", "Security encryption type 'NonPersistedTPM' is only supported on Intel TDX sizes (DCesv5/ECesv5), not '%s'.", size)
			}
		case "":
			return badRequest("InvalidParameter", "A ConfidentialVM needs storageProfile.osDisk.managedDisk.securityProfile.securityEncryptionType.")
		default:
			return badRequest("InvalidParameter", "The value '%s' of securityEncryptionType is not valid.", enc)
		}
		if u := vm.Properties.SecurityProfile.UefiSettings; enc != securityEncryptionVMGuestStateOnly && (u == nil || u.VTpmEnabled == nil || !*u.VTpmEnabled) {
			return badRequest("InvalidParameter", "A ConfidentialVM needs uefiSettings.vTpmEnabled set to true.")
		}
	} else if enc != "" {
		return badRequest("InvalidParameter", "securityEncryptionType needs securityProfile.securityType ConfidentialVM.")
	}
	if sp := vm.Properties.StorageProfile; sp != nil {
		for _, dd := range sp.DataDisks {
			if dd.ManagedDisk != nil && dd.ManagedDisk.SecurityProfile != nil {
				return badRequest("InvalidParameter", "Confidential disk encryption applies to the OS disk only; data disk at LUN %d has a securityProfile.", dd.Lun)
			}
		}
	}
	return nil
}

// GetVM returns a VM with its instance view when view is set.
func (s *Service) GetVM(ctx context.Context, id string, view bool) (VirtualMachine, error) {
	var rec vmRecord
	if _, err := getJSON(ctx, s.cfg.Store, KindVM, resKey(id), &rec); err != nil {
		return VirtualMachine{}, err
	}
	vm := rec.VM
	if view {
		iv := instanceView(&rec)
		vm.Properties.InstanceView = &iv
	}
	return vm, nil
}

// InstanceView returns a VM's instance view.
func (s *Service) InstanceView(ctx context.Context, id string) (InstanceView, error) {
	var rec vmRecord
	if _, err := getJSON(ctx, s.cfg.Store, KindVM, resKey(id), &rec); err != nil {
		return InstanceView{}, err
	}
	return instanceView(&rec), nil
}

var powerDisplay = map[string]string{PowerRunning: "VM running", PowerStopped: "VM stopped", PowerDeallocated: "VM deallocated"}

func instanceView(rec *vmRecord) InstanceView {
	iv := InstanceView{Statuses: []InstanceViewStatus{
		{Code: "ProvisioningState/succeeded", Level: "Info", DisplayStatus: "Provisioning succeeded"},
		{Code: "PowerState/" + rec.PowerState, Level: "Info", DisplayStatus: powerDisplay[rec.PowerState]},
	}}
	for _, d := range rec.Disks {
		rid, err := azure.ParseResourceID(d)
		if err != nil {
			continue
		}
		iv.Disks = append(iv.Disks, DiskInstanceView{Name: rid.Name(), Statuses: []InstanceViewStatus{
			{Code: "ProvisioningState/succeeded", Level: "Info", DisplayStatus: "Provisioning succeeded"}}})
	}
	return iv
}

// ListVMs lists a subscription's (or group's) VMs.
func (s *Service) ListVMs(ctx context.Context, sub, rg string) ([]VirtualMachine, error) {
	recs, err := listJSON[vmRecord](ctx, s.cfg.Store, KindVM, scopePrefix(sub, rg))
	if err != nil {
		return nil, err
	}
	out := make([]VirtualMachine, len(recs))
	for i, r := range recs {
		out[i] = r.VM
	}
	return out, nil
}

// PutVM creates a VM (its implicit disks, its system-assigned identity,
// then starts it, unwrapping its disks' keys) or updates one (size, tags,
// identity), enforcing seed 002's rules.
func (s *Service) PutVM(ctx context.Context, id azure.ResourceID, in VirtualMachine) (VirtualMachine, bool, error) {
	var old vmRecord
	_, err := getJSON(ctx, s.cfg.Store, KindVM, resKey(id.String()), &old)
	if err == nil {
		vm, err := s.updateVM(ctx, old, in)
		return vm, false, err
	}
	if !errors.Is(err, ErrNotFound) {
		return VirtualMachine{}, false, err
	}
	vm, err := s.createVM(ctx, id, in)
	return vm, err == nil, err
}

func (s *Service) createVM(ctx context.Context, id azure.ResourceID, in VirtualMachine) (_ VirtualMachine, err error) {
	loc, err := s.cfg.ARM.CheckLocation(in.Location)
	if err != nil {
		return VirtualMachine{}, badRequest("LocationNotAvailableForResourceType", "The provided location '%s' is not available for resource type '%s'.", in.Location, TypeVM)
	}
	if err := s.cfg.ARM.ResourceGroupExists(ctx, id.Subscription, id.ResourceGroup); err != nil {
		return VirtualMachine{}, azure.Errorf(http.StatusNotFound, "ResourceGroupNotFound", "Resource group '%s' could not be found.", id.ResourceGroup)
	}
	vm := in
	vm.ID, vm.Name, vm.Type, vm.Location = id.String(), id.Name(), TypeVM, loc
	vm.Properties.InstanceView = nil
	if err := checkVMRules(&vm, nil); err != nil {
		return VirtualMachine{}, err
	}
	sp := vm.Properties.StorageProfile
	if sp == nil || sp.OSDisk == nil {
		return VirtualMachine{}, badRequest("InvalidParameter", "Required parameter 'storageProfile.osDisk' is missing (null).")
	}
	rec := vmRecord{PowerState: PowerRunning}
	// Roll back what was made if the VM is not stored in the end.
	var createdSystem bool
	var created []string
	defer func() {
		if err == nil {
			return
		}
		bg := context.WithoutCancel(ctx)
		for _, d := range created {
			if disk, gerr := s.GetDisk(bg, d); gerr == nil {
				_ = s.deleteDiskData(bg, disk)
			}
		}
		if createdSystem {
			_, _ = s.cfg.Identity.DeleteSystemAssignedIdentity(bg, vm.ID)
		}
	}()
	// OS disk.
	osd := sp.OSDisk
	ephemeral := osd.DiffDiskSettings != nil && strings.EqualFold(osd.DiffDiskSettings.Option, "Local")
	if !ephemeral {
		if osd.ManagedDisk == nil {
			osd.ManagedDisk = &ManagedDiskParams{}
		}
		diskID, implicit, err := s.vmDisk(ctx, &vm, osd.Name, osd.CreateOption, osd.DiskSizeGB, osd.ManagedDisk, osd.OSType, true)
		if err != nil {
			return VirtualMachine{}, err
		}
		osd.ManagedDisk.ID = diskID
		if osd.Name == "" {
			osd.Name = lastSegment(diskID)
		}
		rec.Disks = append(rec.Disks, resKey(diskID))
		if implicit {
			created = append(created, resKey(diskID))
			if strings.EqualFold(osd.DeleteOption, "Delete") {
				rec.Implicit = append(rec.Implicit, resKey(diskID))
			}
		}
	}
	for i := range sp.DataDisks {
		dd := &sp.DataDisks[i]
		if dd.ManagedDisk == nil {
			dd.ManagedDisk = &ManagedDiskParams{}
		}
		if dd.Name == "" && dd.ManagedDisk.ID == "" {
			dd.Name = fmt.Sprintf("%s_DataDisk_%d", vm.Name, dd.Lun)
		}
		diskID, implicit, err := s.vmDisk(ctx, &vm, dd.Name, dd.CreateOption, dd.DiskSizeGB, dd.ManagedDisk, "", false)
		if err != nil {
			return VirtualMachine{}, err
		}
		dd.ManagedDisk.ID = diskID
		if dd.Name == "" {
			dd.Name = lastSegment(diskID)
		}
		rec.Disks = append(rec.Disks, resKey(diskID))
		if implicit {
			created = append(created, resKey(diskID))
			if strings.EqualFold(dd.DeleteOption, "Delete") {
				rec.Implicit = append(rec.Implicit, resKey(diskID))
			}
		}
	}
	if sp.DataDisks == nil {
		sp.DataDisks = []DataDisk{}
	}
	ident, cs, err := s.resolveIdentity(ctx, vm.ID, in.Identity)
	createdSystem = cs
	if err != nil {
		return VirtualMachine{}, err
	}
	vm.Identity = ident
	vmid, err := s.newGUID()
	if err != nil {
		return VirtualMachine{}, err
	}
	now := s.now()
	vm.Properties.VMID, vm.Properties.TimeCreated, vm.Properties.ProvisioningState = vmid, &now, StateSucceeded
	// A created VM starts: its disks' keys must unwrap now.
	if err := s.unlockDisks(ctx, rec.Disks); err != nil {
		return VirtualMachine{}, err
	}
	rec.VM = vm
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		if err := putJSON(ctx, tx, KindVM, resKey(vm.ID), rec, store.Absent); err != nil {
			return err
		}
		for _, d := range rec.Disks {
			var disk Disk
			v, err := getJSON(ctx, tx, KindDisk, d, &disk)
			if err != nil {
				return err
			}
			if disk.ManagedBy != "" && !strings.EqualFold(disk.ManagedBy, vm.ID) {
				return conflict("OperationNotAllowed", "Disk %s is already attached to VM %s.", disk.Name, disk.ManagedBy)
			}
			disk.ManagedBy, disk.Properties.DiskState = vm.ID, DiskAttached
			if err := putJSON(ctx, tx, KindDisk, d, disk, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return VirtualMachine{}, err
	}
	return vm, nil
}

func lastSegment(id string) string { return id[strings.LastIndex(id, "/")+1:] }

// vmDisk attaches an existing disk or creates an implicit one for a new VM.
func (s *Service) vmDisk(ctx context.Context, vm *VirtualMachine, name, createOption string, sizeGB *int32, md *ManagedDiskParams, osType string, isOS bool) (string, bool, error) {
	switch strings.ToLower(createOption) {
	case "attach":
		if md.ID == "" {
			return "", false, badRequest("InvalidParameter", "createOption Attach needs managedDisk.id.")
		}
		d, err := s.GetDisk(ctx, md.ID)
		if errors.Is(err, ErrNotFound) {
			return "", false, azure.Errorf(http.StatusNotFound, "NotFound", "Disk %s was not found.", md.ID)
		}
		if err != nil {
			return "", false, err
		}
		if d.ManagedBy != "" {
			return "", false, conflict("OperationNotAllowed", "Disk %s is already attached to VM %s.", d.Name, d.ManagedBy)
		}
		if arm.NormalizeLocation(d.Location) != arm.NormalizeLocation(vm.Location) {
			return "", false, badRequest("InvalidParameter", "Disk %s is in '%s', the VM in '%s'.", d.Name, d.Location, vm.Location)
		}
		confDisk := d.Properties.SecurityProfile != nil && strings.HasPrefix(d.Properties.SecurityProfile.SecurityType, "ConfidentialVM_")
		if confDisk && (!isOS || !isConfidential(vm)) {
			return "", false, badRequest("InvalidParameter", "Disk %s has security type %s: it can only be the OS disk of a ConfidentialVM.", d.Name, d.Properties.SecurityProfile.SecurityType)
		}
		return d.ID, false, nil
	case "fromimage", "empty":
		if !isOS && strings.EqualFold(createOption, "FromImage") {
			return "", false, badRequest("InvalidParameter", "Data disks take createOption Empty or Attach.")
		}
		if name == "" {
			name = vm.Name + "_OsDisk_1"
		}
		rid, _ := azure.ParseResourceID(vm.ID)
		did, err := azure.ParseResourceID(fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/disks/%s", rid.Subscription, rid.ResourceGroup, name))
		if err != nil {
			return "", false, badRequest("InvalidParameter", "Invalid disk name '%s'.", name)
		}
		d := Disk{Location: vm.Location, Properties: DiskProperties{OSType: osType, DiskSizeGB: sizeGB,
			CreationData: CreationData{CreateOption: map[bool]string{true: "FromImage", false: "Empty"}[isOS]}}}
		if sizeGB == nil && !isOS {
			return "", false, badRequest("InvalidParameter", "diskSizeGB is required for an Empty data disk.")
		}
		if md.StorageAccountType != "" {
			d.SKU = &DiskSKU{Name: md.StorageAccountType}
		}
		if md.DiskEncryptionSet != nil && md.DiskEncryptionSet.ID != "" {
			des, err := s.GetDES(ctx, md.DiskEncryptionSet.ID)
			if err != nil {
				return "", false, badRequest("InvalidParameter", "The disk encryption set '%s' was not found.", md.DiskEncryptionSet.ID)
			}
			d.Properties.Encryption = &Encryption{Type: des.Properties.EncryptionType, DiskEncryptionSetID: des.ID}
		}
		if isOS && md.SecurityProfile != nil {
			switch md.SecurityProfile.SecurityEncryptionType {
			case securityEncryptionDiskWithVMGuestState:
				if md.SecurityProfile.DiskEncryptionSet != nil && md.SecurityProfile.DiskEncryptionSet.ID != "" {
					d.Properties.SecurityProfile = &DiskSecurityProfile{SecurityType: SecurityCVMDiskCustomerKey, SecureVMDiskEncryptionSetID: md.SecurityProfile.DiskEncryptionSet.ID}
				} else {
					d.Properties.SecurityProfile = &DiskSecurityProfile{SecurityType: SecurityCVMDiskPlatformKey}
				}
			case securityEncryptionVMGuestStateOnly:
				d.Properties.SecurityProfile = &DiskSecurityProfile{SecurityType: SecurityCVMGuestStateOnlyPlatformKey}
			case securityEncryptionNonPersistedTPM:
				d.Properties.SecurityProfile = &DiskSecurityProfile{SecurityType: SecurityCVMNonPersistedTPM}
			}
			if d.Properties.OSType == "" {
				d.Properties.OSType = "Linux"
			}
		}
		if _, err := s.GetDisk(ctx, did.String()); err == nil {
			return "", false, conflict("Conflict", "Disk %s already exists; attach it with createOption Attach.", name)
		}
		created, err := s.createDisk(ctx, did, d)
		if err != nil {
			return "", false, err
		}
		return created.ID, true, nil
	}
	return "", false, badRequest("InvalidParameter", "createOption '%s' is not supported; use FromImage, Empty or Attach.", createOption)
}

func (s *Service) updateVM(ctx context.Context, old vmRecord, in VirtualMachine) (VirtualMachine, error) {
	vm := old.VM
	if in.Location != "" && arm.NormalizeLocation(in.Location) != arm.NormalizeLocation(vm.Location) {
		return VirtualMachine{}, badRequest("PropertyChangeNotAllowed", "Changing property 'location' is not allowed.")
	}
	next := vm
	if in.Tags != nil {
		next.Tags = in.Tags
	}
	if in.Properties.HardwareProfile != nil && in.Properties.HardwareProfile.VMSize != "" {
		next.Properties.HardwareProfile = in.Properties.HardwareProfile
	}
	if in.Properties.SecurityProfile != nil || isConfidential(&vm) {
		next.Properties.SecurityProfile = in.Properties.SecurityProfile
		if next.Properties.SecurityProfile == nil {
			next.Properties.SecurityProfile = &VMSecurityProfile{}
		}
	}
	if sp := in.Properties.StorageProfile; sp != nil && sp.OSDisk != nil && sp.OSDisk.ManagedDisk != nil {
		cp := *next.Properties.StorageProfile
		osd := *cp.OSDisk
		md := *osd.ManagedDisk
		md.SecurityProfile = sp.OSDisk.ManagedDisk.SecurityProfile
		osd.ManagedDisk, cp.OSDisk = &md, &osd
		next.Properties.StorageProfile = &cp
	}
	if err := checkVMRules(&next, &vm); err != nil {
		return VirtualMachine{}, err
	}
	if in.Identity != nil {
		ident, _, err := s.resolveIdentity(ctx, vm.ID, in.Identity)
		if err != nil {
			return VirtualMachine{}, err
		}
		if (ident == nil || ident.PrincipalID == "") && vm.Identity != nil && vm.Identity.PrincipalID != "" {
			if _, err := s.cfg.Identity.DeleteSystemAssignedIdentity(ctx, vm.ID); err != nil {
				return VirtualMachine{}, err
			}
		}
		next.Identity = ident
	}
	err := s.updateVMRecord(ctx, vm.ID, func(r *vmRecord) error { r.VM = next; return nil })
	return next, err
}

// PatchVM applies a VM PATCH (same fields as an update PUT).
func (s *Service) PatchVM(ctx context.Context, id string, in VirtualMachine) (VirtualMachine, error) {
	var old vmRecord
	if _, err := getJSON(ctx, s.cfg.Store, KindVM, resKey(id), &old); err != nil {
		return VirtualMachine{}, err
	}
	return s.updateVM(ctx, old, in)
}

func (s *Service) updateVMRecord(ctx context.Context, id string, fn func(*vmRecord) error) error {
	return s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		var r vmRecord
		v, err := getJSON(ctx, tx, KindVM, resKey(id), &r)
		if err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
		return putJSON(ctx, tx, KindVM, resKey(id), r, v)
	})
}

// unlockDisks unwraps every disk's data key afresh through its key's
// vault, as a VM start does (the customer's kill switch: a disabled key
// stops the start here). Confidential customer-key disks are skipped: the
// guest releases their key itself.
func (s *Service) unlockDisks(ctx context.Context, disks []string) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8) // a VM's disks unlock in parallel, as a host attaches them
	for _, id := range disks {
		g.Go(func() error {
			d, err := s.GetDisk(ctx, id)
			if err != nil {
				return err
			}
			if sp := d.Properties.SecurityProfile; sp != nil && sp.SecurityType == SecurityCVMDiskCustomerKey {
				return nil
			}
			if err := s.cfg.DiskData.Unlock(ctx, d.Properties.UniqueID); err != nil {
				var ke *KeyError
				if errors.As(err, &ke) {
					return &KeyError{Code: ke.Code, Message: fmt.Sprintf("Disk %s cannot be unlocked: %s", d.Name, ke.Message), Err: err}
				}
				return err
			}
			return nil
		})
	}
	return g.Wait()
}

// Power actions.
const (
	ActionStart      = "start"
	ActionPowerOff   = "powerOff"
	ActionDeallocate = "deallocate"
	ActionRestart    = "restart"
)

// Power runs a power action on a VM.
func (s *Service) Power(ctx context.Context, id, action string) error {
	var rec vmRecord
	if _, err := getJSON(ctx, s.cfg.Store, KindVM, resKey(id), &rec); err != nil {
		return err
	}
	var next string
	starts := action == ActionStart || action == ActionRestart
	if starts {
		// Not while a disk's DES rotates (checked again in the update).
		if err := s.checkNotRotating(ctx, s.cfg.Store, rec.VM.Name, rec.Disks); err != nil {
			return err
		}
	}
	switch action {
	case ActionStart:
		if err := s.unlockDisks(ctx, rec.Disks); err != nil {
			return err
		}
		next = PowerRunning
	case ActionRestart:
		if rec.PowerState != PowerRunning {
			return conflict("OperationNotAllowed", "Operation 'restart' is not allowed since the VM %s is %s.", rec.VM.Name, rec.PowerState)
		}
		if err := s.unlockDisks(ctx, rec.Disks); err != nil {
			return err
		}
		next = PowerRunning
	case ActionPowerOff:
		next = PowerStopped
		if rec.PowerState == PowerDeallocated {
			next = PowerDeallocated
		}
	case ActionDeallocate:
		next = PowerDeallocated
	default:
		return fmt.Errorf("compute: unknown power action %q", action)
	}
	return s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		var r vmRecord
		v, err := getJSON(ctx, tx, KindVM, resKey(id), &r)
		if err != nil {
			return err
		}
		if starts {
			if err := s.checkNotRotating(ctx, tx, r.VM.Name, r.Disks); err != nil {
				return err
			}
		}
		r.PowerState = next
		return putJSON(ctx, tx, KindVM, resKey(id), r, v)
	})
}

// PowerState returns a VM's power state.
func (s *Service) PowerState(ctx context.Context, id string) (string, error) {
	var rec vmRecord
	if _, err := getJSON(ctx, s.cfg.Store, KindVM, resKey(id), &rec); err != nil {
		return "", err
	}
	return rec.PowerState, nil
}

// DeleteVM deletes a VM: disks it created with deleteOption Delete go
// with it, other disks are detached (Azure's default deleteOption Detach); its system-assigned identity and
// managed-identity secret are deleted. False when it did not exist.
func (s *Service) DeleteVM(ctx context.Context, id string) (bool, error) {
	var rec vmRecord
	if _, err := getJSON(ctx, s.cfg.Store, KindVM, resKey(id), &rec); err != nil {
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	var implicit []Disk
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		implicit = implicit[:0]
		for _, d := range rec.Disks {
			var disk Disk
			v, err := getJSON(ctx, tx, KindDisk, d, &disk)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			disk.ManagedBy, disk.Properties.DiskState = "", DiskUnattached
			if err := putJSON(ctx, tx, KindDisk, d, disk, v); err != nil {
				return err
			}
			for _, imp := range rec.Implicit {
				if imp == d {
					implicit = append(implicit, disk)
				}
			}
		}
		return deleteKey(ctx, tx, KindVM, resKey(id))
	})
	if err != nil {
		return false, err
	}
	for _, d := range implicit {
		if err := s.deleteDiskData(ctx, d); err != nil {
			return true, err
		}
	}
	if _, err := s.cfg.Identity.DeleteSystemAssignedIdentity(ctx, rec.VM.ID); err != nil {
		return true, err
	}
	return true, nil
}

// IssueVMIdentitySecret issues (or rotates) the VM's managed-identity
// secret: the guest presents it (IDENTITY_HEADER) to obtain tokens for the
// VM's identities.
func (s *Service) IssueVMIdentitySecret(ctx context.Context, id string) (string, error) {
	vm, err := s.GetVM(ctx, id, false)
	if err != nil {
		return "", err
	}
	if vm.Identity == nil {
		return "", badRequest("InvalidParameter", "VM %s has no managed identity.", vm.Name)
	}
	var ids []string
	if vm.Identity.PrincipalID != "" {
		ids = append(ids, vm.ID)
	}
	for uid := range vm.Identity.UserAssignedIdentities {
		ids = append(ids, uid)
	}
	return s.cfg.Identity.IssueOwnerSecret(ctx, vm.ID, ids)
}

// checkVMNotRunning refuses disk export while its VM runs.
func (s *Service) checkVMNotRunning(ctx context.Context, vmID string) error {
	st, err := s.PowerState(ctx, vmID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if st == PowerRunning {
		return conflict("OperationNotAllowed", "The disk is attached to running VM %s; deallocate it before granting access.", lastSegment(vmID))
	}
	return nil
}

// groupDeleter deletes one resource type of a resource group.
type groupDeleter func(ctx context.Context, sub, rg string) error

func (f groupDeleter) DeleteResourceGroupContents(ctx context.Context, sub, rg string) error {
	return f(ctx, sub, rg)
}

// GroupDeleters returns the deleters of VMs, disks and encryption sets, in
// the order a resource group's delete must run them.
func (s *Service) GroupDeleters() []arm.GroupDeleter {
	return []arm.GroupDeleter{
		groupDeleter(func(ctx context.Context, sub, rg string) error {
			vms, err := s.ListVMs(ctx, sub, rg)
			if err != nil {
				return err
			}
			for _, vm := range vms {
				if _, err := s.DeleteVM(ctx, vm.ID); err != nil {
					return err
				}
			}
			return nil
		}),
		groupDeleter(func(ctx context.Context, sub, rg string) error {
			disks, err := s.ListDisks(ctx, sub, rg)
			if err != nil {
				return err
			}
			for _, d := range disks {
				if d.ManagedBy != "" { // attached to a VM of another group: detach
					if err := s.updateDiskRecord(ctx, d.ID, func(d *Disk) error { d.ManagedBy = ""; return nil }); err != nil {
						return err
					}
				}
				if err := s.deleteDiskData(ctx, d); err != nil {
					return err
				}
			}
			return nil
		}),
		groupDeleter(func(ctx context.Context, sub, rg string) error {
			sets, err := s.ListDES(ctx, sub, rg)
			if err != nil {
				return err
			}
			for _, des := range sets {
				if _, err := s.DeleteDES(ctx, des.ID); err != nil {
					return err
				}
			}
			return nil
		}),
	}
}
