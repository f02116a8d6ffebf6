package demo

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestSKRDemo runs seed 000 end to end over HTTPS (SDK, REST and the guest
// agent) and checks every step held, including the four refusals' codes.
func TestSKRDemo(t *testing.T) {
	var out, logs bytes.Buffer
	if err := Run(t.Context(), Config{Out: &out, Logs: &logs}, "skr"); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	assertNoSecretsLogged(t, logs.String())
	if got := strings.Count(out.String(), " ok "); got != len(skrSteps) {
		t.Errorf("%d steps ok, want %d:\n%s", got, len(skrSteps), out.String())
	}
	t.Log("\n" + out.String())
}

// TestSKRDemoBreak proves a failing step fails the run (CVAULT_DEMO_BREAK):
// the first, a middle and the last step (each run costs a whole scenario).
func TestSKRDemoBreak(t *testing.T) {
	if testing.Short() {
		t.Skip("three full demo runs")
	}
	for _, step := range []string{"server", "guest-release", "audit-log"} {
		t.Run(step, func(t *testing.T) {
			var out bytes.Buffer
			err := Run(t.Context(), Config{Out: &out, Break: step})
			if !errors.Is(err, ErrStep) || !strings.Contains(err.Error(), "skr/"+step) {
				t.Fatalf("Break=%s: err = %v", step, err)
			}
			if !strings.Contains(out.String(), step) || !strings.Contains(out.String(), "FAIL") {
				t.Errorf("output does not show the failed step:\n%s", out.String())
			}
		})
	}
}

func TestUnknownScenario(t *testing.T) {
	if err := Run(t.Context(), Config{}, "nope"); err == nil || !strings.Contains(err.Error(), "skr") {
		t.Fatalf("err = %v", err)
	}
}

// TestCrossTenantDemo runs seed 003 end to end and the customer's kill switch.
func TestCrossTenantDemo(t *testing.T) {
	var out, logs bytes.Buffer
	if err := Run(t.Context(), Config{Out: &out, Logs: &logs}, "cross-tenant"); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	assertNoSecretsLogged(t, logs.String())
	if got := strings.Count(out.String(), " ok "); got != len(crossTenantSteps) {
		t.Errorf("%d steps ok, want %d:\n%s", got, len(crossTenantSteps), out.String())
	}
	t.Log("\n" + out.String())
}

// A broken cross-tenant step (here: the customer's grant) fails the run.
func TestCrossTenantDemoBreak(t *testing.T) {
	var out bytes.Buffer
	err := Run(t.Context(), Config{Out: &out, Break: "customer-grant"}, "cross-tenant")
	if !errors.Is(err, ErrStep) || !strings.Contains(err.Error(), "cross-tenant/customer-grant") {
		t.Fatalf("err = %v\n%s", err, out.String())
	}
}

// TestRotateDemo runs seed 004 end to end: refused while a VM runs, the
// rotation, a partial one and its retry.
func TestRotateDemo(t *testing.T) {
	var out bytes.Buffer
	if err := Run(t.Context(), Config{Out: &out}, "rotate"); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if got := strings.Count(out.String(), " ok "); got != len(rotateSteps) {
		t.Errorf("%d steps ok, want %d:\n%s", got, len(rotateSteps), out.String())
	}
	t.Log("\n" + out.String())
}

// TestCVMDiskDemo runs the confidential customer-key disk end to end: the
// Orchestrator refusal, the guest's release and unwrap, ciphertext-only
// beginGetAccess and its decryption in the guest.
func TestCVMDiskDemo(t *testing.T) {
	var out bytes.Buffer
	if err := Run(t.Context(), Config{Out: &out}, "cvm-disk"); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if got := strings.Count(out.String(), " ok "); got != len(cvmDiskSteps) {
		t.Errorf("%d steps ok, want %d:\n%s", got, len(cvmDiskSteps), out.String())
	}
	t.Log("\n" + out.String())
}

// A broken cvm-disk step (the guest's release) fails the run.
func TestCVMDiskDemoBreak(t *testing.T) {
	var out bytes.Buffer
	err := Run(t.Context(), Config{Out: &out, Break: "guest-disk-key"}, "cvm-disk")
	if !errors.Is(err, ErrStep) || !strings.Contains(err.Error(), "cvm-disk/guest-disk-key") {
		t.Fatalf("err = %v\n%s", err, out.String())
	}
}
