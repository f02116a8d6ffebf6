package computehttp

import (
	"errors"
	"net/http"
	"strings"

	"github.com/cvault/cvault/internal/arm/armhttp"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/compute"
)

const (
	desAction  = "Microsoft.Compute/diskEncryptionSets/"
	diskAction = "Microsoft.Compute/disks/"
	vmAction   = "Microsoft.Compute/virtualMachines/"
)

// --- disk encryption sets ---

func (h *handlers) putDES(w http.ResponseWriter, r *http.Request) error {
	id, err := resourceID(r, "diskEncryptionSets", "desName")
	if err != nil {
		return err
	}
	if err := armhttp.Authorize(r, h.az, desAction+"write", id.String()); err != nil {
		return err
	}
	var in compute.DiskEncryptionSet
	if err := azure.DecodeJSON(r, azure.MaxBody, azure.CodeInvalidRequestContent, false, &in); err != nil {
		return err
	}
	if err := checkBodyID(id, compute.TypeDES, in.ID, in.Name, in.Type); err != nil {
		return err
	}
	if err := h.assignIdentities(r, in.Identity); err != nil {
		return err
	}
	des, _, err := h.svc.PutDES(r.Context(), id, in)
	if err != nil {
		in.ID, in.Name, in.Type = id.String(), id.Name(), compute.TypeDES
		in.Properties.ProvisioningState = compute.StateUpdating
		return h.lro(w, r, in.Location, id.String(), http.StatusAccepted, in, err, false)
	}
	return h.desLRO(w, r, des)
}

// desLRO answers a DES write: a key rotation in progress is polled through
// its own operation (the job updates it with done/total); anything else was
// done within the request.
func (h *handlers) desLRO(w http.ResponseWriter, r *http.Request, des compute.DiskEncryptionSet) error {
	kr := des.Properties.KeyRotation
	if kr == nil || kr.State != compute.RotationInProgress || kr.OperationID == "" {
		return h.lro(w, r, des.Location, des.ID, http.StatusAccepted, des, nil, false)
	}
	op, err := h.arm.Operation(r.Context(), r.PathValue("subscriptionId"), kr.OperationID)
	if err != nil {
		return err
	}
	w.Header().Set("Azure-AsyncOperation", op.StatusURL(h.base, r.URL.Query().Get("api-version")))
	w.Header().Set("Retry-After", "1")
	azure.WriteJSON(w, http.StatusAccepted, des)
	return nil
}

func (h *handlers) patchDES(w http.ResponseWriter, r *http.Request) error {
	id, err := resourceID(r, "diskEncryptionSets", "desName")
	if err != nil {
		return err
	}
	if err := armhttp.Authorize(r, h.az, desAction+"write", id.String()); err != nil {
		return err
	}
	var u compute.DESUpdate
	if err := azure.DecodeJSON(r, azure.MaxBody, azure.CodeInvalidRequestContent, false, &u); err != nil {
		return err
	}
	if err := h.assignIdentities(r, u.Identity); err != nil {
		return err
	}
	old, err := h.svc.GetDES(r.Context(), id.String())
	if errors.Is(err, compute.ErrNotFound) {
		return notFound(compute.TypeDES, id.Name(), id.ResourceGroup)
	}
	if err != nil {
		return err
	}
	des, err := h.svc.PatchDES(r.Context(), id, u)
	if err != nil {
		old.Properties.ProvisioningState = compute.StateUpdating
		return h.lro(w, r, old.Location, old.ID, http.StatusAccepted, old, err, false)
	}
	return h.desLRO(w, r, des)
}

func (h *handlers) getDES(w http.ResponseWriter, r *http.Request) error {
	id, err := resourceID(r, "diskEncryptionSets", "desName")
	if err != nil {
		return err
	}
	if err := armhttp.Authorize(r, h.az, desAction+"read", id.String()); err != nil {
		return err
	}
	des, err := h.svc.GetDES(r.Context(), id.String())
	if errors.Is(err, compute.ErrNotFound) {
		return notFound(compute.TypeDES, id.Name(), id.ResourceGroup)
	}
	if err != nil {
		return err
	}
	azure.WriteJSON(w, http.StatusOK, des)
	return nil
}

func (h *handlers) deleteDES(w http.ResponseWriter, r *http.Request) error {
	id, err := resourceID(r, "diskEncryptionSets", "desName")
	if err != nil {
		return err
	}
	if err := armhttp.Authorize(r, h.az, desAction+"delete", id.String()); err != nil {
		return err
	}
	des, _ := h.svc.GetDES(r.Context(), id.String())
	existed, err := h.svc.DeleteDES(r.Context(), id.String())
	if err != nil {
		return mapErr(err)
	}
	if !existed {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return h.lro(w, r, des.Location, des.ID, http.StatusAccepted, nil, nil, true)
}

func (h *handlers) desAssociated(w http.ResponseWriter, r *http.Request) error {
	id, err := resourceID(r, "diskEncryptionSets", "desName")
	if err != nil {
		return err
	}
	if err := armhttp.Authorize(r, h.az, desAction+"read", id.String()); err != nil {
		return err
	}
	ids, err := h.svc.AssociatedResources(r.Context(), id.String())
	if errors.Is(err, compute.ErrNotFound) {
		return notFound(compute.TypeDES, id.Name(), id.ResourceGroup)
	}
	if err != nil {
		return err
	}
	if ids == nil {
		ids = []string{}
	}
	azure.WriteJSON(w, http.StatusOK, azure.Page[string]{Value: ids})
	return nil
}

func (h *handlers) listDES(w http.ResponseWriter, r *http.Request) error {
	sub, rg, scope := listScope(r)
	if err := armhttp.Authorize(r, h.az, desAction+"read", scope); err != nil {
		return err
	}
	list, err := h.svc.ListDES(r.Context(), sub, rg)
	if err != nil {
		return err
	}
	azure.WriteJSON(w, http.StatusOK, azure.Page[compute.DiskEncryptionSet]{Value: list})
	return nil
}

// --- disks ---

func (h *handlers) putDisk(w http.ResponseWriter, r *http.Request) error {
	id, err := resourceID(r, "disks", "diskName")
	if err != nil {
		return err
	}
	if err := armhttp.Authorize(r, h.az, diskAction+"write", id.String()); err != nil {
		return err
	}
	var in compute.Disk
	if err := azure.DecodeJSON(r, azure.MaxBody, azure.CodeInvalidRequestContent, false, &in); err != nil {
		return err
	}
	if err := checkBodyID(id, compute.TypeDisk, in.ID, in.Name, in.Type); err != nil {
		return err
	}
	// Using a DES needs read on it (Azure: diskEncryptionSets/read).
	for _, des := range []string{encDES(&in), secDES(&in)} {
		if des != "" {
			if err := armhttp.Authorize(r, h.az, desAction+"read", strings.TrimRight(des, "/")); err != nil {
				return err
			}
		}
	}
	d, _, err := h.svc.PutDisk(r.Context(), id, in)
	if err != nil {
		in.ID, in.Name, in.Type = id.String(), id.Name(), compute.TypeDisk
		in.Properties.ProvisioningState = compute.StateUpdating
		return h.lro(w, r, in.Location, id.String(), http.StatusAccepted, in, err, false)
	}
	return h.lro(w, r, d.Location, d.ID, http.StatusAccepted, d, nil, false)
}

func encDES(d *compute.Disk) string {
	if d.Properties.Encryption != nil {
		return d.Properties.Encryption.DiskEncryptionSetID
	}
	return ""
}

func secDES(d *compute.Disk) string {
	if d.Properties.SecurityProfile != nil {
		return d.Properties.SecurityProfile.SecureVMDiskEncryptionSetID
	}
	return ""
}

func (h *handlers) patchDisk(w http.ResponseWriter, r *http.Request) error {
	id, err := resourceID(r, "disks", "diskName")
	if err != nil {
		return err
	}
	if err := armhttp.Authorize(r, h.az, diskAction+"write", id.String()); err != nil {
		return err
	}
	var u compute.DiskUpdate
	if err := azure.DecodeJSON(r, azure.MaxBody, azure.CodeInvalidRequestContent, false, &u); err != nil {
		return err
	}
	d, err := h.svc.PatchDisk(r.Context(), id.String(), u)
	if errors.Is(err, compute.ErrNotFound) {
		return notFound(compute.TypeDisk, id.Name(), id.ResourceGroup)
	}
	if err != nil {
		return mapErr(err)
	}
	return h.lro(w, r, d.Location, d.ID, http.StatusAccepted, d, nil, false)
}

func (h *handlers) getDisk(w http.ResponseWriter, r *http.Request) error {
	id, err := resourceID(r, "disks", "diskName")
	if err != nil {
		return err
	}
	if err := armhttp.Authorize(r, h.az, diskAction+"read", id.String()); err != nil {
		return err
	}
	d, err := h.svc.GetDisk(r.Context(), id.String())
	if errors.Is(err, compute.ErrNotFound) {
		return notFound(compute.TypeDisk, id.Name(), id.ResourceGroup)
	}
	if err != nil {
		return err
	}
	azure.WriteJSON(w, http.StatusOK, d)
	return nil
}

func (h *handlers) deleteDisk(w http.ResponseWriter, r *http.Request) error {
	id, err := resourceID(r, "disks", "diskName")
	if err != nil {
		return err
	}
	if err := armhttp.Authorize(r, h.az, diskAction+"delete", id.String()); err != nil {
		return err
	}
	d, _ := h.svc.GetDisk(r.Context(), id.String())
	existed, err := h.svc.DeleteDisk(r.Context(), id.String())
	if err != nil {
		return mapErr(err)
	}
	if !existed {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return h.lro(w, r, d.Location, d.ID, http.StatusAccepted, nil, nil, true)
}

func (h *handlers) listDisks(w http.ResponseWriter, r *http.Request) error {
	sub, rg, scope := listScope(r)
	if err := armhttp.Authorize(r, h.az, diskAction+"read", scope); err != nil {
		return err
	}
	list, err := h.svc.ListDisks(r.Context(), sub, rg)
	if err != nil {
		return err
	}
	azure.WriteJSON(w, http.StatusOK, azure.Page[compute.Disk]{Value: list})
	return nil
}

// beginGetAccess answers 200 with the AccessURI at once (armcompute's
// poller is then done with the first response).
func (h *handlers) beginGetAccess(w http.ResponseWriter, r *http.Request) error {
	id, err := resourceID(r, "disks", "diskName")
	if err != nil {
		return err
	}
	if err := armhttp.Authorize(r, h.az, diskAction+"beginGetAccess/action", id.String()); err != nil {
		return err
	}
	var in struct {
		Access            string `json:"access"`
		DurationInSeconds int32  `json:"durationInSeconds"`
	}
	if err := azure.DecodeJSON(r, azure.MaxBody, azure.CodeInvalidRequestContent, false, &in); err != nil {
		return err
	}
	url, err := h.svc.GrantAccess(r.Context(), id.String(), in.Access, in.DurationInSeconds)
	if errors.Is(err, compute.ErrNotFound) {
		return notFound(compute.TypeDisk, id.Name(), id.ResourceGroup)
	}
	if err != nil {
		return mapErr(err)
	}
	azure.WriteJSON(w, http.StatusOK, map[string]string{"accessSAS": url})
	return nil
}

func (h *handlers) endGetAccess(w http.ResponseWriter, r *http.Request) error {
	id, err := resourceID(r, "disks", "diskName")
	if err != nil {
		return err
	}
	if err := armhttp.Authorize(r, h.az, diskAction+"endGetAccess/action", id.String()); err != nil {
		return err
	}
	err = h.svc.RevokeAccess(r.Context(), id.String())
	if errors.Is(err, compute.ErrNotFound) {
		return notFound(compute.TypeDisk, id.Name(), id.ResourceGroup)
	}
	if err != nil {
		return mapErr(err)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// --- virtual machines ---

func (h *handlers) putVM(w http.ResponseWriter, r *http.Request) error {
	id, err := resourceID(r, "virtualMachines", "vmName")
	if err != nil {
		return err
	}
	if err := armhttp.Authorize(r, h.az, vmAction+"write", id.String()); err != nil {
		return err
	}
	var in compute.VirtualMachine
	if err := azure.DecodeJSON(r, azure.MaxBody, azure.CodeInvalidRequestContent, false, &in); err != nil {
		return err
	}
	if err := checkBodyID(id, compute.TypeVM, in.ID, in.Name, in.Type); err != nil {
		return err
	}
	if err := h.assignIdentities(r, in.Identity); err != nil {
		return err
	}
	vm, created, err := h.svc.PutVM(r.Context(), id, in)
	if err != nil {
		in.ID, in.Name, in.Type = id.String(), id.Name(), compute.TypeVM
		in.Properties.ProvisioningState = compute.StateCreating
		return h.lro(w, r, in.Location, id.String(), http.StatusCreated, in, err, false)
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return h.lro(w, r, vm.Location, vm.ID, status, vm, nil, false)
}

func (h *handlers) patchVM(w http.ResponseWriter, r *http.Request) error {
	id, err := resourceID(r, "virtualMachines", "vmName")
	if err != nil {
		return err
	}
	if err := armhttp.Authorize(r, h.az, vmAction+"write", id.String()); err != nil {
		return err
	}
	var in compute.VirtualMachine
	if err := azure.DecodeJSON(r, azure.MaxBody, azure.CodeInvalidRequestContent, false, &in); err != nil {
		return err
	}
	if err := h.assignIdentities(r, in.Identity); err != nil {
		return err
	}
	vm, err := h.svc.PatchVM(r.Context(), id.String(), in)
	if errors.Is(err, compute.ErrNotFound) {
		return notFound(compute.TypeVM, id.Name(), id.ResourceGroup)
	}
	if err != nil {
		return mapErr(err)
	}
	return h.lro(w, r, vm.Location, vm.ID, http.StatusOK, vm, nil, false)
}

func (h *handlers) getVM(w http.ResponseWriter, r *http.Request) error {
	id, err := resourceID(r, "virtualMachines", "vmName")
	if err != nil {
		return err
	}
	if err := armhttp.Authorize(r, h.az, vmAction+"read", id.String()); err != nil {
		return err
	}
	view := strings.Contains(strings.ToLower(r.URL.Query().Get("$expand")), "instanceview")
	vm, err := h.svc.GetVM(r.Context(), id.String(), view)
	if errors.Is(err, compute.ErrNotFound) {
		return notFound(compute.TypeVM, id.Name(), id.ResourceGroup)
	}
	if err != nil {
		return err
	}
	azure.WriteJSON(w, http.StatusOK, vm)
	return nil
}

func (h *handlers) instanceView(w http.ResponseWriter, r *http.Request) error {
	id, err := resourceID(r, "virtualMachines", "vmName")
	if err != nil {
		return err
	}
	if err := armhttp.Authorize(r, h.az, vmAction+"instanceView/read", id.String()); err != nil {
		return err
	}
	iv, err := h.svc.InstanceView(r.Context(), id.String())
	if errors.Is(err, compute.ErrNotFound) {
		return notFound(compute.TypeVM, id.Name(), id.ResourceGroup)
	}
	if err != nil {
		return err
	}
	azure.WriteJSON(w, http.StatusOK, iv)
	return nil
}

func (h *handlers) deleteVM(w http.ResponseWriter, r *http.Request) error {
	id, err := resourceID(r, "virtualMachines", "vmName")
	if err != nil {
		return err
	}
	if err := armhttp.Authorize(r, h.az, vmAction+"delete", id.String()); err != nil {
		return err
	}
	vm, _ := h.svc.GetVM(r.Context(), id.String(), false)
	existed, err := h.svc.DeleteVM(r.Context(), id.String())
	if err != nil {
		return mapErr(err)
	}
	if !existed {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return h.lro(w, r, vm.Location, vm.ID, http.StatusAccepted, nil, nil, true)
}

func (h *handlers) power(action string) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := resourceID(r, "virtualMachines", "vmName")
		if err != nil {
			return err
		}
		if err := armhttp.Authorize(r, h.az, vmAction+action+"/action", id.String()); err != nil {
			return err
		}
		vm, err := h.svc.GetVM(r.Context(), id.String(), false)
		if errors.Is(err, compute.ErrNotFound) {
			return notFound(compute.TypeVM, id.Name(), id.ResourceGroup)
		}
		if err != nil {
			return err
		}
		err = h.svc.Power(r.Context(), vm.ID, action)
		return h.lro(w, r, vm.Location, vm.ID, http.StatusAccepted, nil, err, true)
	}
}

func (h *handlers) listVMs(w http.ResponseWriter, r *http.Request) error {
	sub, rg, scope := listScope(r)
	if err := armhttp.Authorize(r, h.az, vmAction+"read", scope); err != nil {
		return err
	}
	list, err := h.svc.ListVMs(r.Context(), sub, rg)
	if err != nil {
		return err
	}
	azure.WriteJSON(w, http.StatusOK, azure.Page[compute.VirtualMachine]{Value: list})
	return nil
}
