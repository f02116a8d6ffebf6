package kdscache_test

import (
	"testing"

	"github.com/cvault/cvault/internal/attest/kdscache/kdstest"
	"github.com/cvault/cvault/internal/attest/snp"
	"github.com/cvault/cvault/internal/sim"
	"github.com/cvault/cvault/internal/store/embedded/embeddedtest"
)

// BenchmarkVerify: the cost --amd-kds adds to a verification once the VCEK and CRL are
// cached (a map lookup, a hash of the CRL, a scan of its entries), against offline.
func BenchmarkVerify(b *testing.B) {
	p := platform(b)
	raw, chain, err := p.Report(sim.Options{})
	if err != nil {
		b.Fatal(err)
	}
	fake := kdstest.Start(b, p)
	g := newGetter(b, embeddedtest.Open(b), fake.Client())
	for _, bc := range []struct {
		name string
		ev   *snp.Evidence
		o    snp.Options
	}{
		{"offline", &snp.Evidence{Report: raw, Certs: snp.Certs{VCEK: chain.VCEK}}, snp.Options{ExtraRoots: simRoots(b, p), Cache: snp.NewChainCache(8)}},
		{"amd-kds", &snp.Evidence{Report: raw}, snp.Options{ExtraRoots: simRoots(b, p), Cache: snp.NewChainCache(8), Getter: g}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := snp.Verify(b.Context(), bc.ev, bc.o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	if n := fake.Requests(); n != 2 {
		b.Errorf("KDS saw %d requests, want 2", n)
	}
}
