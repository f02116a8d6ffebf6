package instance

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"

	"github.com/cvault/cvault/internal/attest/snp"
)

// Policy is an instance's attestation policy: the knobs of snp.Policy in JSON. Its zero value
// is the strict one (no debug, no migration agent, no SMT, VMPL 0, any TCB), as snp.Policy's.
// A TDX quote is held to AllowDebug only (TD_ATTRIBUTES.DEBUG).
type Policy struct {
	AllowDebug           bool       `json:"allowDebug"`
	AllowMigrationAgent  bool       `json:"allowMigrationAgent"`
	AllowSMT             bool       `json:"allowSmt"`
	MaxVMPL              uint32     `json:"maxVmpl"`
	MinimumTCB           TCB        `json:"minimumTcb"`
	MinimumGuestSVN      uint32     `json:"minimumGuestSvn"`
	MinimumReportVersion uint32     `json:"minimumReportVersion,omitempty"`
	References           References `json:"referenceValues"`
	// AllowReferenceMismatch makes the reference values describe instead of refuse: a mismatch
	// only withholds x-ms-compliance-status (the `default` instance's behaviour).
	AllowReferenceMismatch bool `json:"allowReferenceMismatch"`
}

// TCB is a minimum platform TCB, part by part.
type TCB struct {
	Bootloader  uint8 `json:"bootloader"`
	TEE         uint8 `json:"tee"`
	SNPFirmware uint8 `json:"snpFirmware"`
	Microcode   uint8 `json:"microcode"`
}

// References are the instance's reference values, lowercase hex on the wire. A non-empty list
// must contain the report's value (a policy check; on a permissive instance it only decides
// x-ms-compliance-status).
type References struct {
	Measurements     []Hex `json:"measurements,omitempty"`
	HostData         []Hex `json:"hostData,omitempty"`
	IDKeyDigests     []Hex `json:"idKeyDigests,omitempty"`
	AuthorKeyDigests []Hex `json:"authorKeyDigests,omitempty"`
}

// Hex is bytes written as hex in JSON.
type Hex []byte

// MarshalJSON writes lowercase hex.
func (h Hex) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }

// UnmarshalJSON reads hex in either case.
func (h *Hex) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("not hex: %q", s)
	}
	*h = v
	return nil
}

// Permissive is the `default` instance's policy: nothing is refused beyond the always-checks.
func Permissive() Policy {
	p := snp.Permissive()
	return Policy{AllowDebug: p.AllowDebug, AllowMigrationAgent: p.AllowMigrationAgent, AllowSMT: p.AllowSMT, MaxVMPL: p.MaxVMPL,
		AllowReferenceMismatch: true}
}

// Check reports every malformed field at once.
func (p Policy) Check() error {
	var errs []error
	if p.MaxVMPL > 3 {
		errs = append(errs, fmt.Errorf("maxVmpl %d: VMPLs are 0 to 3", p.MaxVMPL))
	}
	if p.MinimumReportVersion != 0 && p.MinimumReportVersion < abi.ReportVersion2 {
		errs = append(errs, fmt.Errorf("minimumReportVersion %d: SEV-SNP reports start at version 2", p.MinimumReportVersion))
	}
	for _, l := range []struct {
		name string
		list []Hex
		size int
	}{
		{"measurements", p.References.Measurements, abi.MeasurementSize},
		{"hostData", p.References.HostData, abi.HostDataSize},
		{"idKeyDigests", p.References.IDKeyDigests, abi.IDKeyDigestSize},
		{"authorKeyDigests", p.References.AuthorKeyDigests, abi.AuthorKeyDigestSize},
	} {
		for i, v := range l.list {
			if len(v) != l.size {
				errs = append(errs, fmt.Errorf("referenceValues.%s[%d]: %d bytes, want %d (%d hex characters)", l.name, i, len(v), l.size, 2*l.size))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// SNP converts p for snp.Validate; with AllowReferenceMismatch its References are empty (see
// SNPReferences).
func (p Policy) SNP() snp.Policy {
	sp := snp.Policy{
		AllowDebug:           p.AllowDebug,
		AllowMigrationAgent:  p.AllowMigrationAgent,
		AllowSMT:             p.AllowSMT,
		MaxVMPL:              p.MaxVMPL,
		MinimumTCB:           kds.TCBParts{BlSpl: p.MinimumTCB.Bootloader, TeeSpl: p.MinimumTCB.TEE, SnpSpl: p.MinimumTCB.SNPFirmware, UcodeSpl: p.MinimumTCB.Microcode},
		MinimumGuestSVN:      p.MinimumGuestSVN,
		MinimumReportVersion: p.MinimumReportVersion,
	}
	if !p.AllowReferenceMismatch {
		sp.References = p.SNPReferences()
	}
	return sp
}

// SNPReferences are the reference values for x-ms-compliance-status.
func (p Policy) SNPReferences() snp.References {
	return snp.References{
		Measurements:     bytesList(p.References.Measurements),
		HostData:         bytesList(p.References.HostData),
		IDKeyDigests:     bytesList(p.References.IDKeyDigests),
		AuthorKeyDigests: bytesList(p.References.AuthorKeyDigests),
	}
}

// Text is the policy's canonical JSON, the text x-ms-policy-hash is computed from.
func (p Policy) Text() string {
	b, _ := json.Marshal(p) // plain struct of numbers, bools and hex: cannot fail
	return string(b)
}

func bytesList(l []Hex) [][]byte {
	if len(l) == 0 {
		return nil
	}
	out := make([][]byte, len(l))
	for i, v := range l {
		out[i] = v
	}
	return out
}
