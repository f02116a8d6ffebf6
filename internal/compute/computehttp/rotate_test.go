package computehttp_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/cvault/cvault/internal/compute"
	"github.com/cvault/cvault/internal/demo"
	"github.com/cvault/cvault/internal/release/policy"
)

// hookBox lets a test change the server's rotation hook while it runs.
type hookBox struct{ f atomic.Pointer[func(string)] }

func (h *hookBox) call(step string) {
	if f := h.f.Load(); f != nil {
		(*f)(step)
	}
}
func (h *hookBox) set(f func(string)) { h.f.Store(&f) }

// setupWith runs seed 003's phases 1 and 2 over HTTPS (the demo's steps)
// on a server started with opts and returns the cast with the provider's
// armcompute clients.
func setupWith(t testing.TB, opts demo.EnvOptions) (*demo.CrossTenantSetup, *demo.Compute) {
	t.Helper()
	ctx := context.Background()
	env, stop, err := demo.StartEnv(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	x := demo.NewCrossTenantSetup(env, "westcentralus")
	r := demo.NewRunner(io.Discard)
	if err := x.Phase1(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := x.Phase2(ctx, r); err != nil {
		t.Fatal(err)
	}
	c, err := env.ComputeClients(x.Provider)
	if err != nil {
		t.Fatal(err)
	}
	return x, c
}

var fastPoll = &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond}

func rotateTo(ctx context.Context, c *demo.Compute, rg, des, keyURL string) (*runtime.Poller[armcompute.DiskEncryptionSetsClientUpdateResponse], error) {
	return c.DES.BeginUpdate(ctx, rg, des, armcompute.DiskEncryptionSetUpdate{Properties: &armcompute.DiskEncryptionSetUpdateProperties{
		ActiveKey: &armcompute.KeyForDiskEncryptionSet{KeyURL: to.Ptr(keyURL)}}}, nil)
}

// diskKeyID is the key version wrapping a disk's data key now.
func diskKeyID(t *testing.T, x *demo.CrossTenantSetup, rg, name string) (cur, pending string) {
	t.Helper()
	d, err := x.Env.App.Compute.GetDisk(context.Background(), "/subscriptions/"+x.Provider.Subscription+"/resourceGroups/"+rg+"/providers/Microsoft.Compute/disks/"+name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := x.Env.App.DiskData.Get(context.Background(), d.Properties.UniqueID)
	if err != nil {
		t.Fatal(err)
	}
	return info.KeyID, info.PendingKeyID
}

func newKeyVersion(t *testing.T, x *demo.CrossTenantSetup, name string, params azkeys.CreateKeyParameters) string {
	t.Helper()
	kc, err := x.KeyClient()
	if err != nil {
		t.Fatal(err)
	}
	res, err := kc.CreateKey(context.Background(), name, params, nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(*res.Key.KID)
}

func setKeyVersionEnabled(ctx context.Context, x *demo.CrossTenantSetup, kid string, on bool) error {
	kc, err := x.KeyClient()
	if err != nil {
		return err
	}
	parts := strings.Split(kid, "/")
	_, err = kc.UpdateKey(ctx, parts[len(parts)-2], parts[len(parts)-1], azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(on)}}, nil)
	return err
}

// A key change through armcompute's BeginUpdate re-wraps every disk as a
// job polled to completion; a second rotation and a VM start meanwhile are
// refused; a rotation the vault stops half-way leaves each disk on its old
// or new key, VMs still start, and saving again completes it.
func TestRotationWithArmcompute(t *testing.T) {
	ctx := context.Background()
	var hook hookBox
	x, c := setupWith(t, demo.EnvOptions{DEKCacheTTL: -1, RotationHook: hook.call})
	rg := x.ProviderRG
	des, err := createDES(ctx, c, rg, "rot", x.DESBody())
	if err != nil {
		t.Fatal(err)
	}
	kid1 := *des.Properties.ActiveKey.KeyURL
	const n = 16
	hashes := map[string][32]byte{}
	for i := range n {
		name := fmt.Sprintf("d%02d", i)
		data := make([]byte, 8<<10)
		rand.Read(data)
		dp, err := c.Disks.BeginCreateOrUpdate(ctx, rg, name, armcompute.Disk{Location: to.Ptr(x.Location), Properties: &armcompute.DiskProperties{
			CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionUpload), UploadSizeBytes: to.Ptr(int64(len(data)))},
			Encryption:   &armcompute.Encryption{Type: to.Ptr(armcompute.EncryptionTypeEncryptionAtRestWithCustomerKey), DiskEncryptionSetID: des.ID}}}, nil)
		poll[armcompute.DisksClientCreateOrUpdateResponse](t, dp, err)
		if err := x.Env.WriteDisk(ctx, c, rg, name, data); err != nil {
			t.Fatal(err)
		}
		hashes[name] = sha256.Sum256(data)
	}
	// A running (non-confidential) VM with an OS disk on the set: regular
	// sets rotate while VMs run, as in Azure.
	vp, err := c.VMs.BeginCreateOrUpdate(ctx, rg, "vm1", armcompute.VirtualMachine{Location: to.Ptr(x.Location), Properties: &armcompute.VirtualMachineProperties{
		HardwareProfile: &armcompute.HardwareProfile{VMSize: to.Ptr(armcompute.VirtualMachineSizeTypes("Standard_D2s_v5"))},
		StorageProfile: &armcompute.StorageProfile{OSDisk: &armcompute.OSDisk{CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesFromImage),
			Name: to.Ptr("vm1-os"), ManagedDisk: &armcompute.ManagedDiskParameters{DiskEncryptionSet: &armcompute.DiskEncryptionSetParameters{ID: des.ID}}}}}}, nil)
	poll[armcompute.VirtualMachinesClientCreateOrUpdateResponse](t, vp, err)
	checkAll := func(want string) {
		t.Helper()
		for name, h := range hashes {
			if cur, _ := diskKeyID(t, x, rg, name); cur != want {
				t.Errorf("disk %s on %s, want %s", name, cur, want)
			}
			got, err := x.Env.ReadDisk(ctx, c, rg, name, 8<<10)
			if err != nil || sha256.Sum256(got) != h {
				t.Fatalf("disk %s: read back %v (hash equal %v)", name, err, sha256.Sum256(got) == h)
			}
		}
	}

	t.Run("one rotation at a time; no VM start meanwhile", func(t *testing.T) {
		kid2 := newKeyVersion(t, x, x.KeyName, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr(int32(2048))})
		release := make(chan struct{})
		var once sync.Once
		blocked := make(chan struct{})
		hook.set(func(step string) {
			once.Do(func() { close(blocked) })
			<-release
		})
		p, err := rotateTo(ctx, c, rg, "rot", kid2)
		if err != nil {
			t.Fatal(err)
		}
		<-blocked
		_, err = rotateTo(ctx, c, rg, "rot", kid2)
		wantCode(t, err, compute.CodeRotationInProgress, "in progress")
		mid, err := c.DES.Get(ctx, rg, "rot", nil)
		if err != nil || *mid.Properties.ProvisioningState != "Updating" || *mid.Properties.ActiveKey.KeyURL != kid1 {
			t.Fatalf("DES mid-rotation: %+v %v", mid.Properties, err)
		}
		dp, err := c.VMs.BeginDeallocate(ctx, rg, "vm1", nil)
		poll[armcompute.VirtualMachinesClientDeallocateResponse](t, dp, err)
		_, err = c.VMs.BeginStart(ctx, rg, "vm1", nil)
		wantCode(t, err, "OperationNotAllowed", "being rotated")
		close(release)
		hook.set(func(string) {})
		res, err := p.PollUntilDone(ctx, fastPoll)
		if err != nil {
			t.Fatal(err)
		}
		pr := res.Properties
		if *pr.ActiveKey.KeyURL != kid2 || pr.LastKeyRotationTimestamp == nil || len(pr.PreviousKeys) != 0 || *pr.ProvisioningState != "Succeeded" {
			t.Fatalf("after rotation: active %s, last %v, previous %d, state %s", *pr.ActiveKey.KeyURL, pr.LastKeyRotationTimestamp, len(pr.PreviousKeys), *pr.ProvisioningState)
		}
		if cur, _ := diskKeyID(t, x, rg, "vm1-os"); cur != kid2 {
			t.Errorf("OS disk on %s", cur)
		}
		checkAll(kid2)
		sp, err := c.VMs.BeginStart(ctx, rg, "vm1", nil)
		poll[armcompute.VirtualMachinesClientStartResponse](t, sp, err)
	})

	t.Run("partial rotation, then saving again completes it", func(t *testing.T) {
		cur, err := c.DES.Get(ctx, rg, "rot", nil)
		if err != nil {
			t.Fatal(err)
		}
		kid2 := *cur.Properties.ActiveKey.KeyURL
		kid3 := newKeyVersion(t, x, x.KeyName, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr(int32(2048))})
		// The first half of the disks move; then the new key's vault refuses.
		var tickets, commits atomic.Int32
		var off sync.Once
		hook.set(func(step string) {
			switch step {
			case compute.StepAfterCommit:
				commits.Add(1)
			case compute.StepBeforeUnwrap:
				if tickets.Add(1) <= n/2 {
					return
				}
				for end := time.Now().Add(5 * time.Second); commits.Load() < n/2 && time.Now().Before(end); {
					time.Sleep(5 * time.Millisecond)
				}
				off.Do(func() {
					if err := setKeyVersionEnabled(ctx, x, kid3, false); err != nil {
						t.Error(err)
					}
				})
			}
		})
		p, err := rotateTo(ctx, c, rg, "rot", kid3)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.PollUntilDone(ctx, fastPoll); err == nil || !strings.Contains(err.Error(), "KeyVaultKeyDisabled") {
			t.Fatalf("rotation with the new key disabled half-way: %v", err)
		}
		hook.set(func(string) {})
		mixed, err := c.DES.Get(ctx, rg, "rot", nil)
		if err != nil {
			t.Fatal(err)
		}
		var onNew, onOld int
		for name := range hashes {
			switch k, _ := diskKeyID(t, x, rg, name); k {
			case kid3:
				onNew++
			case kid2:
				onOld++
			default:
				t.Errorf("disk %s on %s", name, k)
			}
		}
		if onNew == 0 || onOld == 0 {
			t.Errorf("not a partial rotation: %d on the new key, %d on the old", onNew, onOld)
		}
		if *mixed.Properties.ActiveKey.KeyURL != kid2 || len(mixed.Properties.PreviousKeys) == 0 || *mixed.Properties.PreviousKeys[0].KeyURL != kid2 {
			t.Errorf("partial DES: active %s previous %v", *mixed.Properties.ActiveKey.KeyURL, mixed.Properties.PreviousKeys)
		}
		// The mixed state is listed per disk in keyRotation.
		var raw struct {
			Properties struct {
				KeyRotation compute.KeyRotation `json:"keyRotation"`
			} `json:"properties"`
		}
		if err := x.Env.ARM(ctx, x.Provider.Cred, "GET", *des.ID+"?api-version=2023-04-02", nil, &raw); err != nil {
			t.Fatal(err)
		}
		kr := raw.Properties.KeyRotation
		if kr.State != compute.RotationFailed || kr.DisksRotated == 0 || kr.DisksRotated >= kr.DisksTotal || len(kr.DisksOnPreviousKeys) == 0 || kr.Error == nil {
			t.Errorf("keyRotation = %+v", kr)
		}
		// Mixed keys: the VM still starts (each disk unwraps under its own version).
		pp, err := c.VMs.BeginDeallocate(ctx, rg, "vm1", nil)
		poll[armcompute.VirtualMachinesClientDeallocateResponse](t, pp, err)
		sp, err := c.VMs.BeginStart(ctx, rg, "vm1", nil)
		poll[armcompute.VirtualMachinesClientStartResponse](t, sp, err)

		if err := setKeyVersionEnabled(ctx, x, kid3, true); err != nil {
			t.Fatal(err)
		}
		p, err = rotateTo(ctx, c, rg, "rot", kid3)
		res := poll[armcompute.DiskEncryptionSetsClientUpdateResponse](t, p, err)
		if *res.Properties.ActiveKey.KeyURL != kid3 || len(res.Properties.PreviousKeys) != 0 {
			t.Fatalf("after retry: %s %v", *res.Properties.ActiveKey.KeyURL, res.Properties.PreviousKeys)
		}
		checkAll(kid3)
	})

	t.Run("ephemeral OS disk refuses rotation", func(t *testing.T) {
		vp, err := c.VMs.BeginCreateOrUpdate(ctx, rg, "eph", armcompute.VirtualMachine{Location: to.Ptr(x.Location), Properties: &armcompute.VirtualMachineProperties{
			HardwareProfile: &armcompute.HardwareProfile{VMSize: to.Ptr(armcompute.VirtualMachineSizeTypes("Standard_D2s_v5"))},
			StorageProfile: &armcompute.StorageProfile{OSDisk: &armcompute.OSDisk{CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesFromImage),
				DiffDiskSettings: &armcompute.DiffDiskSettings{Option: to.Ptr(armcompute.DiffDiskOptionsLocal)},
				ManagedDisk:      &armcompute.ManagedDiskParameters{DiskEncryptionSet: &armcompute.DiskEncryptionSetParameters{ID: des.ID}}}}}}, nil)
		poll[armcompute.VirtualMachinesClientCreateOrUpdateResponse](t, vp, err)
		kid4 := newKeyVersion(t, x, x.KeyName, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr(int32(2048))})
		_, err = rotateTo(ctx, c, rg, "rot", kid4)
		wantCode(t, err, "OperationNotAllowed", "separate disk encryption set")
		dp, err := c.VMs.BeginDelete(ctx, rg, "eph", nil)
		poll[armcompute.VirtualMachinesClientDeleteResponse](t, dp, err)
	})

	t.Run("automatic rotation to the latest version", func(t *testing.T) {
		up, err := c.DES.BeginUpdate(ctx, rg, "rot", armcompute.DiskEncryptionSetUpdate{Properties: &armcompute.DiskEncryptionSetUpdateProperties{
			RotationToLatestKeyVersionEnabled: to.Ptr(true)}}, nil)
		poll[armcompute.DiskEncryptionSetsClientUpdateResponse](t, up, err)
		latest := newKeyVersion(t, x, x.KeyName, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr(int32(2048))})
		if err := x.Env.App.Compute.AutoRotate(ctx); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			d, err := c.DES.Get(ctx, rg, "rot", nil)
			if err != nil {
				t.Fatal(err)
			}
			if *d.Properties.ActiveKey.KeyURL == latest && *d.Properties.ProvisioningState == "Succeeded" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("auto-rotation did not finish: %s %s", *d.Properties.ActiveKey.KeyURL, *d.Properties.ProvisioningState)
			}
			time.Sleep(100 * time.Millisecond)
		}
		checkAll(latest)
	})

	t.Run("failed automatic rotation sets autoKeyRotationError", func(t *testing.T) {
		before, err := c.DES.Get(ctx, rg, "rot", nil)
		if err != nil {
			t.Fatal(err)
		}
		// The latest version is disabled: the automatic rotation cannot use it.
		latest := newKeyVersion(t, x, x.KeyName, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr(int32(2048))})
		if err := setKeyVersionEnabled(ctx, x, latest, false); err != nil {
			t.Fatal(err)
		}
		if err := x.Env.App.Compute.AutoRotate(ctx); err == nil {
			t.Fatal("AutoRotate to a disabled version succeeded")
		}
		d, err := c.DES.Get(ctx, rg, "rot", nil)
		if err != nil {
			t.Fatal(err)
		}
		ae := d.Properties.AutoKeyRotationError
		if ae == nil || ae.Code == nil || *ae.Code != compute.CodeKeyVaultKeyDisabled || *d.Properties.ActiveKey.KeyURL != *before.Properties.ActiveKey.KeyURL {
			t.Fatalf("after a failed automatic rotation: autoKeyRotationError %+v, active %s", ae, *d.Properties.ActiveKey.KeyURL)
		}
		// As in Azure, no further attempt while the error stands, even
		// once the cause is gone.
		if err := setKeyVersionEnabled(ctx, x, latest, true); err != nil {
			t.Fatal(err)
		}
		if err := x.Env.App.Compute.AutoRotate(ctx); err != nil {
			t.Fatal(err)
		}
		if d, err = c.DES.Get(ctx, rg, "rot", nil); err != nil || d.Properties.AutoKeyRotationError == nil || *d.Properties.ActiveKey.KeyURL == latest {
			t.Fatalf("retried while autoKeyRotationError was set: %v %+v", err, d.Properties)
		}
		// The owner's save clears it; the next pass rotates.
		up, err := c.DES.BeginUpdate(ctx, rg, "rot", armcompute.DiskEncryptionSetUpdate{Properties: &armcompute.DiskEncryptionSetUpdateProperties{
			RotationToLatestKeyVersionEnabled: to.Ptr(true)}}, nil)
		res := poll[armcompute.DiskEncryptionSetsClientUpdateResponse](t, up, err)
		if res.Properties.AutoKeyRotationError != nil {
			t.Fatalf("save kept autoKeyRotationError %+v", res.Properties.AutoKeyRotationError)
		}
		if err := x.Env.App.Compute.AutoRotate(ctx); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			if d, err = c.DES.Get(ctx, rg, "rot", nil); err != nil {
				t.Fatal(err)
			}
			if *d.Properties.ActiveKey.KeyURL == latest && *d.Properties.ProvisioningState == "Succeeded" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("auto-rotation after the fix did not finish: %s", *d.Properties.ActiveKey.KeyURL)
			}
			time.Sleep(100 * time.Millisecond)
		}
		checkAll(latest)
	})
}

// Seed 004 on a confidential set: refused while any VM runs (naming them),
// automatic rotation refused, and with all stopped every OS disk moves.
func TestConfidentialRotationStopAll(t *testing.T) {
	ctx := context.Background()
	x, c := setupWith(t, demo.EnvOptions{DEKCacheTTL: -1})
	rg := x.ProviderRG
	hsm := azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeySize: to.Ptr(int32(3072)),
		KeyAttributes: &azkeys.KeyAttributes{Exportable: to.Ptr(true)},
		ReleasePolicy: &azkeys.KeyReleasePolicy{EncodedPolicy: policy.CVMDefault(x.Env.URL + "/attestation/default"), Immutable: to.Ptr(true)}}
	kid1 := newKeyVersion(t, x, "cvmk", hsm)
	if err := x.GrantOrchestrator(ctx); err != nil {
		t.Fatal(err)
	}
	body := x.DESBody()
	body.Properties.EncryptionType = to.Ptr(armcompute.DiskEncryptionSetTypeConfidentialVMEncryptedWithCustomerKey)
	body.Properties.ActiveKey.KeyURL = to.Ptr(kid1)
	des, err := createDES(ctx, c, rg, "cvmdes", body)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"cvm-a", "cvm-b"} {
		vm := cvm("Standard_DC2as_v5", "DiskWithVMGuestState")
		vm.Properties.StorageProfile.OSDisk.Name = to.Ptr(name + "-os")
		vm.Properties.StorageProfile.OSDisk.ManagedDisk.SecurityProfile.DiskEncryptionSet = &armcompute.DiskEncryptionSetParameters{ID: des.ID}
		vp, err := c.VMs.BeginCreateOrUpdate(ctx, rg, name, vm, nil)
		poll[armcompute.VirtualMachinesClientCreateOrUpdateResponse](t, vp, err)
	}
	up, err := c.DES.BeginUpdate(ctx, rg, "cvmdes", armcompute.DiskEncryptionSetUpdate{Properties: &armcompute.DiskEncryptionSetUpdateProperties{
		RotationToLatestKeyVersionEnabled: to.Ptr(true)}}, nil)
	if err == nil {
		_, err = up.PollUntilDone(ctx, fastPoll)
	}
	wantCode(t, err, "InvalidParameter", "Automatic key rotation is not supported")

	kid2 := newKeyVersion(t, x, "cvmk", hsm)
	_, err = rotateTo(ctx, c, rg, "cvmdes", kid2)
	wantCode(t, err, "OperationNotAllowed", "cvm-a, cvm-b are running")
	dp, err := c.VMs.BeginDeallocate(ctx, rg, "cvm-a", nil)
	poll[armcompute.VirtualMachinesClientDeallocateResponse](t, dp, err)
	_, err = rotateTo(ctx, c, rg, "cvmdes", kid2)
	wantCode(t, err, "OperationNotAllowed", "cvm-b are running")
	for _, name := range []string{"cvm-a", "cvm-b"} {
		if k, _ := diskKeyID(t, x, rg, name+"-os"); k != kid1 {
			t.Errorf("%s got a key while the rotation was refused: %s", name, k)
		}
	}
	pp, err := c.VMs.BeginPowerOff(ctx, rg, "cvm-b", nil) // stopped (not deallocated) is enough
	poll[armcompute.VirtualMachinesClientPowerOffResponse](t, pp, err)
	p, err := rotateTo(ctx, c, rg, "cvmdes", kid2)
	res := poll[armcompute.DiskEncryptionSetsClientUpdateResponse](t, p, err)
	if *res.Properties.ActiveKey.KeyURL != kid2 {
		t.Fatalf("active key %s", *res.Properties.ActiveKey.KeyURL)
	}
	for _, name := range []string{"cvm-a", "cvm-b"} {
		if k, _ := diskKeyID(t, x, rg, name+"-os"); k != kid2 {
			t.Errorf("%s OS disk on %s", name, k)
		}
		sp, err := c.VMs.BeginStart(ctx, rg, name, nil)
		poll[armcompute.VirtualMachinesClientStartResponse](t, sp, err)
	}
	if _, err := c.DES.Get(ctx, rg, "cvmdes", nil); err != nil {
		t.Fatal(err)
	}
	_ = http.StatusOK
}
