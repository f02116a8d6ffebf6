package computehttp

import (
	"context"
	"net/http"
	"strings"

	"github.com/cvault/cvault/internal/arm/armhttp"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/compute"
)

// --- disk encryption sets ---

func (h *handlers) putDES(w http.ResponseWriter, r *http.Request) error {
	id, in, err := authorizedBody[compute.DiskEncryptionSet](h, r, desKind, "write")
	if err != nil {
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
	id, u, err := authorizedBody[compute.DESUpdate](h, r, desKind, "write")
	if err != nil {
		return err
	}
	if err := h.assignIdentities(r, u.Identity); err != nil {
		return err
	}
	old, err := h.svc.GetDES(r.Context(), id.String())
	if err != nil {
		return desKind.found(id, err)
	}
	des, err := h.svc.PatchDES(r.Context(), id, u)
	if err != nil {
		old.Properties.ProvisioningState = compute.StateUpdating
		return h.lro(w, r, old.Location, old.ID, http.StatusAccepted, old, err, false)
	}
	return h.desLRO(w, r, des)
}

func (h *handlers) getDES(w http.ResponseWriter, r *http.Request) error {
	return serveGet(h, w, r, desKind, "read", h.svc.GetDES)
}

func (h *handlers) deleteDES(w http.ResponseWriter, r *http.Request) error {
	return h.serveDelete(w, r, desKind, func(ctx context.Context, id string) (string, string) {
		des, _ := h.svc.GetDES(ctx, id)
		return des.Location, des.ID
	}, h.svc.DeleteDES)
}

func (h *handlers) desAssociated(w http.ResponseWriter, r *http.Request) error {
	return serveGet(h, w, r, desKind, "read", func(ctx context.Context, id string) (azure.Page[string], error) {
		ids, err := h.svc.AssociatedResources(ctx, id)
		if ids == nil {
			ids = []string{}
		}
		return azure.Page[string]{Value: ids}, err
	})
}

func (h *handlers) listDES(w http.ResponseWriter, r *http.Request) error {
	return serveList(h, w, r, desKind, h.svc.ListDES)
}

// --- disks ---

func (h *handlers) putDisk(w http.ResponseWriter, r *http.Request) error {
	id, in, err := authorizedBody[compute.Disk](h, r, diskKind, "write")
	if err != nil {
		return err
	}
	if err := checkBodyID(id, compute.TypeDisk, in.ID, in.Name, in.Type); err != nil {
		return err
	}
	// Using a DES needs read on it (Azure: diskEncryptionSets/read).
	for _, des := range []string{encDES(&in), secDES(&in)} {
		if des != "" {
			if err := armhttp.Authorize(r, h.az, desKind.action+"read", strings.TrimRight(des, "/")); err != nil {
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
	id, u, err := authorizedBody[compute.DiskUpdate](h, r, diskKind, "write")
	if err != nil {
		return err
	}
	d, err := h.svc.PatchDisk(r.Context(), id.String(), u)
	if err != nil {
		return mapErr(diskKind.found(id, err))
	}
	return h.lro(w, r, d.Location, d.ID, http.StatusAccepted, d, nil, false)
}

func (h *handlers) getDisk(w http.ResponseWriter, r *http.Request) error {
	return serveGet(h, w, r, diskKind, "read", h.svc.GetDisk)
}

func (h *handlers) deleteDisk(w http.ResponseWriter, r *http.Request) error {
	return h.serveDelete(w, r, diskKind, func(ctx context.Context, id string) (string, string) {
		d, _ := h.svc.GetDisk(ctx, id)
		return d.Location, d.ID
	}, h.svc.DeleteDisk)
}

func (h *handlers) listDisks(w http.ResponseWriter, r *http.Request) error {
	return serveList(h, w, r, diskKind, h.svc.ListDisks)
}

// accessRequest is beginGetAccess's body.
type accessRequest struct {
	Access            string `json:"access"`
	DurationInSeconds int32  `json:"durationInSeconds"`
}

// beginGetAccess answers 200 with the AccessURI at once (armcompute's
// poller is then done with the first response).
func (h *handlers) beginGetAccess(w http.ResponseWriter, r *http.Request) error {
	id, in, err := authorizedBody[accessRequest](h, r, diskKind, "beginGetAccess/action")
	if err != nil {
		return err
	}
	url, err := h.svc.GrantAccess(r.Context(), id.String(), in.Access, in.DurationInSeconds)
	if err != nil {
		return mapErr(diskKind.found(id, err))
	}
	azure.WriteJSON(w, http.StatusOK, map[string]string{"accessSAS": url})
	return nil
}

func (h *handlers) endGetAccess(w http.ResponseWriter, r *http.Request) error {
	id, err := h.authorized(r, diskKind, "endGetAccess/action")
	if err != nil {
		return err
	}
	if err := h.svc.RevokeAccess(r.Context(), id.String()); err != nil {
		return mapErr(diskKind.found(id, err))
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// --- virtual machines ---

func (h *handlers) putVM(w http.ResponseWriter, r *http.Request) error {
	id, in, err := authorizedBody[compute.VirtualMachine](h, r, vmKind, "write")
	if err != nil {
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
	id, in, err := authorizedBody[compute.VirtualMachine](h, r, vmKind, "write")
	if err != nil {
		return err
	}
	if err := h.assignIdentities(r, in.Identity); err != nil {
		return err
	}
	vm, err := h.svc.PatchVM(r.Context(), id.String(), in)
	if err != nil {
		return mapErr(vmKind.found(id, err))
	}
	return h.lro(w, r, vm.Location, vm.ID, http.StatusOK, vm, nil, false)
}

func (h *handlers) getVM(w http.ResponseWriter, r *http.Request) error {
	view := strings.Contains(strings.ToLower(r.URL.Query().Get("$expand")), "instanceview")
	return serveGet(h, w, r, vmKind, "read", func(ctx context.Context, id string) (compute.VirtualMachine, error) {
		return h.svc.GetVM(ctx, id, view)
	})
}

func (h *handlers) instanceView(w http.ResponseWriter, r *http.Request) error {
	return serveGet(h, w, r, vmKind, "instanceView/read", h.svc.InstanceView)
}

func (h *handlers) deleteVM(w http.ResponseWriter, r *http.Request) error {
	return h.serveDelete(w, r, vmKind, func(ctx context.Context, id string) (string, string) {
		vm, _ := h.svc.GetVM(ctx, id, false)
		return vm.Location, vm.ID
	}, h.svc.DeleteVM)
}

func (h *handlers) power(action string) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := h.authorized(r, vmKind, action+"/action")
		if err != nil {
			return err
		}
		vm, err := h.svc.GetVM(r.Context(), id.String(), false)
		if err != nil {
			return vmKind.found(id, err)
		}
		err = h.svc.Power(r.Context(), vm.ID, action)
		return h.lro(w, r, vm.Location, vm.ID, http.StatusAccepted, nil, err, true)
	}
}

func (h *handlers) listVMs(w http.ResponseWriter, r *http.Request) error {
	return serveList(h, w, r, vmKind, h.svc.ListVMs)
}
