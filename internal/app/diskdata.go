package app

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cvault/cvault/internal/compute"
	"github.com/cvault/cvault/internal/compute/blockstore"
	"github.com/cvault/cvault/internal/compute/diskcrypt"
	"github.com/cvault/cvault/internal/compute/diskdata"
	"github.com/cvault/cvault/internal/jobs"
	"github.com/cvault/cvault/internal/localdial"
)

// lateKeyring is the disk data service's Keyring: the compute service,
// which is built after (and on top of) the disk data service.
type lateKeyring struct{ svc *compute.Service }

func (k *lateKeyring) Wrapper(ctx context.Context, diskID, keyID string) (diskcrypt.Wrapper, error) {
	if k.svc == nil {
		return nil, fmt.Errorf("disk %s: %w", diskID, diskcrypt.ErrUnknownKey)
	}
	return k.svc.Wrapper(ctx, diskID, keyID)
}

// newCompute builds the compute resource provider (DES, disks, VMs): it
// reaches customers' vaults and the token endpoint over HTTPS, trusting
// cvault's CA, exactly as an outside client would.
func (a *App) newCompute() (*compute.Service, error) {
	host, _ := os.Hostname()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	q, err := jobs.New(jobs.Config{Store: a.Store, Owner: fmt.Sprintf("%s/%d/%x", host, os.Getpid(), rnd), LeaseTTL: a.Config.JobLease, Now: a.Config.Now})
	if err != nil {
		return nil, err
	}
	svc, err := compute.New(compute.Config{Store: a.Store, ARM: a.ARM, Identity: a.Identity, DiskData: a.DiskData,
		Authority: a.BaseURL.String(), HTTPClient: localdial.Client(a.CA.Pool()), Now: a.Config.Now,
		Jobs: q, RotationHook: a.Config.RotationHook})
	if err != nil {
		return nil, err
	}
	a.keyring.svc = svc
	for _, d := range svc.GroupDeleters() {
		a.ARM.RegisterGroupDeleter(d)
	}
	return svc, nil
}

// Config.DiskBlocks values.
const (
	DiskBlocksDir   = "dir"   // sparse files in {data}/disks (one server, or a shared filesystem)
	DiskBlocksStore = "store" // records in the store: every server on one PostgreSQL shares them
)

// newDiskData builds the managed-disk data service: blocks in {data}/disks
// or in the store (Config.DiskBlocks), the platform key sealed in the store.
func (a *App) newDiskData(ctx context.Context) error {
	var blocks blockstore.Store
	if a.Config.DiskBlocks == DiskBlocksStore {
		db, err := blockstore.NewStore(a.Store, diskcrypt.RecordSize)
		if err != nil {
			return err
		}
		blocks = db
	} else {
		dir, err := blockstore.NewDir(filepath.Join(a.Config.DataDir, "disks"), diskcrypt.RecordSize)
		if err != nil {
			return err
		}
		a.diskBlocks, blocks = dir, dir
	}
	platform, err := diskcrypt.LoadOrCreatePlatform(ctx, a.Store, a.Sealer, nil)
	if err != nil {
		return err
	}
	a.DiskData, err = diskdata.New(diskdata.Config{
		Store: a.Store, Sealer: a.Sealer, Blocks: blocks, Platform: platform,
		BaseURL: a.BaseURL, DEKCacheTTL: a.Config.DEKCacheTTL, Now: a.Config.Now,
		Keyring: &a.keyring,
	})
	if err != nil {
		return fmt.Errorf("disk data: %w", err)
	}
	return nil
}

// serveComputeJobs runs this server's share of DES key rotations (leased
// jobs, taken over from dead servers) and the automatic rotation to the
// latest key version, until ctx is done.
func (a *App) serveComputeJobs(ctx context.Context) {
	poll := a.Config.JobLease / 3
	if poll <= 0 || poll > 2*time.Second {
		poll = 2 * time.Second
	}
	every := a.Config.AutoRotateEvery
	if every <= 0 {
		every = time.Minute
	}
	logf := func(what string) func(error) {
		return func(err error) { a.Config.Logger.Error(what, "err", err) }
	}
	go a.Compute.RunRotations(ctx, poll, logf("disk encryption set rotation"))
	go a.Compute.RunAutoRotation(ctx, every, logf("disk encryption set automatic rotation"))
}
