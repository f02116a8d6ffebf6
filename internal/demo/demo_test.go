package demo

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func TestCrossTenantDemo(t *testing.T) {
	var out bytes.Buffer
	err := Run(context.Background(), &out, []string{"cross-tenant"}, Options{DEKCacheTTL: 500_000_000})
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
}

func TestDemoCanFail(t *testing.T) {
	var out bytes.Buffer
	err := Run(context.Background(), &out, []string{"cross-tenant"}, Options{Break: "customer-grant"})
	if !errors.Is(err, ErrBroken) {
		t.Fatalf("broken demo: %v\n%s", err, out.String())
	}
	if !bytes.Contains(out.Bytes(), []byte("FAILED")) {
		t.Errorf("no FAILED line:\n%s", out.String())
	}
}
