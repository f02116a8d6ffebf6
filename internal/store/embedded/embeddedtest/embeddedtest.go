// Package embeddedtest gives other packages' tests a fresh embedded store in
// a temporary directory, closed when the test ends.
package embeddedtest

import (
	"path/filepath"
	"testing"

	"github.com/cvault/cvault/internal/store/embedded"
)

// Open returns a fresh, empty embedded store in t.TempDir().
func Open(t testing.TB) *embedded.DB {
	t.Helper()
	db, err := embedded.Open(filepath.Join(t.TempDir(), "cvault.db"), embedded.Options{})
	if err != nil {
		t.Fatalf("embeddedtest: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("embeddedtest: close: %v", err)
		}
	})
	return db
}
