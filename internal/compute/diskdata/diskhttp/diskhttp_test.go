package diskhttp_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	"github.com/cvault/cvault/internal/app"
	"github.com/cvault/cvault/internal/compute/diskcrypt"
	"github.com/cvault/cvault/internal/cvaulttest"
)

type nopCloser struct{ io.ReadSeeker }

func (nopCloser) Close() error { return nil }

func pageClient(t testing.TB, srv *cvaulttest.Server, sasURL string) *pageblob.Client {
	t.Helper()
	c, err := pageblob.NewClientWithNoCredential(sasURL, &pageblob.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: srv.HTTPClient,
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func createDisk(t testing.TB, srv *cvaulttest.Server, id string, size int64) {
	t.Helper()
	svc := srv.App.DiskData
	if err := svc.Create(context.Background(), id, size, svc.Platform()); err != nil {
		t.Fatal(err)
	}
}

// upload writes data through UploadPages in 4 MiB calls.
func upload(t testing.TB, c *pageblob.Client, data []byte) {
	t.Helper()
	for off := 0; off < len(data); off += 4 << 20 {
		n := min(4<<20, len(data)-off)
		_, err := c.UploadPages(context.Background(), nopCloser{bytes.NewReader(data[off : off+n])},
			blob.HTTPRange{Offset: int64(off), Count: int64(n)}, nil)
		if err != nil {
			t.Fatalf("UploadPages at %d: %v", off, err)
		}
	}
}

func download(t testing.TB, c *pageblob.Client, size int64) []byte {
	t.Helper()
	got := make([]byte, size)
	n, err := c.DownloadBuffer(context.Background(), got, &blob.DownloadBufferOptions{BlockSize: 4 << 20, Concurrency: 4})
	if err != nil {
		t.Fatalf("DownloadBuffer: %v", err)
	}
	if n != size {
		t.Fatalf("DownloadBuffer read %d of %d bytes", n, size)
	}
	return got
}

func TestPageBlobRoundTrip(t *testing.T) {
	srv := cvaulttest.Start(t)
	ctx := context.Background()
	const size = 9<<20 + 512 // not a multiple of 4 MiB or of the 4 KiB sector
	createDisk(t, srv, "disk-1", size)
	u, err := srv.App.DiskData.GrantAccess(ctx, "disk-1", time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u, srv.URL+"/disks-data/disk-1?") {
		t.Fatalf("URL %s", u)
	}
	c := pageClient(t, srv, u)

	props, err := c.GetProperties(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if props.ContentLength == nil || *props.ContentLength != size || props.BlobType == nil || *props.BlobType != blob.BlobTypePageBlob {
		t.Fatalf("properties: length %v type %v", props.ContentLength, props.BlobType)
	}
	// A fresh disk reads as zeros.
	if got := download(t, c, size); !bytes.Equal(got, make([]byte, size)) {
		t.Fatal("fresh disk is not zero")
	}

	// Random data with a findable marker in every 512-byte page.
	data := make([]byte, size)
	rand.Read(data)
	marker := []byte("CVAULT-PLAINTEXT-MARKER-0123456789")
	for off := 0; off+512 <= size; off += 512 {
		copy(data[off:], marker)
	}
	upload(t, c, data)

	got := download(t, c, size)
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatal("SHA-256 of the read-back disk differs")
	}
	// DownloadStream with a range (x-ms-range semantics via Range).
	rs, err := c.DownloadStream(ctx, &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: 4096 + 100, Count: 10000}})
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(rs.Body)
	rs.Body.Close()
	if !bytes.Equal(part, data[4196:14196]) {
		t.Fatal("ranged DownloadStream differs")
	}
	// ClearPages zeroes a range.
	if _, err := c.ClearPages(ctx, blob.HTTPRange{Offset: 8192, Count: 8192}, nil); err != nil {
		t.Fatal(err)
	}
	clear(data[8192:16384])
	if got := download(t, c, size); !bytes.Equal(got, data) {
		t.Fatal("after ClearPages the disk differs")
	}

	// The block file holds no plaintext page.
	raw, err := os.ReadFile(filepath.Join(srv.Config.DataDir, "disks", "disk-1.blk"))
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < size {
		t.Fatalf("block file is %d bytes", len(raw))
	}
	if bytes.Contains(raw, marker[:16]) {
		t.Fatal("block file contains plaintext")
	}
	for off := 0; off+512 <= size; off += 512 * 97 {
		if bytes.Contains(raw, data[off+64:off+512]) && !bytes.Equal(data[off+64:off+512], make([]byte, 448)) {
			t.Fatalf("block file contains the plaintext of page at %d", off)
		}
	}
}

func storageCode(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return fmt.Sprintf("%d %s", re.StatusCode, re.ErrorCode)
	}
	return err.Error()
}

func TestSignedURLRefusals(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv := cvaulttest.Start(t, cvaulttest.WithConfig(func(c *app.Config) { c.Now = clock }))
	ctx := context.Background()
	createDisk(t, srv, "disk-2", 1<<20)
	ro, err := srv.App.DiskData.GrantAccess(ctx, "disk-2", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	page := nopCloser{bytes.NewReader(make([]byte, 512))}
	// Read-only URL: reads work, writes are refused.
	if _, err := pageClient(t, srv, ro).GetProperties(ctx, nil); err != nil {
		t.Fatal(err)
	}
	_, err = pageClient(t, srv, ro).UploadPages(ctx, page, blob.HTTPRange{Offset: 0, Count: 512}, nil)
	if !bloberror.HasCode(err, bloberror.AuthorizationPermissionMismatch) {
		t.Fatalf("write with a read-only URL: %v", storageCode(err))
	}

	u, _ := url.Parse(ro)
	tamper := func(mod func(q url.Values)) string {
		q := u.Query()
		mod(q)
		v := *u
		v.RawQuery = q.Encode()
		return v.String()
	}
	for name, bad := range map[string]string{
		"sp raised to rw":  tamper(func(q url.Values) { q.Set("sp", "rw") }),
		"expiry extended":  tamper(func(q url.Values) { q.Set("se", now.Add(48*time.Hour).UTC().Format(time.RFC3339)) }),
		"signature bit":    tamper(func(q url.Values) { s := []byte(q.Get("sig")); s[3] ^= 1; q.Set("sig", string(s)) }),
		"no signature":     tamper(func(q url.Values) { q.Del("sig") }),
		"other disk":       strings.Replace(ro, "disk-2", "disk-3", 1),
		"malformed expiry": tamper(func(q url.Values) { q.Set("se", "tomorrow") }),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := pageClient(t, srv, bad).GetProperties(ctx, nil)
			if !bloberror.HasCode(err, bloberror.AuthenticationFailed) {
				t.Fatalf("got %v", storageCode(err))
			}
			// The body is Azure Storage's XML error.
			resp, err := srv.HTTPClient.Get(bad)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden || !bytes.Contains(body, []byte("<Error><Code>AuthenticationFailed</Code><Message>")) {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
		})
	}

	// Expiry.
	mu.Lock()
	now = now.Add(time.Hour + time.Second)
	mu.Unlock()
	if _, err := pageClient(t, srv, ro).GetProperties(ctx, nil); !bloberror.HasCode(err, bloberror.AuthenticationFailed) {
		t.Fatalf("expired URL: %v", storageCode(err))
	}

	// Revocation (endGetAccess) voids an unexpired URL.
	rw, err := srv.App.DiskData.GrantAccess(ctx, "disk-2", time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pageClient(t, srv, rw).UploadPages(ctx, nopCloser{bytes.NewReader(make([]byte, 512))}, blob.HTTPRange{Offset: 0, Count: 512}, nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.App.DiskData.RevokeAccess(ctx, "disk-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := pageClient(t, srv, rw).GetProperties(ctx, nil); !bloberror.HasCode(err, bloberror.AuthenticationFailed) {
		t.Fatalf("revoked URL: %v", storageCode(err))
	}
	again, _ := srv.App.DiskData.GrantAccess(ctx, "disk-2", time.Hour, false)
	if _, err := pageClient(t, srv, again).GetProperties(ctx, nil); err != nil {
		t.Fatalf("fresh grant after revoke: %v", err)
	}
}

func TestPutPageValidation(t *testing.T) {
	srv := cvaulttest.Start(t)
	ctx := context.Background()
	createDisk(t, srv, "disk-4", 1<<20)
	u, _ := srv.App.DiskData.GrantAccess(ctx, "disk-4", time.Hour, true)
	for _, tt := range []struct {
		name, rng, mode string
		body            int
		want            string
	}{
		{"unaligned start", "bytes=100-611", "update", 512, "416 InvalidPageRange"},
		{"unaligned length", "bytes=0-99", "update", 100, "416 InvalidPageRange"},
		{"past the end", fmt.Sprintf("bytes=%d-%d", 1<<20, 1<<20+511), "update", 512, "416 InvalidPageRange"},
		{"body shorter than range", "bytes=0-1023", "update", 512, "400 InvalidHeaderValue"},
		{"bad mode", "bytes=0-511", "append", 512, "400 InvalidHeaderValue"},
		{"no mode", "bytes=0-511", "", 512, "400 MissingRequiredHeader"},
		{"no range", "", "update", 512, "400 MissingRequiredHeader"},
		{"ok", "bytes=0-511", "update", 512, "201 "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPut, u+"&comp=page", bytes.NewReader(make([]byte, tt.body)))
			if tt.rng != "" {
				req.Header.Set("x-ms-range", tt.rng)
			}
			if tt.mode != "" {
				req.Header.Set("x-ms-page-write", tt.mode)
			}
			resp, err := srv.HTTPClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("x-ms-error-code")); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// Writers of different sectors through the signed URL, at once.
func TestConcurrentUploads(t *testing.T) {
	srv := cvaulttest.Start(t)
	ctx := context.Background()
	const writers, each = 8, 256 << 10
	createDisk(t, srv, "disk-5", writers*each)
	u, _ := srv.App.DiskData.GrantAccess(ctx, "disk-5", time.Hour, true)
	c := pageClient(t, srv, u)
	data := make([]byte, writers*each)
	rand.Read(data)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for off := w * 4096; off < len(data); off += writers * 4096 { // interleaved sectors
				if _, err := c.UploadPages(ctx, nopCloser{bytes.NewReader(data[off : off+4096])}, blob.HTTPRange{Offset: int64(off), Count: 4096}, nil); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := download(t, c, int64(len(data))); !bytes.Equal(got, data) {
		t.Fatal("concurrent uploads lost data")
	}
}

// The data key is unusable without its wrapping key: a server on the
// same data but another platform key cannot read the disk.
func TestDataKeyNeedsWrappingKey(t *testing.T) {
	srv := cvaulttest.Start(t)
	ctx := context.Background()
	createDisk(t, srv, "disk-6", 1<<20)
	other, _ := diskcrypt.NewPlatform("platform/1", bytes.Repeat([]byte{7}, 32))
	if err := srv.App.DiskData.Create(ctx, "disk-7", 1<<20, other); err != nil {
		t.Fatal(err)
	}
	// disk-7's key is wrapped by a platform key this server does not hold
	// (same key id, different key): its URL is valid but the key won't open.
	u, _ := srv.App.DiskData.GrantAccess(ctx, "disk-7", time.Hour, false)
	_, err := pageClient(t, srv, u).DownloadStream(ctx, nil)
	if !bloberror.HasCode(err, "KeyVaultAccessForbidden") {
		t.Fatalf("read with an unopenable data key: %v", storageCode(err))
	}
}

// BenchmarkSignedURL measures disk I/O through the signed URL over HTTPS
// with azblob (4 MiB per call), beside raw AES-256-GCM over the same bytes.
func BenchmarkSignedURL(b *testing.B) {
	srv := cvaulttest.Start(b)
	ctx := context.Background()
	const n = 4 << 20
	createDisk(b, srv, "bench", 16<<20)
	u, _ := srv.App.DiskData.GrantAccess(ctx, "bench", time.Hour, true)
	c := pageClient(b, srv, u)
	data := make([]byte, n)
	rand.Read(data)
	b.Run("raw-gcm-seal-4MiB", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(n)
		key := make([]byte, 32)
		block, _ := aesNew(key)
		dst := make([]byte, 0, 4096+16)
		nonce := make([]byte, 12)
		for b.Loop() {
			for off := 0; off < n; off += 4096 {
				block.Seal(dst[:0], nonce, data[off:off+4096], nil)
			}
		}
	})
	b.Run("https-upload-4MiB", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(n)
		for b.Loop() {
			if _, err := c.UploadPages(ctx, nopCloser{bytes.NewReader(data)}, blob.HTTPRange{Offset: 4 << 20, Count: n}, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	got := make([]byte, n)
	b.Run("https-download-4MiB", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(n)
		for b.Loop() {
			if _, err := c.DownloadBuffer(ctx, got, &blob.DownloadBufferOptions{Range: blob.HTTPRange{Offset: 4 << 20, Count: n}, BlockSize: n}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func aesNew(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
