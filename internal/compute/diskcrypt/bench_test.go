package diskcrypt_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"testing"

	"golang.org/x/crypto/xts"

	"github.com/cvault/cvault/internal/compute/diskcrypt"
)

// BenchmarkSector compares diskcrypt's per-sector GCM with raw AES-256-GCM
// and raw AES-256-XTS on one 4 KiB sector, and whole-disk I/O through the
// sparse-file block store.
func BenchmarkSector(b *testing.B) {
	dek := make([]byte, 32)
	rand.Read(dek)
	plain := make([]byte, diskcrypt.SectorSize)
	rand.Read(plain)
	c, _ := diskcrypt.NewCipher(dek, "bench", rand.Reader)
	rec := make([]byte, diskcrypt.RecordSize)
	b.Run("diskcrypt-seal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(diskcrypt.SectorSize)
		for b.Loop() {
			if err := c.Seal(rec, plain, 42); err != nil {
				b.Fatal(err)
			}
		}
	})
	out := make([]byte, diskcrypt.SectorSize)
	b.Run("diskcrypt-open", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(diskcrypt.SectorSize)
		for b.Loop() {
			if err := c.Open(out, rec, 42); err != nil {
				b.Fatal(err)
			}
		}
	})
	block, _ := aes.NewCipher(dek)
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	ct := gcm.Seal(nil, nonce, plain, nil)
	b.Run("raw-gcm-seal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(diskcrypt.SectorSize)
		dst := make([]byte, 0, len(ct))
		for b.Loop() {
			gcm.Seal(dst[:0], nonce, plain, nil)
		}
	})
	b.Run("raw-gcm-open", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(diskcrypt.SectorSize)
		for b.Loop() {
			if _, err := gcm.Open(out[:0], nonce, ct, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	x, _ := xts.NewCipher(aes.NewCipher, append(dek, dek[:16]...)[:64]) // AES-256-XTS: two 256-bit keys
	b.Run("raw-xts-encrypt", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(diskcrypt.SectorSize)
		for b.Loop() {
			x.Encrypt(out, plain, 42)
		}
	})
	b.Run("raw-xts-decrypt", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(diskcrypt.SectorSize)
		for b.Loop() {
			x.Decrypt(out, plain, 42)
		}
	})
	ctx := context.Background()
	d, _ := newDisk(b, 4<<20)
	buf := make([]byte, 1<<20)
	rand.Read(buf)
	b.Run("disk-write-1MiB", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			if err := d.WriteAt(ctx, buf, 1<<20); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("disk-read-1MiB", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			if err := d.ReadAt(ctx, buf, 1<<20); err != nil {
				b.Fatal(err)
			}
		}
	})
}
