package compute

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/identity"
)

// Confidential-VM customer-key disks (ConfidentialVM_DiskEncryptedWithCustomerKey,
// seed 002): the DES key is an exportable RSA-HSM key with a release
// policy; the disk's data key is wrapped by it (RSA-OAEP-256) and never
// unwrapped here. Azure requires the "Confidential VM Orchestrator" first-party
// principal of the key's tenant to hold get + release on the key: the
// platform releases the key as the Orchestrator, through Secure Key Release,
// to the attested VM's TEE key, so what it handles is only ever wrapped to
// the guest. cvault checks both permissions over HTTPS when such a DES or
// disk is created (release is probed with an empty target: the vault checks
// the permission before the request body), and releases through the VM's
// releaseDiskEncryptionKey action.

// orchestratorCredential is the Orchestrator's token in the tenant the
// vault's challenge names (azkeys passes it as TenantID).
type orchestratorCredential struct{ s *Service }

func (c orchestratorCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if len(opts.Scopes) != 1 || opts.TenantID == "" {
		return azcore.AccessToken{}, errors.New("compute: the Orchestrator's token needs one scope and the vault's tenant")
	}
	tk, err := c.s.cfg.Identity.FirstPartyToken(ctx, opts.TenantID, identity.ConfidentialVMOrchestratorAppID, opts.Scopes[0])
	if err != nil {
		return azcore.AccessToken{}, err
	}
	return azcore.AccessToken{Token: tk.AccessToken, ExpiresOn: tk.ExpiresOn}, nil
}

// orchestratorClient is a fresh azkeys client acting as the Orchestrator on
// vault (fresh: the checks must see the vault's access rules as they are now).
func (s *Service) orchestratorClient(vault string) (*azkeys.Client, error) {
	return azkeys.NewClient(vault, orchestratorCredential{s}, &azkeys.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: s.cfg.HTTPClient, Retry: policy.RetryOptions{MaxRetries: -1}}})
}

// orchestratorError explains a missing Orchestrator permission.
func orchestratorError(ref keyRef, perm string, err error) *KeyError {
	return &KeyError{Code: CodeKeyVaultAccessForbidden, Err: err, Message: fmt.Sprintf(
		"The Confidential VM Orchestrator service principal (appId %s) of the key vault's tenant does not have the '%s' permission on key %s: "+
			"grant it get and release (access policy or Key Vault Crypto Service Release User) before creating confidential disks with this key.",
		identity.ConfidentialVMOrchestratorAppID, perm, ref)}
}

// checkOrchestrator proves the Orchestrator may get and release the key.
func (s *Service) checkOrchestrator(ctx context.Context, ref keyRef) *KeyError {
	c, err := s.orchestratorClient(ref.vault)
	if err != nil {
		return &KeyError{Code: CodeKeyVaultAccessForbidden, Message: "The key vault client could not be built.", Err: err}
	}
	if _, err := c.GetKey(ctx, ref.name, ref.version, nil); err != nil {
		var re *azcore.ResponseError
		if errors.As(err, &re) && (re.StatusCode == http.StatusForbidden || re.StatusCode == http.StatusUnauthorized) {
			return orchestratorError(ref, "get", err)
		}
		return classify(err, ref, "get")
	}
	empty := ""
	_, err = c.Release(ctx, ref.name, ref.version, azkeys.ReleaseParameters{TargetAttestationToken: &empty}, nil)
	var re *azcore.ResponseError
	switch {
	case err == nil:
		return &KeyError{Code: CodeKeyVaultAccessForbidden, Message: fmt.Sprintf("Key vault %s released key %s without an attestation token.", ref.vault, ref)}
	case errors.As(err, &re) && re.StatusCode == http.StatusBadRequest:
		return nil // permitted: refused only for want of a target
	case errors.As(err, &re) && (re.StatusCode == http.StatusForbidden || re.StatusCode == http.StatusUnauthorized):
		return orchestratorError(ref, "release", err)
	}
	return classify(err, ref, "release")
}

// DiskKeyRequest is the body of releaseDiskEncryptionKey: the guest's
// attestation token (its TEE key in x-ms-runtime.keys) and Key Vault's
// release options.
type DiskKeyRequest struct {
	Target string `json:"target"`
	Enc    string `json:"enc,omitempty"`
	Nonce  string `json:"nonce,omitempty"`
}

// DiskKeyRelease answers releaseDiskEncryptionKey: Key Vault's release JWS
// (the DES key wrapped to the guest's TEE key), the key released, and the
// OS disk's data key as stored (wrapped by that key).
type DiskKeyRelease struct {
	Value  string         `json:"value"`
	KeyURL string         `json:"keyUrl"`
	OSDisk DiskWrappedKey `json:"osDisk"`
}

// DiskWrappedKey is a disk's data key as stored: wrapped by KeyID.
type DiskWrappedKey struct {
	ID         string `json:"id"`
	UniqueID   string `json:"uniqueId"`
	KeyID      string `json:"keyId"`
	WrappedKey []byte `json:"wrappedKey"`
}

// ReleaseDiskEncryptionKey releases the key of a running confidential VM's
// ConfidentialVM_DiskEncryptedWithCustomerKey OS disk to its guest: the
// caller must be the VM's own managed identity (the guest), and the
// Orchestrator calls the vault's release with the guest's attestation
// token, so the vault's release policy judges the guest's hardware and the
// key comes back wrapped to the guest's TEE key.
func (s *Service) ReleaseDiskEncryptionKey(ctx context.Context, caller *authn.Principal, vmID string, req DiskKeyRequest) (DiskKeyRelease, error) {
	var rec vmRecord
	_, err := getJSON(ctx, s.cfg.Store, KindVM, resKey(vmID), &rec)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return DiskKeyRelease{}, err
	}
	// Only the VM itself may ask; others learn nothing, not even existence.
	if err != nil || caller == nil || !vmIdentityIs(&rec.VM, caller) {
		oid := ""
		if caller != nil {
			oid = caller.ObjectID
		}
		return DiskKeyRelease{}, azure.Errorf(http.StatusForbidden, "AuthorizationFailed",
			"The client '%s' is not the managed identity of virtual machine '%s': only the confidential VM's own guest may release its disk encryption key.", oid, lastSegment(vmID))
	}
	vm := rec.VM
	if !isConfidential(&vm) {
		return DiskKeyRelease{}, badRequest("OperationNotAllowed", "VM %s is not a ConfidentialVM.", vm.Name)
	}
	if rec.PowerState != PowerRunning {
		return DiskKeyRelease{}, conflict("OperationNotAllowed", "VM %s is %s: its disk key is released only to the running guest.", vm.Name, rec.PowerState)
	}
	if strings.TrimSpace(req.Target) == "" {
		return DiskKeyRelease{}, badRequest("InvalidParameter", "Required parameter 'target' (the guest's attestation token) is missing.")
	}
	sp := vm.Properties.StorageProfile
	if sp == nil || sp.OSDisk == nil || sp.OSDisk.ManagedDisk == nil || sp.OSDisk.ManagedDisk.ID == "" {
		return DiskKeyRelease{}, badRequest("OperationNotAllowed", "VM %s has no managed OS disk.", vm.Name)
	}
	d, err := s.GetDisk(ctx, sp.OSDisk.ManagedDisk.ID)
	if err != nil {
		return DiskKeyRelease{}, err
	}
	if d.Properties.SecurityProfile == nil || d.Properties.SecurityProfile.SecurityType != SecurityCVMDiskCustomerKey {
		return DiskKeyRelease{}, badRequest("OperationNotAllowed", "The OS disk %s of VM %s is not a %s disk: its key is not released to the guest.", d.Name, vm.Name, SecurityCVMDiskCustomerKey)
	}
	wk, err := s.cfg.DiskData.WrappedKey(ctx, d.Properties.UniqueID)
	if err != nil {
		return DiskKeyRelease{}, err
	}
	ref, ok := parseKeyURL(wk.KeyID)
	if !ok {
		return DiskKeyRelease{}, fmt.Errorf("compute: disk %s: stored key id is not a key URL", d.ID)
	}
	c, err := s.orchestratorClient(ref.vault)
	if err != nil {
		return DiskKeyRelease{}, err
	}
	params := azkeys.ReleaseParameters{TargetAttestationToken: &req.Target}
	if req.Enc != "" {
		enc := azkeys.KeyEncryptionAlgorithm(req.Enc)
		params.Algorithm = &enc
	}
	if req.Nonce != "" {
		params.Nonce = &req.Nonce
	}
	res, err := c.Release(ctx, ref.name, ref.version, params, nil)
	if err != nil {
		return DiskKeyRelease{}, vaultRefusal(err, ref)
	}
	if res.Value == nil {
		return DiskKeyRelease{}, fmt.Errorf("compute: key vault %s answered the release without a value", ref.vault)
	}
	return DiskKeyRelease{Value: *res.Value, KeyURL: ref.String(),
		OSDisk: DiskWrappedKey{ID: d.ID, UniqueID: d.Properties.UniqueID, KeyID: wk.KeyID, WrappedKey: wk.Wrapped}}, nil
}

// vmIdentityIs reports whether p is one of the VM's managed identities.
func vmIdentityIs(vm *VirtualMachine, p *authn.Principal) bool {
	if vm.Identity == nil || p.ObjectID == "" {
		return false
	}
	if strings.EqualFold(vm.Identity.PrincipalID, p.ObjectID) {
		return true
	}
	for _, u := range vm.Identity.UserAssignedIdentities {
		if u != nil && strings.EqualFold(u.PrincipalID, p.ObjectID) {
			return true
		}
	}
	return false
}

// vaultRefusal passes the vault's refusal of a release on to the guest
// with the vault's status and codes (the release policy's explanation
// included), naming the Orchestrator when it lacks the permission.
func vaultRefusal(err error, ref keyRef) error {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return fmt.Errorf("compute: release %s: %w", ref, err)
	}
	var body struct {
		Error struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			InnerError *struct {
				Code string `json:"code"`
			} `json:"innererror"`
		} `json:"error"`
	}
	if re.RawResponse != nil && re.RawResponse.Body != nil {
		_ = json.NewDecoder(re.RawResponse.Body).Decode(&body)
	}
	code, msg := body.Error.Code, body.Error.Message
	if code == "" {
		code = re.ErrorCode
	}
	inner := ""
	if body.Error.InnerError != nil {
		inner = body.Error.InnerError.Code
	}
	if inner == "ForbiddenByPolicy" || inner == "ForbiddenByRbac" {
		return azure.Errorf(http.StatusForbidden, CodeKeyVaultAccessForbidden, "%s", orchestratorError(ref, "release", nil).Message).WithInner(inner).Wrap(err)
	}
	status := re.StatusCode
	if status < 400 || status > 499 {
		status = http.StatusBadGateway
	}
	ae := azure.Errorf(status, code, "Key vault %s refused the release of %s: %s", ref.vault, ref, msg).Wrap(err)
	if inner != "" {
		ae = ae.WithInner(inner)
	}
	return ae
}
