package demo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/cvault/cvault/internal/authz"
	"github.com/cvault/cvault/internal/compute"
	"github.com/cvault/cvault/internal/identity"
	"github.com/cvault/cvault/internal/release/policy"
)

// Rotate step names, in order (after seed 003's setup phases).
var rotateSteps = []string{"provider-app", "provider-uami", "provider-fic", "customer", "customer-sp", "customer-vault",
	"customer-key", "customer-grant", "cvm-key", "cvm-des", "three-cvms", "new-version", "refused-running", "no-auto-rotation",
	"all-stopped", "partial", "mixed-start", "retry", "start-all", "disks-verified"}

func rotateScenario() Scenario {
	return Scenario{Name: "rotate", Title: "Rotating the customer-managed key of confidential VMs (seed 004)",
		Steps: rotateSteps, Run: func(ctx context.Context, cfg Config, r *Runner) error {
			var hook rotationHook
			env, stop, err := StartEnv(ctx, EnvOptions{Logs: cfg.Logs, RotationHook: hook.call})
			if err != nil {
				return err
			}
			defer stop()
			return Rotate(ctx, env, r, &hook)
		}}
}

// rotationHook lets the scenario act at a step of the server's re-wrap.
type rotationHook struct{ f atomic.Pointer[func(string)] }

func (h *rotationHook) call(step string) {
	if f := h.f.Load(); f != nil {
		(*f)(step)
	}
}

func (h *rotationHook) set(f func(string)) {
	if f == nil {
		h.f.Store(nil)
		return
	}
	h.f.Store(&f)
}

var demoPoll = &runtime.PollUntilDoneOptions{Frequency: time.Second} // azcore refuses less outside tests

// Rotate replays seed 004: one confidential DES, three confidential VMs.
func Rotate(ctx context.Context, env *Env, r *Runner, hook *rotationHook) error {
	x, c, err := setUpCrossTenant(ctx, env, r, "westeurope")
	if err != nil {
		return err
	}
	kc, err := x.KeyClient()
	if err != nil {
		return err
	}
	rg, desName, keyName := x.ProviderRG, "cvm-des", "cvm-cmk"
	vms := []string{"cvm-1", "cvm-2", "cvm-3"}
	hsm := azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeySize: to.Ptr(int32(3072)),
		KeyAttributes: &azkeys.KeyAttributes{Exportable: to.Ptr(true)},
		ReleasePolicy: &azkeys.KeyReleasePolicy{EncodedPolicy: policy.CVMDefault(env.URL + "/attestation/default"), Immutable: to.Ptr(true)}}
	newVersion := func() (string, error) {
		res, err := kc.CreateKey(ctx, keyName, hsm, nil)
		if err != nil {
			return "", err
		}
		return string(*res.Key.KID), nil
	}
	rotate := func(kid string) (*runtime.Poller[armcompute.DiskEncryptionSetsClientUpdateResponse], error) {
		return c.DES.BeginUpdate(ctx, rg, desName, armcompute.DiskEncryptionSetUpdate{Properties: &armcompute.DiskEncryptionSetUpdateProperties{
			ActiveKey: &armcompute.KeyForDiskEncryptionSet{KeyURL: to.Ptr(kid)}}}, nil)
	}
	power := func(vm string, on bool) error {
		if on {
			p, err := c.VMs.BeginStart(ctx, rg, vm, nil)
			if err == nil {
				_, err = p.PollUntilDone(ctx, demoPoll)
			}
			return err
		}
		p, err := c.VMs.BeginDeallocate(ctx, rg, vm, nil)
		if err == nil {
			_, err = p.PollUntilDone(ctx, demoPoll)
		}
		return err
	}
	var desID, kid1, kid2, kid3 string
	if err := step(r, "cvm-key", "customer creates an exportable RSA-HSM key with the confidential-VM release policy", func() (string, error) {
		kid, err := newVersion()
		kid1 = kid
		if err != nil {
			return "", err
		}
		return "version " + lastSeg(kid) + "; the Confidential VM Orchestrator may get and release it", x.GrantOrchestrator(ctx)
	}); err != nil {
		return err
	}
	if err := step(r, "cvm-des", "provider creates a ConfidentialVmEncryptedWithCustomerKey disk encryption set", func() (string, error) {
		body := x.DESBody()
		body.Properties.EncryptionType = to.Ptr(armcompute.DiskEncryptionSetTypeConfidentialVMEncryptedWithCustomerKey)
		body.Properties.ActiveKey.KeyURL = to.Ptr(kid1)
		p, err := c.DES.BeginCreateOrUpdate(ctx, rg, desName, body, nil)
		if err != nil {
			return "", err
		}
		res, err := p.PollUntilDone(ctx, demoPoll)
		if err != nil {
			return "", err
		}
		desID = *res.ID
		return desName + " on key version " + lastSeg(kid1), nil
	}); err != nil {
		return err
	}
	if err := step(r, "three-cvms", "three confidential VMs whose OS disks use the set", func() (string, error) {
		for _, name := range vms {
			vm := armcompute.VirtualMachine{Location: to.Ptr(x.Location), Properties: &armcompute.VirtualMachineProperties{
				HardwareProfile: &armcompute.HardwareProfile{VMSize: to.Ptr(armcompute.VirtualMachineSizeTypes("Standard_DC2as_v5"))},
				SecurityProfile: &armcompute.SecurityProfile{SecurityType: to.Ptr(armcompute.SecurityTypesConfidentialVM),
					UefiSettings: &armcompute.UefiSettings{SecureBootEnabled: to.Ptr(true), VTpmEnabled: to.Ptr(true)}},
				StorageProfile: &armcompute.StorageProfile{OSDisk: &armcompute.OSDisk{CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesFromImage),
					Name: to.Ptr(name + "-os"), ManagedDisk: &armcompute.ManagedDiskParameters{SecurityProfile: &armcompute.VMDiskSecurityProfile{
						SecurityEncryptionType: to.Ptr(armcompute.SecurityEncryptionTypesDiskWithVMGuestState),
						DiskEncryptionSet:      &armcompute.DiskEncryptionSetParameters{ID: to.Ptr(desID)}}}}}}}
			p, err := c.VMs.BeginCreateOrUpdate(ctx, rg, name, vm, nil)
			if err != nil {
				return "", err
			}
			if _, err := p.PollUntilDone(ctx, demoPoll); err != nil {
				return "", err
			}
		}
		return strings.Join(vms, ", ") + " running", nil
	}); err != nil {
		return err
	}
	if err := step(r, "new-version", "customer creates a new version of the key", func() (string, error) {
		kid, err := newVersion()
		kid2 = kid
		return "version " + lastSeg(kid), err
	}); err != nil {
		return err
	}
	if err := step(r, "refused-running", "two VMs stopped, one running: the key change is refused and no VM gets the new key", func() (string, error) {
		for _, vm := range vms[:2] {
			if err := power(vm, false); err != nil {
				return "", err
			}
		}
		_, rerr := rotate(kid2)
		var re *azcore.ResponseError
		if !errors.As(rerr, &re) || re.StatusCode != 409 || !strings.Contains(rerr.Error(), "cvm-3") {
			return "", fmt.Errorf("want 409 naming cvm-3, got %v", rerr)
		}
		des, err := c.DES.Get(ctx, rg, desName, nil)
		if err != nil || *des.Properties.ActiveKey.KeyURL != kid1 {
			return "", fmt.Errorf("the DES moved: %v", err)
		}
		return "409 " + re.ErrorCode + ": " + firstLine(rerr), nil
	}); err != nil {
		return err
	}
	if err := step(r, "no-auto-rotation", "automatic rotation is refused for confidential VMs", func() (string, error) {
		p, err := c.DES.BeginUpdate(ctx, rg, desName, armcompute.DiskEncryptionSetUpdate{Properties: &armcompute.DiskEncryptionSetUpdateProperties{
			RotationToLatestKeyVersionEnabled: to.Ptr(true)}}, nil)
		if err == nil {
			_, err = p.PollUntilDone(ctx, demoPoll)
		}
		var re *azcore.ResponseError
		if !errors.As(err, &re) || re.StatusCode != 400 {
			return "", fmt.Errorf("want 400, got %v", err)
		}
		return "400 " + re.ErrorCode, nil
	}); err != nil {
		return err
	}
	if err := step(r, "all-stopped", "all three stopped: saving the set re-wraps every disk's key (long-running operation)", func() (string, error) {
		if err := power(vms[2], false); err != nil {
			return "", err
		}
		p, err := rotate(kid2)
		if err != nil {
			return "", err
		}
		res, err := p.PollUntilDone(ctx, demoPoll)
		if err != nil {
			return "", err
		}
		if *res.Properties.ActiveKey.KeyURL != kid2 || res.Properties.LastKeyRotationTimestamp == nil {
			return "", errors.New("the DES is not on the new version")
		}
		return "activeKey → " + lastSeg(kid2) + ", lastKeyRotationTimestamp " + res.Properties.LastKeyRotationTimestamp.Format(time.RFC3339), nil
	}); err != nil {
		return err
	}
	if err := step(r, "partial", "another version; its vault refuses half-way: a partial rotation, shown on the set", func() (string, error) {
		kid, err := newVersion()
		if err != nil {
			return "", err
		}
		kid3 = kid
		// After the first disk has moved, the customer switches the new
		// version off "for a moment".
		var tickets, commits atomic.Int32
		var off sync.Once
		hook.set(func(s string) {
			switch s {
			case compute.StepAfterCommit:
				commits.Add(1)
			case compute.StepBeforeUnwrap:
				if tickets.Add(1) == 1 {
					return
				}
				for end := time.Now().Add(5 * time.Second); commits.Load() < 1 && time.Now().Before(end); {
					time.Sleep(5 * time.Millisecond)
				}
				off.Do(func() { _ = setVersion(ctx, kc, kid3, false) })
			}
		})
		defer hook.set(nil)
		p, err := rotate(kid3)
		if err != nil {
			return "", err
		}
		if _, err := p.PollUntilDone(ctx, demoPoll); err == nil {
			return "", errors.New("the rotation did not fail")
		}
		var raw struct {
			Properties struct {
				ActiveKey    compute.KeyForDES   `json:"activeKey"`
				PreviousKeys []compute.KeyForDES `json:"previousKeys"`
				KeyRotation  compute.KeyRotation `json:"keyRotation"`
			} `json:"properties"`
		}
		if err := env.ARM(ctx, x.Provider.Cred, "GET", desID+"?api-version=2023-04-02", nil, &raw); err != nil {
			return "", err
		}
		kr := raw.Properties.KeyRotation
		if kr.State != compute.RotationFailed || kr.DisksRotated == 0 || kr.DisksRotated == kr.DisksTotal || raw.Properties.ActiveKey.KeyURL != kid2 {
			return "", fmt.Errorf("not a partial rotation: %+v", kr)
		}
		prev := make([]string, len(raw.Properties.PreviousKeys))
		for i, k := range raw.Properties.PreviousKeys {
			prev[i] = lastSeg(k.KeyURL)
		}
		return fmt.Sprintf("%d of %d disks on %s, still on previous keys: %s (previousKeys %s; activeKey stays %s; %s)",
			kr.DisksRotated, kr.DisksTotal, lastSeg(kid3), strings.Join(kr.DisksOnPreviousKeys, ", "), strings.Join(prev, ","), lastSeg(kid2), kr.Error.Code), nil
	}); err != nil {
		return err
	}
	if err := step(r, "mixed-start", "VMs start while their disks are on different key versions", func() (string, error) {
		for _, vm := range vms {
			if err := power(vm, true); err != nil {
				return "", err
			}
		}
		for _, vm := range vms {
			if err := power(vm, false); err != nil {
				return "", err
			}
		}
		return "started and stopped again", nil
	}); err != nil {
		return err
	}
	if err := step(r, "retry", "the version is back; saving the set again completes the rotation", func() (string, error) {
		if err := setVersion(ctx, kc, kid3, true); err != nil {
			return "", err
		}
		p, err := rotate(kid3)
		if err != nil {
			return "", err
		}
		res, err := p.PollUntilDone(ctx, demoPoll)
		if err != nil {
			return "", err
		}
		if *res.Properties.ActiveKey.KeyURL != kid3 || len(res.Properties.PreviousKeys) != 0 {
			return "", errors.New("the DES is not on the new version")
		}
		return "activeKey → " + lastSeg(kid3) + ", previousKeys []", nil
	}); err != nil {
		return err
	}
	if err := step(r, "start-all", "every VM starts", func() (string, error) {
		for _, vm := range vms {
			if err := power(vm, true); err != nil {
				return "", err
			}
		}
		return strings.Join(vms, ", ") + " running", nil
	}); err != nil {
		return err
	}
	return step(r, "disks-verified", "every disk's data key opens under its recorded key version", func() (string, error) {
		on, err := env.App.Compute.VerifyDisks(ctx, desID)
		if err != nil {
			return "", err
		}
		var parts []string
		for k, n := range on {
			if k != kid3 {
				return "", fmt.Errorf("%d disk(s) on %s", n, k)
			}
			parts = append(parts, fmt.Sprintf("%d disks on %s", n, lastSeg(k)))
		}
		sort.Strings(parts)
		return strings.Join(parts, ", ") + " (check values match)", nil
	})
}

func setVersion(ctx context.Context, kc *azkeys.Client, kid string, on bool) error {
	parts := strings.Split(kid, "/")
	_, err := kc.UpdateKey(ctx, parts[len(parts)-2], parts[len(parts)-1], azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(on)}}, nil)
	return err
}

// firstLine is the message line of an Azure error (their text is long).
func firstLine(err error) string {
	s := err.Error()
	if i := strings.Index(s, "The key of"); i >= 0 {
		s = s[i:]
	}
	if i := strings.Index(s, "\n"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimRight(strings.TrimSpace(s), `"}`)
}

// GrantOrchestrator gives the customer tenant's Confidential VM
// Orchestrator get and release on the vault's keys, which a
// confidential disk encryption set needs (wire §5.5).
func (x *CrossTenantSetup) GrantOrchestrator(ctx context.Context) error {
	var sp struct {
		ID string `json:"id"`
	}
	if err := x.Env.Graph(ctx, x.Customer.Cred, "GET", "/servicePrincipals/"+identity.ConfidentialVMOrchestratorAppID, nil, &sp); err != nil {
		return err
	}
	// Release User holds release only; get comes with the encryption role.
	if err := x.Assign(ctx, x.Customer, x.VaultID, authz.RoleKeyVaultCryptoServiceRelease, sp.ID); err != nil {
		return err
	}
	return x.Assign(ctx, x.Customer, x.VaultID, authz.RoleKeyVaultCryptoServiceEncryption, sp.ID)
}
