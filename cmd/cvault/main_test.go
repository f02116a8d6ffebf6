package main

import (
	"bytes"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRoot()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestVersion(t *testing.T) {
	out, err := run(t, "version")
	if err != nil || !strings.HasPrefix(out, "cvault ") {
		t.Fatalf("version = %q, %v", out, err)
	}
}

func TestServeHelpListsFlags(t *testing.T) {
	out, err := run(t, "serve", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"--listen", "--url", "--data", "--store", "--root-key-file", "--vault-domain", "--tls-cert", "--hostname", "--trust-sim-root"} {
		if !strings.Contains(out, f) {
			t.Errorf("serve --help lacks %s", f)
		}
	}
}

func TestServeRefusesBadStore(t *testing.T) {
	_, err := run(t, "serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--store", "mysql://x")
	if err == nil || !strings.Contains(err.Error(), "unsupported --store") {
		t.Fatalf("err = %v", err)
	}
}
