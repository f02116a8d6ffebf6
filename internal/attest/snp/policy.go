package snp

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
)

// ErrPolicy is matched (errors.Is) by every *PolicyError.
var ErrPolicy = errors.New("SEV-SNP evidence does not satisfy the attestation policy")

// PolicyError is one failed policy check.
type PolicyError struct {
	Check    string
	Expected string
	Seen     string
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("policy check %s failed: expected %s, seen %s", e.Check, e.Expected, e.Seen)
}

// Is makes errors.Is(err, ErrPolicy) hold.
func (e *PolicyError) Is(target error) bool { return target == ErrPolicy }

// Policy is an attestation instance's policy over verified SNP evidence. Its zero value is the
// strict one: no debug, no migration agent, no SMT, VMPL 0 only, any report version ≥ 2 and any
// TCB/SVN. Non-empty reference lists must contain the report's value; empty ones impose
// nothing. The `default` instance uses Permissive, which refuses nothing beyond Verify's
// always-checks.
type Policy struct {
	AllowDebug          bool
	AllowMigrationAgent bool
	AllowSMT            bool
	// MaxVMPL is the highest VMPL accepted (0 = only the most privileged level).
	MaxVMPL uint32
	// MinimumTCB is compared part by part with REPORTED_TCB.
	MinimumTCB kds.TCBParts
	// MinimumGuestSVN is the lowest GUEST_SVN accepted.
	MinimumGuestSVN uint32
	// MinimumReportVersion is the lowest report version accepted (0 means 2).
	MinimumReportVersion uint32
	References           References
}

// References are operator-configured reference values; each non-empty list must contain the
// report's value. Entries are raw bytes (48 for measurements and key digests, 32 for host data).
type References struct {
	Measurements     [][]byte
	HostData         [][]byte
	IDKeyDigests     [][]byte
	AuthorKeyDigests [][]byte
}

// Permissive is the policy of the `default` instance: everything Verify accepts passes.
func Permissive() Policy {
	return Policy{AllowDebug: true, AllowMigrationAgent: true, AllowSMT: true, MaxVMPL: 3}
}

// Validate checks v against p and returns every failed check at once (errors.Join of
// *PolicyError), or nil.
func Validate(v *Verified, p Policy) error {
	r := v.Report
	pol, err := abi.ParseSnpPolicy(r.GetPolicy())
	if err != nil {
		return &PolicyError{Check: "guest-policy", Expected: "a parsable guest policy", Seen: fmt.Sprintf("%#x", r.GetPolicy())}
	}
	var errs []error
	fail := func(check, expected, seen string) {
		errs = append(errs, &PolicyError{Check: check, Expected: expected, Seen: seen})
	}
	if pol.Debug && !p.AllowDebug {
		fail("debug", "guest policy DEBUG off (debugging lets the host read guest memory)", "DEBUG on")
	}
	if pol.MigrateMA && !p.AllowMigrationAgent {
		fail("migration-agent", "guest policy MIGRATE_MA off", "MIGRATE_MA on")
	}
	if pol.SMT && !p.AllowSMT {
		fail("smt", "guest policy SMT off", "SMT allowed")
	}
	if r.GetVmpl() > p.MaxVMPL {
		fail("vmpl", fmt.Sprintf("VMPL ≤ %d", p.MaxVMPL), fmt.Sprintf("VMPL %d", r.GetVmpl()))
	}
	minVersion := max(p.MinimumReportVersion, abi.ReportVersion2)
	if r.GetVersion() < minVersion {
		fail("report-version", fmt.Sprintf("report version ≥ %d", minVersion), fmt.Sprintf("%d", r.GetVersion()))
	}
	reported := kds.TCBVersion(r.GetReportedTcb())
	if !kds.TCBPartsLE(p.MinimumTCB, kds.DecomposeTCBVersion(reported)) {
		minTCB, _ := kds.ComposeTCBParts(p.MinimumTCB)
		fail("minimum-tcb", "REPORTED_TCB ≥ "+tcbString(minTCB)+" in every part (update the host firmware/microcode)", tcbString(reported))
	}
	if r.GetGuestSvn() < p.MinimumGuestSVN {
		fail("guest-svn", fmt.Sprintf("GUEST_SVN ≥ %d", p.MinimumGuestSVN), fmt.Sprintf("%d", r.GetGuestSvn()))
	}
	for _, c := range p.References.checks(v) {
		if !c.ok {
			fail(c.name, fmt.Sprintf("one of %d configured reference values", c.n), fmt.Sprintf("%x", c.seen))
		}
	}
	return errors.Join(errs...)
}

type refCheck struct {
	name string
	n    int
	seen []byte
	ok   bool
}

func (refs References) checks(v *Verified) []refCheck {
	r := v.Report
	var out []refCheck
	for _, c := range []struct {
		name string
		list [][]byte
		seen []byte
	}{
		{"measurement", refs.Measurements, r.GetMeasurement()},
		{"host-data", refs.HostData, r.GetHostData()},
		{"id-key-digest", refs.IDKeyDigests, r.GetIdKeyDigest()},
		{"author-key-digest", refs.AuthorKeyDigests, r.GetAuthorKeyDigest()},
	} {
		if len(c.list) == 0 {
			continue
		}
		rc := refCheck{name: c.name, n: len(c.list), seen: c.seen}
		for _, want := range c.list {
			if bytes.Equal(want, c.seen) {
				rc.ok = true
				break
			}
		}
		out = append(out, rc)
	}
	return out
}

// Compliant is MAA's `azure-compliant-cvm` rule as cvault applies it: debug off, VMPL 0,
// migration agent off, and every configured reference list matched.
func Compliant(v *Verified, refs References) bool {
	pol, err := abi.ParseSnpPolicy(v.Report.GetPolicy())
	if err != nil || pol.Debug || pol.MigrateMA || v.Report.GetVmpl() != 0 {
		return false
	}
	for _, c := range refs.checks(v) {
		if !c.ok {
			return false
		}
	}
	return true
}
