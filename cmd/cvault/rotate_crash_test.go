package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"golang.org/x/sync/errgroup"

	"github.com/cvault/cvault/internal/app"
	"github.com/cvault/cvault/internal/compute"
	"github.com/cvault/cvault/internal/demo"
	"github.com/cvault/cvault/internal/localdial"
)

// remoteEnv is a demo.Env for a `cvault serve` subprocess, so the demo's
// seed-003 setup (identities, vault, key, roles) runs against the binary.
func remoteEnv(t *testing.T, dataDir, base, sub string) *demo.Env {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dataDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	creds, err := app.ReadAdminFile(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	port := base[strings.LastIndex(base, ":")+1:]
	e := &demo.Env{URL: base, HTTP: localdial.Client(pool), VaultPort: port, VaultZone: "vault.localhost"}
	e.Admin = demo.Tenant{ID: creds.TenantID, ClientID: creds.ClientID, Secret: creds.ClientSecret, ObjectID: creds.ObjectID, Subscription: sub}
	if e.Admin.Cred, err = e.Credential(creds.TenantID, creds.ClientID, creds.ClientSecret); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestRotationCrashSafety SIGKILLs the server at each step of a disk's
// re-wrap (before unwrap, after wrap before commit, after commit) while it
// rotates 100 disks, restarts it, saves the DES again, and finds every
// disk's content unchanged and every disk on the new key, on both stores.
func TestRotationCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := cvaultBinary(t)
	t.Run("embedded", func(t *testing.T) { rotationCrash(t, bin, nil) })
	t.Run("postgres", func(t *testing.T) { env, _, _ := pgServeEnv(t); rotationCrash(t, bin, env) })
}

func rotationCrash(t *testing.T, bin string, env []string) {
	ctx := context.Background()
	dataDir := t.TempDir()
	addr := freePort(t)
	lease := []string{"--job-lease", "1s", "--dek-cache-ttl", "-1s"}
	p := startServe(t, bin, dataDir, addr, env, lease...)
	_, _, sub := adminClient(t, dataDir, p.base)
	e := remoteEnv(t, dataDir, p.base, sub)
	x, c, des := crossTenantDES(ctx, t, e)
	rg := x.ProviderRG
	const n = 100
	hashes := makeDisks(t, e, c, rg, x.Location, *des.ID, n)
	kc, err := x.KeyClient()
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{compute.StepBeforeUnwrap, compute.StepAfterWrap, compute.StepAfterCommit} {
		// Restart with the fault armed: the 40th disk to reach step kills it.
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p = startServe(t, bin, dataDir, addr, append(env[:len(env):len(env)], crashEnv+"="+step+":40"), lease...)
		nk, err := kc.CreateKey(ctx, x.KeyName, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr(int32(2048))}, nil)
		if err != nil {
			t.Fatal(err)
		}
		kid := string(*nk.Key.KID)
		if _, err := rotate(ctx, c, rg, kid); err != nil {
			t.Fatalf("%s: start rotation: %v", step, err)
		}
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("%s: server ended with %v, want SIGKILL", step, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the server was not killed at the armed step", step)
		}
		// Restart and retry: save the DES again (a job still leased by the
		// dead server is taken over when its lease expires).
		p = startServe(t, bin, dataDir, addr, env, lease...)
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := rotate(ctx, c, rg, kid)
			var re *azcore.ResponseError
			if err == nil || !errors.As(err, &re) || re.ErrorCode != compute.CodeRotationInProgress {
				if err != nil {
					t.Fatalf("%s: retry: %v", step, err)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: rotation still in progress after restart", step)
			}
			time.Sleep(200 * time.Millisecond)
		}
		var state struct {
			Properties struct {
				ActiveKey   compute.KeyForDES    `json:"activeKey"`
				KeyRotation *compute.KeyRotation `json:"keyRotation"`
			} `json:"properties"`
		}
		for {
			if err := e.ARM(ctx, x.Provider.Cred, "GET", *des.ID+"?api-version=2023-04-02", nil, &state); err != nil {
				t.Fatal(err)
			}
			if kr := state.Properties.KeyRotation; kr != nil && kr.State != compute.RotationInProgress {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: rotation did not finish: %+v", step, state.Properties.KeyRotation)
			}
			time.Sleep(100 * time.Millisecond)
		}
		kr := state.Properties.KeyRotation
		if kr.State != compute.RotationSucceeded || state.Properties.ActiveKey.KeyURL != kid || kr.DisksRotated != n || kr.DisksTotal != n {
			t.Fatalf("%s: after retry active %s, rotation %+v", step, state.Properties.ActiveKey.KeyURL, kr)
		}
		// Every disk reads back what was written.
		if err := checkDisks(ctx, e, c, rg, hashes); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
}

// makeDisks creates n customer-key disks disk000… on the DES, writes 4 KiB
// of random data to each, and returns the data's hashes.
// crossTenantDES runs seed 003's phases 1 and 2 against e and creates the
// provider's DES "crashdes" on the customer's key.
func crossTenantDES(ctx context.Context, t *testing.T, e *demo.Env) (*demo.CrossTenantSetup, *demo.Compute, armcompute.DiskEncryptionSet) {
	t.Helper()
	x := demo.NewCrossTenantSetup(e, "westeurope")
	r := demo.NewRunner(io.Discard)
	if err := x.Phase1(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := x.Phase2(ctx, r); err != nil {
		t.Fatal(err)
	}
	c, err := e.ComputeClients(x.Provider)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := c.DES.BeginCreateOrUpdate(ctx, x.ProviderRG, "crashdes", x.DESBody(), nil)
	if err != nil {
		t.Fatal(err)
	}
	des, err := dp.PollUntilDone(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return x, c, des.DiskEncryptionSet
}

func makeDisks(t *testing.T, e *demo.Env, c *demo.Compute, rg, location, desID string, n int) [][32]byte {
	t.Helper()
	hashes := make([][32]byte, n)
	g, gctx := errgroup.WithContext(t.Context())
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error {
			data := make([]byte, 4096)
			rand.Read(data)
			hashes[i] = sha256.Sum256(data)
			name := fmt.Sprintf("disk%03d", i)
			p, err := c.Disks.BeginCreateOrUpdate(gctx, rg, name, armcompute.Disk{Location: to.Ptr(location), Properties: &armcompute.DiskProperties{
				CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionUpload), UploadSizeBytes: to.Ptr(int64(len(data)))},
				Encryption:   &armcompute.Encryption{Type: to.Ptr(armcompute.EncryptionTypeEncryptionAtRestWithCustomerKey), DiskEncryptionSetID: to.Ptr(desID)}}}, nil)
			if err != nil {
				return err
			}
			if _, err := p.PollUntilDone(gctx, nil); err != nil {
				return err
			}
			return e.WriteDisk(gctx, c, rg, name, data)
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	return hashes
}

// checkDisks reads every disk of makeDisks back and compares its hash.
func checkDisks(ctx context.Context, e *demo.Env, c *demo.Compute, rg string, hashes [][32]byte) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range hashes {
		g.Go(func() error {
			got, err := e.ReadDisk(gctx, c, rg, fmt.Sprintf("disk%03d", i), 4096)
			if err != nil {
				return err
			}
			if sha256.Sum256(got) != hashes[i] {
				return fmt.Errorf("disk%03d: content changed", i)
			}
			return nil
		})
	}
	return g.Wait()
}

// rotate saves the DES with keyURL; the first response is enough (the job
// carries on server-side).
func rotate(ctx context.Context, c *demo.Compute, rg, keyURL string) (int, error) {
	_, err := c.DES.BeginUpdate(ctx, rg, "crashdes", armcompute.DiskEncryptionSetUpdate{Properties: &armcompute.DiskEncryptionSetUpdateProperties{
		ActiveKey: &armcompute.KeyForDiskEncryptionSet{KeyURL: to.Ptr(keyURL)}}}, nil)
	if err != nil {
		return 0, err
	}
	return http.StatusAccepted, nil
}
