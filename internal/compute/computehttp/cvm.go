package computehttp

import (
	"net/http"

	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/compute"
)

// identitySecret issues (or rotates: the previous one stops working) the
// VM's managed-identity secret and returns it once. Azure hands the guest
// its identity through IMDS; cvault's guest presents this secret to the
// managed-identity endpoint (cvault guest imds-proxy --secret-file), the
// same shape as a user-assigned identity's POST …/secret.
func (h *handlers) identitySecret(w http.ResponseWriter, r *http.Request) error {
	id, err := h.authorized(r, vmKind, "identitySecret/action")
	if err != nil {
		return err
	}
	secret, err := h.svc.IssueVMIdentitySecret(r.Context(), id.String())
	if err != nil {
		return mapErr(vmKind.found(id, err))
	}
	w.Header().Set("Cache-Control", "no-store")
	azure.WriteJSON(w, http.StatusOK, map[string]string{"secret": secret})
	return nil
}

// releaseDiskKey is the guest's releaseDiskEncryptionKey: the caller is
// the VM's own managed identity (checked by the service, which is the
// authorization: no role grants it), the Orchestrator releases.
func (h *handlers) releaseDiskKey(w http.ResponseWriter, r *http.Request) error {
	id, err := vmKind.resourceID(r)
	if err != nil {
		return err
	}
	p, _ := authn.FromContext(r.Context())
	var in compute.DiskKeyRequest
	if err := decode(r, &in); err != nil {
		return err
	}
	out, err := h.svc.ReleaseDiskEncryptionKey(r.Context(), p, id.String(), in)
	if err != nil {
		return mapErr(err)
	}
	w.Header().Set("Cache-Control", "no-store")
	azure.WriteJSON(w, http.StatusOK, out)
	return nil
}
