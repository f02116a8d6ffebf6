package sim

import (
	"bytes"
	"crypto/rand"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "regenerate roots/*.pem (changes the simulated root every operator trusts)")

// TestRootsGolden keeps the embedded roots consistent with the fixed keys; with -update it
// writes them (once, by hand: regenerating invalidates every exported --trust-sim-root file).
func TestRootsGolden(t *testing.T) {
	for _, line := range productLines {
		path := filepath.Join("roots", line+".pem")
		if *update {
			certs, err := generateRoots(line, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			for _, c := range certs {
				pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
			}
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		certs, err := parsePEMCerts(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !publicKeysMatch(certs) {
			t.Errorf("%s: embedded certificates do not carry the fixed sim keys", path)
		}
		p, err := New(Config{ProductLine: line})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p.RootPEM(), raw) {
			t.Errorf("%s: RootPEM differs from the embedded file", line)
		}
	}
}
