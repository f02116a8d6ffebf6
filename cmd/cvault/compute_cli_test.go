package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cvault/cvault/internal/cvaulttest"
)

// TestComputeCLI drives vm, disk and des against a real server: an upload
// disk written and read back through its signed URL, a confidential VM
// with its identity and secret and power actions, and a DES refusal.
func TestComputeCLI(t *testing.T) {
	srv := cvaulttest.Start(t)
	dir := t.TempDir()
	cli(t, srv, "group", "create", "crg")

	// Disk data through beginGetAccess + the signed URL.
	data := make([]byte, 3*4096+512)
	rand.Read(data)
	in := filepath.Join(dir, "in.bin")
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var d struct {
		Properties struct{ DiskState string } `json:"properties"`
	}
	cliJSON(t, srv, &d, "disk", "create", "up1", "-g", "crg", "--upload-bytes", "16384")
	if d.Properties.DiskState != "ReadyToUpload" {
		t.Fatalf("disk state %q", d.Properties.DiskState)
	}
	if out := cli(t, srv, "disk", "write", "up1", "-g", "crg", "--in", in, "--offset", "512"); !strings.Contains(out, "wrote") {
		t.Errorf("write: %s", out)
	}
	outFile := filepath.Join(dir, "out.bin")
	cli(t, srv, "disk", "read", "up1", "-g", "crg", "--offset", "512", "--length", "12800", "--out", outFile)
	got, _ := os.ReadFile(outFile)
	if !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, differs from the %d written", len(got), len(data))
	}
	// A read of the whole disk to stdout.
	if out := cli(t, srv, "disk", "read", "up1", "-g", "crg", "--length", "1024"); len(out) != 1024 {
		t.Errorf("read to stdout: %d bytes", len(out))
	}
	if out := cli(t, srv, "disk", "list", "-g", "crg"); !strings.Contains(out, "up1") {
		t.Errorf("disk list: %s", out)
	}
	// Write access is only for ReadyToUpload disks: refused on an empty disk.
	cli(t, srv, "disk", "create", "empty1", "-g", "crg", "--size-gb", "1")
	if out, err := run(t, "disk", "write", "empty1", "-g", "crg", "--in", in, "--data", srv.Config.DataDir); err == nil || !strings.Contains(out+err.Error(), "OperationNotAllowed") {
		t.Errorf("write to an empty disk: %v %s", err, out)
	}

	// A confidential VM with a system-assigned identity and its MI secret.
	var vm struct {
		Identity struct{ PrincipalID string } `json:"identity"`
	}
	cliJSON(t, srv, &vm, "vm", "create", "cvm1", "-g", "crg")
	if vm.Identity.PrincipalID == "" {
		t.Fatal("VM has no system-assigned identity")
	}
	secretFile := filepath.Join(dir, "vm.secret")
	cli(t, srv, "vm", "identity-secret", "cvm1", "-g", "crg", "--secret-file", secretFile)
	if b, err := os.ReadFile(secretFile); err != nil || len(strings.TrimSpace(string(b))) < 40 {
		t.Errorf("secret file: %v %q", err, b)
	}
	cli(t, srv, "vm", "deallocate", "cvm1", "-g", "crg")
	cli(t, srv, "vm", "start", "cvm1", "-g", "crg")
	if out := cli(t, srv, "vm", "list", "-g", "crg"); !strings.Contains(out, "ConfidentialVM") {
		t.Errorf("vm list: %s", out)
	}
	// Seed 002: a confidential VM needs a confidential size.
	if out, err := run(t, "vm", "create", "bad", "-g", "crg", "--size", "Standard_D2s_v5", "--data", srv.Config.DataDir); err == nil || !strings.Contains(out+err.Error(), "not supported") {
		t.Errorf("non-confidential size: %v %s", err, out)
	}
	cli(t, srv, "vm", "delete", "cvm1", "-g", "crg")
	cli(t, srv, "disk", "delete", "up1", "-g", "crg")

	// A DES whose key cannot be reached is refused and not stored.
	out, err := run(t, "des", "create", "des1", "-g", "crg", "--key-url", "https://nokv.vault.localhost/keys/k/0123456789abcdef0123456789abcdef",
		"--user-assigned-identity", "/subscriptions/x/resourceGroups/crg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/none", "--data", srv.Config.DataDir)
	if err == nil {
		t.Fatalf("DES with a missing identity accepted: %s", out)
	}
	if out := cli(t, srv, "des", "list", "-g", "crg"); strings.Contains(out, "des1") {
		t.Errorf("refused DES stored: %s", out)
	}
}
