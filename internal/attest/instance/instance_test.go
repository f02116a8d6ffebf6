package instance_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-tdx-guest/testing/testdata"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cvault/cvault/internal/attest/instance"
	"github.com/cvault/cvault/internal/barrier"
	"github.com/cvault/cvault/internal/store"
	"github.com/cvault/cvault/internal/store/embedded/embeddedtest"
)

const base = "https://cvault.example:8443"

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// newService returns a service on a fresh store at 2025-06-01 (inside the validity of
// go-tdx-guest's real quote's PCK chain).
func newService(t *testing.T) (*instance.Service, *clock, store.Store) {
	t.Helper()
	db := embeddedtest.Open(t)
	key, err := barrier.Generate()
	if err != nil {
		t.Fatal(err)
	}
	sl, err := barrier.New(key)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)}
	svc, err := instance.New(instance.Config{Store: db, Sealer: sl, BaseURL: base + "/", Now: clk.Now, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return svc, clk, db
}

func TestNamesAndIssuer(t *testing.T) {
	svc, _, _ := newService(t)
	ctx := context.Background()
	for _, bad := range []string{"", "Default", "-x", "a/b", string(make([]byte, 64))} {
		if _, err := svc.Create(ctx, bad, instance.Settings{}); !errors.Is(err, instance.ErrInvalid) {
			t.Errorf("Create(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := svc.Create(ctx, "prod", instance.Settings{TokenLifetime: time.Second}); !errors.Is(err, instance.ErrInvalid) {
		t.Errorf("1 s lifetime: %v", err)
	}
	if _, err := svc.Create(ctx, "prod", instance.Settings{}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Create(ctx, "prod", instance.Settings{}); !errors.Is(err, instance.ErrExists) {
		t.Errorf("second Create = %v", err)
	}
	if _, err := svc.Ensure(ctx, "prod", instance.Settings{}); err != nil {
		t.Errorf("Ensure on an existing instance = %v", err)
	}
	if got := svc.Issuer("prod"); got != base+"/attestation/prod" {
		t.Errorf("Issuer = %s", got)
	}
	for in, want := range map[string]string{base + "/attestation/prod": "prod", base + "/attestation/prod/": "prod", "https://other/attestation/prod": "", base + "/attestation/a/b": ""} {
		if got, _ := svc.InstanceName(in); got != want {
			t.Errorf("InstanceName(%s) = %q, want %q", in, got, want)
		}
	}
	if _, err := svc.Keys(ctx, "nope"); !errors.Is(err, instance.ErrNotFound) {
		t.Errorf("Keys(nope) = %v", err)
	}
}

func TestSigningKeySealedAndRetired(t *testing.T) {
	svc, clk, db := newService(t)
	ctx := context.Background()
	inst, err := svc.Create(ctx, "prod", instance.Settings{TokenLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := svc.Keys(ctx, "prod")
	if err != nil || len(keys) != 1 || keys[0].KeyID != inst.CurrentKeyID {
		t.Fatalf("Keys = %v, %v", keys, err)
	}
	// The private exponent never reaches the store in clear.
	if _, err := svc.RotateKey(ctx, "prod"); err != nil {
		t.Fatal(err)
	}
	keys, _ = svc.Keys(ctx, "prod")
	if len(keys) != 2 || keys[1].KeyID != inst.CurrentKeyID {
		t.Fatalf("after rotation: %d keys", len(keys))
	}
	recs, err := db.List(ctx, "attest-key", "prod/", "", 0)
	if err != nil || len(recs) != 2 {
		t.Fatalf("key records: %d, %v", len(recs), err)
	}
	for _, r := range recs {
		var kr struct{ SealedKey []byte }
		if err := json.Unmarshal(r.Value, &kr); err != nil || len(kr.SealedKey) == 0 {
			t.Fatalf("key record %s: %v", r.Key, err)
		}
		if _, err := x509.ParsePKCS8PrivateKey(kr.SealedKey); err == nil {
			t.Errorf("key record %s holds a private key in clear", r.Key)
		}
	}
	clk.Add(time.Hour + 6*time.Minute) // past the old key's last token
	keys, _ = svc.Keys(ctx, "prod")
	if len(keys) != 1 || keys[0].KeyID == inst.CurrentKeyID {
		t.Errorf("old key still published after its tokens expired: %d keys", len(keys))
	}
	// A later rotation deletes it; the one it replaces stays.
	if _, err := svc.RotateKey(ctx, "prod"); err != nil {
		t.Fatal(err)
	}
	if keys, _ = svc.Keys(ctx, "prod"); len(keys) != 2 {
		t.Errorf("after second rotation: %d keys", len(keys))
	}
}

func TestTdxRealQuote(t *testing.T) {
	svc, _, _ := newService(t)
	ctx := context.Background()
	debug := instance.Permissive()
	if _, err := svc.Create(ctx, "tdx", instance.Settings{Policy: &debug}); err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"quote":"` + base64.RawURLEncoding.EncodeToString(testdata.RawQuote) + `","nonce":"n1"}`)
	tok, err := svc.AttestTdxVM(ctx, "tdx", body)
	if err != nil {
		t.Fatalf("AttestTdxVM(real quote) = %v", err)
	}
	jwks, err := svc.JWKS(ctx, "tdx")
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{}
	if err := parsed.Claims(set.Key(parsed.Headers[0].KeyID)[0].Key, &claims); err != nil {
		t.Fatal(err)
	}
	if claims["x-ms-attestation-type"] != "tdxvm" || claims["iss"] != base+"/attestation/tdx" || claims["nonce"] != "n1" {
		t.Errorf("claims: %v", claims)
	}
	if len(set.Keys[0].Certificates) != 1 {
		t.Error("JWKS key without its x5c certificate")
	}
	// The strict zero policy refuses a debuggable TD.
	if _, err := svc.Create(ctx, "strict", instance.Settings{}); err != nil {
		t.Fatal(err)
	}
	_, err = svc.AttestTdxVM(ctx, "strict", body)
	var re *instance.RefusedError
	if claims["tdx_td_attributes_debug"] == true {
		if !errors.As(err, &re) || !re.Policy || re.Failures[0].Check != "debug" {
			t.Errorf("strict, debuggable TD: %v", err)
		}
	} else if err != nil {
		t.Errorf("strict, non-debuggable TD: %v", err)
	}
}

func TestPolicyCheck(t *testing.T) {
	for _, js := range []string{
		`{"maxVmpl":4}`,
		`{"minimumReportVersion":1}`,
		`{"referenceValues":{"measurements":["00"]}}`,
		`{"referenceValues":{"hostData":["ab"]}}`,
	} {
		var p instance.Policy
		if err := json.Unmarshal([]byte(js), &p); err != nil {
			t.Fatal(err)
		}
		if err := p.Check(); !errors.Is(err, instance.ErrInvalid) {
			t.Errorf("%s: Check = %v", js, err)
		}
	}
	var p instance.Policy
	if err := json.Unmarshal([]byte(`{"referenceValues":{"measurements":["zz"]}}`), &p); err == nil {
		t.Error("non-hex reference accepted")
	}
	if instance.Permissive().Text() == (instance.Policy{}).Text() {
		t.Error("permissive and strict policies hash alike")
	}
}
