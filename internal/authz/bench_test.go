package authz_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/cvault/cvault/internal/authz"
	"github.com/cvault/cvault/internal/store/embedded/embeddedtest"
)

// BenchmarkCheck measures Check with n assignments in the store, one
// principal each plus the caller's two (a subscription Owner and a key
// role). The store/changes sub-benchmark is the cost Check would pay if
// it asked the store on every call instead of every RefreshInterval.
func BenchmarkCheck(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{10, 1000, 100000} {
		st := embeddedtest.Open(b)
		s := newService(b, st)
		as := make([]authz.Assignment, 0, n)
		roles := []string{authz.RoleReader, authz.RoleKeyVaultCryptoUser, authz.RoleContributor, authz.RoleKeyVaultCryptoServiceEncryption}
		for i := range n {
			as = append(as, authz.Assignment{Name: guid(1_000_000 + i), Scope: fmt.Sprintf("%s/resourceGroups/rg%d", sub, i%100),
				RoleDefinitionID: roles[i%len(roles)], PrincipalID: fmt.Sprintf("30000000-0000-0000-0000-%012d", i), TenantID: tenant})
		}
		if err := s.AssignMany(ctx, as); err != nil {
			b.Fatal(err)
		}
		p := principal(1)
		grant(b, s, 1, p, authz.RoleOwner, sub)
		grant(b, s, 2, p, authz.RoleKeyVaultCryptoServiceEncryption, key)
		if err := s.Check(ctx, p, "Microsoft.KeyVault/vaults/keys/wrap/action", key); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("assignments=%d/allow", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Check(ctx, p, "Microsoft.KeyVault/vaults/keys/wrap/action", key); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("assignments=%d/deny", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Check(ctx, p, "Microsoft.KeyVault/vaults/keys/decrypt/action", key); err == nil {
					b.Fatal("allowed")
				}
			}
		})
		b.Run(fmt.Sprintf("assignments=%d/store-changes", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := st.Changes(ctx, authz.KindAssignment); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
