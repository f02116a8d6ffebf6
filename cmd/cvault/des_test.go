package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/cvault/cvault/internal/compute"
	"github.com/cvault/cvault/internal/demo"
)

// cvault des rotate: a rotation with its progress, one the vault stops
// half-way (exit status, mixed state in the message), and --resume.
func TestDESRotateCLI(t *testing.T) {
	ctx := context.Background()
	var armed atomic.Bool
	var kidOff atomic.Pointer[string]
	var x *demo.CrossTenantSetup
	var commits, tickets atomic.Int32
	var off sync.Once
	hook := func(step string) {
		if !armed.Load() {
			return
		}
		switch step {
		case compute.StepAfterCommit:
			commits.Add(1)
		case compute.StepBeforeUnwrap:
			if tickets.Add(1) <= 2 {
				return
			}
			for commits.Load() < 2 {
				time.Sleep(5 * time.Millisecond)
			}
			off.Do(func() {
				kc, _ := x.KeyClient()
				parts := strings.Split(*kidOff.Load(), "/")
				_, _ = kc.UpdateKey(ctx, parts[len(parts)-2], parts[len(parts)-1], azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(false)}}, nil)
			})
		}
	}
	dir := t.TempDir()
	env, stop, err := demo.StartEnv(ctx, demo.EnvOptions{DataDir: dir, RotationHook: hook})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	x = demo.NewCrossTenantSetup(env, "westeurope")
	if err := x.Phase1(ctx, demo.NewRunner(io.Discard)); err != nil {
		t.Fatal(err)
	}
	if err := x.Phase2(ctx, demo.NewRunner(io.Discard)); err != nil {
		t.Fatal(err)
	}
	c, err := env.ComputeClients(x.Provider)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.DES.BeginCreateOrUpdate(ctx, x.ProviderRG, "clides", x.DESBody(), nil)
	if err != nil {
		t.Fatal(err)
	}
	des, err := p.PollUntilDone(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		dp, err := c.Disks.BeginCreateOrUpdate(ctx, x.ProviderRG, fmt.Sprintf("cd%d", i), armcompute.Disk{Location: to.Ptr(x.Location), Properties: &armcompute.DiskProperties{
			CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionEmpty)}, DiskSizeGB: to.Ptr(int32(1)),
			Encryption: &armcompute.Encryption{Type: to.Ptr(armcompute.EncryptionTypeEncryptionAtRestWithCustomerKey), DiskEncryptionSetID: des.ID}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dp.PollUntilDone(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	kc, err := x.KeyClient()
	if err != nil {
		t.Fatal(err)
	}
	newKey := func() string {
		res, err := kc.CreateKey(ctx, x.KeyName, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr(int32(2048))}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return string(*res.Key.KID)
	}
	g := []string{"-g", x.ProviderRG, "--data", dir}
	kid2 := newKey()
	out, err := run(t, append([]string{"des", "rotate", "clides", "--key", kid2}, g...)...)
	if err != nil || !strings.Contains(out, "Succeeded") || !strings.Contains(out, "6") {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	kid3 := newKey()
	kidOff.Store(&kid3)
	armed.Store(true)
	out, err = run(t, append([]string{"des", "rotate", "clides", "--key", kid3}, g...)...)
	armed.Store(false)
	if err == nil || !strings.Contains(err.Error(), "--resume") || !strings.Contains(err.Error(), "of 6 disks") {
		t.Fatalf("partial rotate: %v\n%s", err, out)
	}
	parts := strings.Split(kid3, "/")
	if _, err := kc.UpdateKey(ctx, parts[len(parts)-2], parts[len(parts)-1], azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(true)}}, nil); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, append([]string{"des", "rotate", "clides", "--resume"}, g...)...)
	if err != nil || !strings.Contains(out, "Succeeded") {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"des", "show", "clides", "-o", "json"}, g...)...)
	if err != nil || !strings.Contains(out, kid3) || !strings.Contains(out, `"disksRotated": 6`) {
		t.Fatalf("show: %v\n%s", err, out)
	}
	if _, err := run(t, append([]string{"des", "rotate", "clides", "--resume"}, g...)...); err == nil || !strings.Contains(err.Error(), "no unfinished rotation") {
		t.Fatalf("resume without a partial rotation: %v", err)
	}
	// What `cvault key disable` warns about: the set still refers to kid3
	// (as its active key), not to kid2 (no disk is on it any more).
	uses, err := desesUsingKey(ctx, env.HTTP, x.Provider.Cred, env.URL, nil, kid3)
	if err != nil || len(uses) != 1 || !strings.EqualFold(uses[0].ID, *des.ID) || uses[0].How != "activeKey" {
		t.Fatalf("sets using %s: %+v %v", kid3, uses, err)
	}
	if uses, err := desesUsingKey(ctx, env.HTTP, x.Provider.Cred, env.URL, nil, kid2); err != nil || len(uses) != 0 {
		t.Fatalf("sets using %s: %+v %v", kid2, uses, err)
	}
}

func TestSameKeyVersion(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"https://kv.vault.localhost:8443/keys/k/v1", "https://KV.vault.localhost/keys/K/v1", true},
		{"https://kv.vault.localhost/keys/k/v1", "https://kv.vault.localhost/keys/k/v2", false},
		{"https://kv.vault.localhost/keys/k/v1", "https://other.vault.localhost/keys/k/v1", false},
		{"https://kv.vault.localhost/keys/k", "https://kv.vault.localhost/keys/k", false},
		{"https://kv.vault.localhost/secrets/k/v1", "https://kv.vault.localhost/secrets/k/v1", false},
		{"", "", false},
	} {
		if got := sameKeyVersion(tc.a, tc.b); got != tc.want {
			t.Errorf("sameKeyVersion(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
