package identity_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/barrier"
	"github.com/cvault/cvault/internal/identity"
	"github.com/cvault/cvault/internal/store"
	"github.com/cvault/cvault/internal/store/embedded/embeddedtest"
)

// RSA keys are generated once per package and handed out in turn.
var (
	keysOnce sync.Once
	testKeys []*rsa.PrivateKey
)

func keyPool(t testing.TB) func() (*rsa.PrivateKey, error) {
	keysOnce.Do(func() {
		for range 4 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			testKeys = append(testKeys, k)
		}
	})
	var n atomic.Int64
	return func() (*rsa.PrivateKey, error) { return testKeys[int(n.Add(1)-1)%len(testKeys)], nil }
}

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// fakeARM is the resource manager boundary: subscriptions map to tenants,
// resource groups exist when listed.
type fakeARM struct {
	mu     sync.Mutex
	subs   map[string]string
	groups map[string]bool
}

func (a *fakeARM) TenantOfSubscription(_ context.Context, sub string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.subs[strings.ToLower(sub)]
	if !ok {
		return "", store.ErrNotFound
	}
	return t, nil
}

func (a *fakeARM) ResourceGroupExists(_ context.Context, sub, rg string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.groups[strings.ToLower(sub+"/"+rg)] {
		return store.ErrNotFound
	}
	return nil
}

func (a *fakeARM) add(sub, tenant, rg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.subs[strings.ToLower(sub)] = tenant
	a.groups[strings.ToLower(sub+"/"+rg)] = true
}

type env struct {
	svc   *identity.Service
	clock *clock
	arm   *fakeARM
	boot  identity.BootstrapResult
	admin *authn.Principal
}

const testBase = "https://cvault.test:8443"

func newEnv(t testing.TB) *env {
	t.Helper()
	key := make([]byte, barrier.KeySize)
	if _, err := io.ReadFull(rand.Reader, key); err != nil {
		t.Fatal(err)
	}
	b, err := barrier.New(key)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(testBase)
	e := &env{clock: newClock(), arm: &fakeARM{subs: map[string]string{}, groups: map[string]bool{}}}
	e.svc, err = identity.New(identity.Config{BaseURL: u, Store: embeddedtest.Open(t), Barrier: b,
		Logger: slog.New(slog.DiscardHandler), ARM: e.arm, Now: e.clock.Now, NewSigningKey: keyPool(t)})
	if err != nil {
		t.Fatal(err)
	}
	e.boot, err = e.svc.Bootstrap(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e.admin = e.principal(t, e.boot.TenantID, e.boot.Admin.ClientID, e.boot.Admin.ClientSecret)
	return e
}

// principal obtains a Graph token with a client secret and authenticates it.
func (e *env) principal(t testing.TB, tenant, clientID, secret string) *authn.Principal {
	t.Helper()
	tok, err := e.svc.Token(context.Background(), tenant, identity.TokenRequest{GrantType: "client_credentials",
		ClientID: clientID, ClientSecret: secret, Scope: "https://graph.microsoft.com/.default openid profile offline_access"})
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	p, err := e.svc.Authenticate(context.Background(), tok.AccessToken, []string{"https://graph.microsoft.com"})
	if err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	return p
}

func wantAADSTS(t *testing.T, err error, code int) {
	t.Helper()
	var oe *identity.OAuthError
	if !errors.As(err, &oe) {
		t.Fatalf("err = %v, want AADSTS%d", err, code)
	}
	if oe.AADSTS != code {
		t.Fatalf("AADSTS%d (%s), want AADSTS%d", oe.AADSTS, oe.Description, code)
	}
}
