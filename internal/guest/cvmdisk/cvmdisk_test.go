package cvmdisk_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/cvault/cvault/internal/compute/diskcrypt"
	"github.com/cvault/cvault/internal/guest/cvmdisk"
)

// The guest's independent sector format interoperates with the server's
// diskcrypt both ways; tampering, moving and never-written records behave.
func TestSectorsMatchDiskcrypt(t *testing.T) {
	if cvmdisk.SectorSize != diskcrypt.SectorSize || cvmdisk.RecordSize != diskcrypt.RecordSize {
		t.Fatal("geometry differs from diskcrypt")
	}
	dek := make([]byte, 32)
	rand.Read(dek)
	const id = "00000000-1111-4222-8333-444444444444"
	server, err := diskcrypt.NewCipher(dek, id, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	guest, err := cvmdisk.NewSectors(dek, id)
	if err != nil {
		t.Fatal(err)
	}
	plain := bytes.Repeat([]byte("sector!"), 2*4096/7+1)[:2*4096]

	// Server seals sector 5 and 6, guest opens.
	recs := make([]byte, 2*diskcrypt.RecordSize)
	for i := range 2 {
		if err := server.Seal(recs[i*diskcrypt.RecordSize:(i+1)*diskcrypt.RecordSize], plain[i*4096:(i+1)*4096], int64(5+i)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := guest.Open(recs, 5)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("guest open of server records: %v", err)
	}
	// Guest seals, server opens.
	g, err := guest.Seal(plain, 9)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 4096)
	if err := server.Open(out, g[diskcrypt.RecordSize:], 10); err != nil || !bytes.Equal(out, plain[4096:]) {
		t.Fatalf("server open of guest record: %v", err)
	}
	// Moved to another sector, other disk, tampered: refused.
	if _, err := guest.Open(g, 10); !errors.Is(err, cvmdisk.ErrIntegrity) {
		t.Errorf("moved record: %v", err)
	}
	other, _ := cvmdisk.NewSectors(dek, "other-disk")
	if _, err := other.Open(g, 9); !errors.Is(err, cvmdisk.ErrIntegrity) {
		t.Errorf("other disk: %v", err)
	}
	g[100] ^= 1
	if _, err := guest.Open(g, 9); !errors.Is(err, cvmdisk.ErrIntegrity) {
		t.Errorf("tampered record: %v", err)
	}
	// Never written reads as zeros; partial input is refused.
	z, err := guest.Open(make([]byte, diskcrypt.RecordSize), 0)
	if err != nil || !bytes.Equal(z, make([]byte, 4096)) {
		t.Errorf("unwritten record: %v", err)
	}
	if _, err := guest.Open(make([]byte, 10), 0); err == nil {
		t.Error("partial record accepted")
	}
	if _, err := cvmdisk.NewSectors(dek[:16], id); err == nil {
		t.Error("short key accepted")
	}
}
