package diskdata_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/cvault/cvault/internal/barrier"
	"github.com/cvault/cvault/internal/compute/blockstore"
	"github.com/cvault/cvault/internal/compute/diskcrypt"
	"github.com/cvault/cvault/internal/compute/diskdata"
	"github.com/cvault/cvault/internal/store/embedded/embeddedtest"
)

// vault is a stand-in for a customer's key vault at the system boundary:
// key versions that the customer can disable (the kill switch).
type vault struct {
	mu       sync.Mutex
	keys     map[string]*diskcrypt.Platform
	disabled map[string]bool
	platform *diskcrypt.Platform // the server's own key, which the keyring also resolves
}

func (v *vault) add(id string) {
	k := make([]byte, 32)
	rand.Read(k)
	p, _ := diskcrypt.NewPlatform(id, k)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.keys[id] = p
}

func (v *vault) setDisabled(id string, off bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.disabled[id] = off
}

var errDisabled = errors.New("key disabled")

// key is the Wrapper of one key version.
type key struct {
	v  *vault
	id string
}

func (k key) WrapKey(ctx context.Context, dek []byte) ([]byte, string, error) {
	k.v.mu.Lock()
	p, off := k.v.keys[k.id], k.v.disabled[k.id]
	k.v.mu.Unlock()
	if off {
		return nil, "", errDisabled
	}
	return p.WrapKey(ctx, dek)
}

func (k key) UnwrapKey(ctx context.Context, w []byte, id string) ([]byte, error) {
	k.v.mu.Lock()
	p, off := k.v.keys[id], k.v.disabled[id]
	k.v.mu.Unlock()
	if off {
		return nil, errDisabled
	}
	if p == nil {
		return nil, diskcrypt.ErrUnknownKey
	}
	return p.UnwrapKey(ctx, w, id)
}

// Wrapper implements diskdata.Keyring.
func (v *vault) Wrapper(ctx context.Context, diskID, keyID string) (diskcrypt.Wrapper, error) {
	if keyID == v.platform.KeyID() {
		return v.platform, nil
	}
	return key{v, keyID}, nil
}

type fixture struct {
	svc   *diskdata.Service
	vault *vault
	now   *time.Time
}

func newFixture(t *testing.T, ttl time.Duration) fixture {
	t.Helper()
	st := embeddedtest.Open(t)
	sl, _ := barrier.New(make([]byte, 32))
	blocks, err := blockstore.NewDir(t.TempDir(), diskcrypt.RecordSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { blocks.Close() })
	plat, err := diskcrypt.LoadOrCreatePlatform(context.Background(), st, sl, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	v := &vault{keys: map[string]*diskcrypt.Platform{}, disabled: map[string]bool{}, platform: plat}
	now := time.Unix(1_700_000_000, 0)
	base, _ := url.Parse("https://localhost:8443")
	svc, err := diskdata.New(diskdata.Config{Store: st, Sealer: sl, Blocks: blocks, Platform: plat, Keyring: v,
		BaseURL: base, DEKCacheTTL: ttl, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return fixture{svc: svc, vault: v, now: &now}
}

func TestKillSwitchWithinTTL(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, time.Minute)
	f.vault.add("https://v/keys/k/1")
	if err := f.svc.Create(ctx, "d1", 1<<20, key{f.vault, "https://v/keys/k/1"}); err != nil {
		t.Fatal(err)
	}
	d, err := f.svc.Open(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WriteAt(ctx, []byte("hello, disk"), 0); err != nil {
		t.Fatal(err)
	}
	f.vault.setDisabled("https://v/keys/k/1", true)
	// Within the TTL the cached key still serves...
	if _, err := f.svc.Open(ctx, "d1"); err != nil {
		t.Fatalf("open within TTL: %v", err)
	}
	// ...after it, the customer's switch wins.
	*f.now = f.now.Add(time.Minute)
	if _, err := f.svc.Open(ctx, "d1"); !errors.Is(err, diskdata.ErrKeyUnavailable) || !errors.Is(err, errDisabled) {
		t.Fatalf("open after TTL with the key disabled: %v", err)
	}
	f.vault.setDisabled("https://v/keys/k/1", false)
	d, err = f.svc.Open(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 11)
	if err := d.ReadAt(ctx, buf, 0); err != nil || string(buf) != "hello, disk" {
		t.Fatalf("read after re-enable: %q %v", buf, err)
	}
}

func TestRewrapWriteAheadAndCommit(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1) // no cache: every open unwraps
	v1, v2 := "https://v/keys/k/1", "https://v/keys/k/2"
	f.vault.add(v1)
	f.vault.add(v2)
	if err := f.svc.Create(ctx, "d1", 1<<20, key{f.vault, v1}); err != nil {
		t.Fatal(err)
	}
	d, _ := f.svc.Open(ctx, "d1")
	data := make([]byte, 64<<10)
	rand.Read(data)
	if err := d.WriteAt(ctx, data, 4096); err != nil {
		t.Fatal(err)
	}
	readBack := func(step string) {
		t.Helper()
		d, err := f.svc.Open(ctx, "d1")
		if err != nil {
			t.Fatalf("%s: open: %v", step, err)
		}
		got := make([]byte, len(data))
		if err := d.ReadAt(ctx, got, 4096); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: read back differs (%v)", step, err)
		}
	}
	// Committing with nothing pending is refused.
	if err := f.svc.CommitRewrap(ctx, "d1", true); !errors.Is(err, diskcrypt.ErrNoPending) {
		t.Fatalf("commit without pending: %v", err)
	}
	// A failed write-ahead (new key's vault refuses) changes nothing.
	f.vault.setDisabled(v2, true)
	if _, err := f.svc.PrepareRewrap(ctx, "d1", key{f.vault, v2}); !errors.Is(err, errDisabled) {
		t.Fatalf("prepare with the new key disabled: %v", err)
	}
	if info, _ := f.svc.Get(ctx, "d1"); info.KeyID != v1 || info.PendingKeyID != "" {
		t.Fatalf("after failed prepare: %+v", info)
	}
	f.vault.setDisabled(v2, false)
	// Write ahead: Pending beside Current; reads still use v1 (works with v2 disabled).
	if id, err := f.svc.PrepareRewrap(ctx, "d1", key{f.vault, v2}); err != nil || id != v2 {
		t.Fatalf("prepare: %q %v", id, err)
	}
	if info, _ := f.svc.Get(ctx, "d1"); info.KeyID != v1 || info.PendingKeyID != v2 {
		t.Fatalf("after prepare: %+v", info)
	}
	f.vault.setDisabled(v2, true)
	readBack("pending, new key disabled")
	// Verification catches a pending wrap that cannot be opened; nothing switches.
	if err := f.svc.CommitRewrap(ctx, "d1", true); !errors.Is(err, errDisabled) {
		t.Fatalf("verified commit with the new key disabled: %v", err)
	}
	f.vault.setDisabled(v2, false)
	// Retrying the write-ahead is idempotent.
	if _, err := f.svc.PrepareRewrap(ctx, "d1", key{f.vault, v2}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.CommitRewrap(ctx, "d1", true); err != nil {
		t.Fatal(err)
	}
	if info, _ := f.svc.Get(ctx, "d1"); info.KeyID != v2 || info.PendingKeyID != "" {
		t.Fatalf("after commit: %+v", info)
	}
	// The old key is no longer needed.
	f.vault.setDisabled(v1, true)
	readBack("committed, old key disabled")
}

func TestGrantAccessURL(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, time.Minute)
	if err := f.svc.Create(ctx, "Disk-A", 1<<20, f.svc.Platform()); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Create(ctx, "disk-a", 1<<20, f.svc.Platform()); !errors.Is(err, diskdata.ErrExists) {
		t.Fatalf("case-insensitive duplicate: %v", err)
	}
	u, err := f.svc.GrantAccess(ctx, "disk-a", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	q := pu.Query()
	want := fmt.Sprintf("%d", f.now.Add(time.Hour).Unix())
	exp, _ := time.Parse(time.RFC3339, q.Get("se"))
	if pu.Path != "/disks-data/Disk-A" || q.Get("sp") != "r" || q.Get("sv") == "" || fmt.Sprint(exp.Unix()) != want {
		t.Fatalf("URL %s", u)
	}
	if _, err := f.svc.Authorize(ctx, "Disk-A", q, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.GrantAccess(ctx, "disk-a", time.Hour, true); !errors.Is(err, diskdata.ErrInvalid) {
		t.Fatalf("write grant while read access is active: %v", err)
	}
	for _, tt := range []struct {
		id   string
		size int64
	}{{"../x", 512}, {"", 512}, {"ok", 100}, {"ok", 0}} {
		if err := f.svc.Create(ctx, tt.id, tt.size, f.svc.Platform()); !errors.Is(err, diskdata.ErrInvalid) {
			t.Errorf("create %q %d: %v", tt.id, tt.size, err)
		}
	}
	if err := f.svc.Delete(ctx, "disk-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Authorize(ctx, "Disk-A", q, false); !errors.Is(err, diskdata.ErrAccessDenied) {
		t.Fatalf("URL of a deleted disk: %v", err)
	}
}
