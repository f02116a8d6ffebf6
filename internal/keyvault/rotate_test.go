package keyvault_test

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cvault/cvault/internal/barrier"
	"github.com/cvault/cvault/internal/keyvault"
	"github.com/cvault/cvault/internal/store/embedded"
)

type resources struct{}

func (resources) ResourceGroupExists(context.Context, string, string) error { return nil }
func (resources) CheckLocation(l string) (string, error)                    { return l, nil }

// clock is a settable clock for the rotation scheduler.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newService(t *testing.T) (*keyvault.Service, *clock, *keyvault.Vault) {
	svc, clk, v, _ := newServices(t)
	return svc, clk, v
}

// newServices also returns a constructor of more services on the same
// store and root key (another server: no shared key cache).
func newServices(t *testing.T) (*keyvault.Service, *clock, *keyvault.Vault, func() *keyvault.Service) {
	t.Helper()
	db, err := embedded.Open(filepath.Join(t.TempDir(), "kv.db"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	key := make([]byte, 32)
	rand.Read(key)
	sl, err := barrier.New(key)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	another := func() *keyvault.Service {
		svc, err := keyvault.New(keyvault.Config{Store: db, Sealer: sl, Resources: resources{}, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	svc := another()
	const tenant = "11111111-1111-4111-8111-111111111111"
	v, _, err := svc.PutVault(t.Context(), keyvault.Vault{Subscription: "s", ResourceGroup: "rg", Name: "kv-rot", Location: "eastus",
		Properties: keyvault.VaultProperties{TenantID: tenant, SKU: keyvault.SKUPremium}}, tenant)
	if err != nil {
		t.Fatal(err)
	}
	return svc, clk, &v, another
}

func TestRotationScheduler(t *testing.T) {
	svc, clk, v := newService(t)
	ctx := t.Context()
	k, err := svc.CreateKey(ctx, v, "cmk", keyvault.CreateParams{KeyType: "oct-HSM"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateKey(ctx, v, "nopolicy", keyvault.CreateParams{KeyType: "EC"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.SetRotationPolicy(ctx, v, "cmk", keyvault.RotationPolicy{ExpiryTime: "P90D",
		LifetimeActions: []keyvault.LifetimeAction{{TimeAfterCreate: "P30D", Action: "rotate"}}}); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		advance time.Duration
		want    int
	}{{0, 0}, {29 * 24 * time.Hour, 0}, {24 * time.Hour, 1}, {time.Hour, 0}, {30 * 24 * time.Hour, 1}} {
		clk.Add(step.advance)
		n, err := svc.RotateDue(ctx)
		if err != nil || n != step.want {
			t.Fatalf("after +%v: rotated %d (%v), want %d", step.advance, n, err, step.want)
		}
	}
	cur, err := svc.Key(ctx, v, "cmk", "")
	if err != nil {
		t.Fatal(err)
	}
	vs, _, err := svc.Versions(ctx, v, "cmk", "", 0)
	if err != nil || len(vs) != 3 || cur.Version == k.Version {
		t.Fatalf("versions = %d, current %s", len(vs), cur.Version)
	}
	wantExp := clk.Now().Add(90 * 24 * time.Hour).Unix()
	if cur.Attributes.Expires == nil || *cur.Attributes.Expires != wantExp {
		t.Errorf("rotated exp = %v, want %d", cur.Attributes.Expires, wantExp)
	}
	// A deleted key is not rotated.
	if _, err := svc.DeleteKey(ctx, v, "cmk"); err != nil {
		t.Fatal(err)
	}
	clk.Add(365 * 24 * time.Hour)
	if n, err := svc.RotateDue(ctx); err != nil || n != 0 {
		t.Errorf("deleted key rotated: %d %v", n, err)
	}
}

func TestSealedMaterialBoundToRecord(t *testing.T) {
	svc, _, v, another := newServices(t)
	ctx := t.Context()
	a, err := svc.CreateKey(ctx, v, "a", keyvault.CreateParams{KeyType: "oct-HSM"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := svc.CreateKey(ctx, v, "b", keyvault.CreateParams{KeyType: "oct-HSM"})
	if err != nil {
		t.Fatal(err)
	}
	// Another server has no cache: material must come from the seal.
	other := another()
	if _, err := other.PrivateKey(b); err != nil {
		t.Fatal(err)
	}
	swapped := *b
	swapped.Version = "0123456789abcdef0123456789abcdef" // not cached
	swapped.Sealed = a.Sealed
	if _, err := other.PrivateKey(&swapped); err == nil {
		t.Error("a's sealed material unsealed under b's record identity")
	}
}

func TestParseDuration(t *testing.T) {
	base := time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"P30D", base.AddDate(0, 0, 30)},
		{"P2W", base.AddDate(0, 0, 14)},
		{"P1Y2M3D", base.AddDate(1, 2, 3)},
		{"PT12H30M5S", base.Add(12*time.Hour + 30*time.Minute + 5*time.Second)},
		{"p90d", base.AddDate(0, 0, 90)},
	} {
		d, err := keyvault.ParseDuration(tc.in)
		if err != nil || !d.AddTo(base).Equal(tc.want) {
			t.Errorf("%s: %v %v", tc.in, d.AddTo(base), err)
		}
	}
	for _, bad := range []string{"", "P", "PT", "30D", "P1.5D", "P-1D", "P30DT", "1 month", "P999999999D"} {
		if _, err := keyvault.ParseDuration(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"P30D", "P1Y2M3DT4H5M6S", "P2W", "PT", "P", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := keyvault.ParseDuration(s)
		if err != nil {
			return
		}
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		if d.AddTo(base).Before(base) || d.SubFrom(base).After(base) {
			t.Errorf("%q: adding a duration went backwards", s)
		}
	})
}
