package internal_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/cvault/cvault/"

// TestLayering enforces that dependencies point one way (style.md §1):
// handlers over services over storage and wire formats, the in-VM side
// apart from the server, and the bottom packages free of cvault imports.
func TestLayering(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	imports := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		pkg := strings.TrimPrefix(f[0], module)
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, module) {
				imports[pkg] = append(imports[pkg], strings.TrimPrefix(imp, module))
			}
		}
		if _, ok := imports[pkg]; !ok {
			imports[pkg] = nil
		}
	}
	if len(imports) < 20 {
		t.Fatalf("go list found only %d packages", len(imports))
	}
	isHTTP := func(p string) bool { return strings.HasSuffix(path.Base(p), "http") }
	top := []string{"cmd/cvault", "internal/app", "internal/cvaulttest", "internal/demo"}
	// Packages at the bottom and the only cvault packages each may import.
	leaves := map[string][]string{
		"internal/store":          nil,
		"internal/azure":          nil,
		"internal/authn":          nil,
		"internal/jwk":            nil,
		"internal/release/policy": nil,
		"internal/sim":            nil,
		"internal/loadgen":        nil,
		"internal/localdial":      nil,
		"internal/attest":         nil,
		"internal/route":          {"internal/azure"},
		"internal/keywrap":        {"internal/jwk"},
		"internal/keyops":         {"internal/jwk", "internal/keywrap"},
		"internal/barrier":        {"internal/store"},
	}
	for pkg, deps := range imports {
		for _, dep := range deps {
			switch {
			case slices.Contains(top[1:], dep) && !slices.Contains(top, pkg):
				t.Errorf("%s imports %s: only the top layer (%v) assembles the server", pkg, dep, top)
			case (isHTTP(dep) || dep == "internal/server") && !slices.Contains(top, pkg) && !isHTTP(pkg):
				t.Errorf("%s imports the HTTP layer %s: services must not depend on handlers", pkg, dep)
			case dep == "internal/route" && !isHTTP(pkg) && pkg != "internal/server" && !slices.Contains(top, pkg):
				t.Errorf("%s imports internal/route: route tables belong to the *http packages", pkg)
			case strings.HasPrefix(pkg, "internal/guest") && !guestMayImport(dep):
				t.Errorf("%s (in-VM side) imports server-side %s", pkg, dep)
			}
			if allowed, ok := leaves[pkg]; ok && !slices.Contains(allowed, dep) {
				t.Errorf("%s is a bottom package and may import only %v, not %s", pkg, allowed, dep)
			}
		}
	}
}

// guestMayImport lists what the in-VM agent may use: wire formats, the
// evidence parsers and the simulator, never server-side services or stores.
func guestMayImport(dep string) bool {
	return strings.HasPrefix(dep, "internal/guest") || slices.Contains([]string{
		"internal/attest", "internal/attest/snp", "internal/attest/tdx", "internal/sim",
		"internal/jwk", "internal/keywrap", "internal/localdial",
	}, dep)
}
