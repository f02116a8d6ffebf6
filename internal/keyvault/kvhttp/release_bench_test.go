package kvhttp_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/cvault/cvault/internal/authz"
	"github.com/cvault/cvault/internal/guest/evidence"
	"github.com/cvault/cvault/internal/guest/skr"
	"github.com/cvault/cvault/internal/keywrap"
	"github.com/cvault/cvault/internal/release/policy"
	"github.com/cvault/cvault/internal/sim"
)

// BenchmarkRelease measures Secure Key Release over HTTPS next to the raw
// crypto it needs (RSA-OAEP + RFC 5649 wrap of the PKCS#8 key, the RS256 JWS
// signature, the RS256 token verification), in one run:
//
//	go test -run '^$' -bench Release -benchtime 2s ./internal/keyvault/kvhttp/
//
// release-call: the POST alone (token and bearer token obtained beforehand).
// full-path: attest (simulated SNP evidence) + managed-identity token +
// release + JWS verification + unwrap, with the transfer key made beforehand
// (its RSA keygen is reported separately as keygen). c8 = 8 concurrent callers.
func BenchmarkRelease(b *testing.B) {
	e := newEnv(b, withSim(b))
	ctx := b.Context()
	// A vault with an exportable key, and a managed identity (the VM) with the release role.
	c := e.createVault(b, "bench-skr", false)
	exportableKey(b, c, "k", policy.CVMDefault(e.srv.App.Attestation.Issuer("default")), nil)
	id, _, err := e.srv.App.Identity.PutUserAssignedIdentity(ctx, e.sub, "rg", "bench-vm", "westeurope", nil)
	if err != nil {
		b.Fatal(err)
	}
	secret, err := e.srv.App.Identity.IssueIdentitySecret(ctx, e.sub, "rg", "bench-vm")
	if err != nil {
		b.Fatal(err)
	}
	vault, err := e.srv.App.KeyVault.VaultByName(ctx, "bench-skr")
	if err != nil {
		b.Fatal(err)
	}
	e.grant(b, vault.ID(), id.PrincipalID, authz.RoleKeyVaultCryptoServiceRelease)
	kid := e.srv.VaultURL("bench-skr") + "/keys/k"
	p, _ := simPlatform()
	mi := &skr.ManagedIdentity{Endpoint: e.srv.URL + "/metadata/identity/oauth2/token", Secret: secret, Client: e.srv.HTTPClient}
	agent := &skr.Agent{Client: e.srv.HTTPClient, Roots: e.srv.CAPool, Credential: e.cred, MAA: e.srv.App.Attestation.Issuer("default"),
		Evidence: &evidence.Simulated{Platform: p}}
	tok := attest(b, e.srv, sim.Options{})

	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		tk, _ := transferPrivate()
		vk, err := e.srv.App.KeyVault.Key(ctx, vault, "k", "")
		if err != nil {
			b.Fatal(err)
		}
		priv, err := e.srv.App.KeyVault.PrivateKey(vk)
		if err != nil {
			b.Fatal(err)
		}
		sigKey := tk // any RSA-2048 key signs like the vault's
		tokSig, _ := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.RS256})
		instKeys, _ := e.srv.App.Attestation.Keys(ctx, "default")
		for b.Loop() {
			if _, err := tokSig.Verify(instKeys[0].Key); err != nil {
				b.Fatal(err)
			}
			m, _ := priv.Marshal()
			ct, err := keywrap.RSAAESWrap(rand.Reader, &tk.PublicKey, keywrap.EncRSAAESKeyWrap256, m)
			if err != nil {
				b.Fatal(err)
			}
			d := sha256.Sum256(ct)
			if _, err := rsa.SignPKCS1v15(nil, sigKey, crypto.SHA256, d[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("keygen", func(b *testing.B) {
		for b.Loop() {
			if _, err := skr.NewEphemeralKey(); err != nil {
				b.Fatal(err)
			}
		}
	})
	call := func(b *testing.B) {
		if _, err := agent.CallRelease(ctx, kid, tok); err != nil {
			b.Fatal(err)
		}
	}
	full := func(b *testing.B) {
		a := *agent
		a.Credential = mi
		if _, err := a.Release(ctx, kid, ephemeral(b)); err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		fn   func(*testing.B)
	}{{"release-call", call}, {"full-path", full}} {
		for _, conc := range []int{1, 8} {
			b.Run(tc.name+"/c"+string(rune('0'+conc)), func(b *testing.B) {
				b.ReportAllocs()
				var mu sync.Mutex
				var lat []time.Duration
				timed := func() {
					t0 := time.Now()
					tc.fn(b)
					d := time.Since(t0)
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
				if conc == 1 {
					for b.Loop() {
						timed()
					}
				} else {
					b.SetParallelism((conc + 1) / 2) // GOMAXPROCS is 2 here: 8 goroutines
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							timed()
						}
					})
				}
				slices.Sort(lat)
				if n := len(lat); n > 0 {
					b.ReportMetric(float64(lat[n/2].Microseconds())/1000, "p50-ms")
					b.ReportMetric(float64(lat[n*99/100].Microseconds())/1000, "p99-ms")
				}
			})
		}
	}
}
