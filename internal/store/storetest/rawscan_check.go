package storetest

import (
	"testing"

	"github.com/cvault/cvault/internal/store"
)

// CheckRawScan proves RawScan works on a backend: a marker written through
// the store is found in its raw bytes, one never written is not. Each
// backend's tests run it, so a scan that can never find anything fails.
func CheckRawScan(t *testing.T, s store.Store) {
	t.Helper()
	marker := []byte("cvault-raw-marker-7f3a9c")
	if _, err := store.Put(t.Context(), s, "secret", "k", marker, store.Absent); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		marker []byte
		want   bool
	}{
		{marker, true},
		{[]byte("cvault-never-written-marker"), false},
	} {
		got, err := RawScan(t.Context(), s, tt.marker)
		if err != nil || got != tt.want {
			t.Fatalf("RawScan(%q) = %v, %v; want %v", tt.marker, got, err, tt.want)
		}
	}
}
