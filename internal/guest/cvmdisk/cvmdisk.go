// Package cvmdisk is the in-VM half of a ConfidentialVM_DiskEncryptedWithCustomerKey
// disk (issue 8, seed 002): the guest attests, has the platform (as the
// Confidential VM Orchestrator) release its disk encryption set's key
// through Secure Key Release to the guest's transfer key, unwraps that key
// and the disk's data key itself, and then opens (or seals) the disk's
// sector records, which the disk's signed URL serves only as ciphertext.
// The server never holds the disk's key in the clear.
package cvmdisk

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azpolicy "github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	"github.com/cvault/cvault/internal/guest/skr"
	"github.com/cvault/cvault/internal/keywrap"
)

// ARMScope is the scope of the guest's token for the VM's ARM action.
const ARMScope = "https://management.azure.com/.default"

// APIVersion of the releaseDiskEncryptionKey action.
const APIVersion = "2024-11-01"

// rawFormat is the sector-record format the signed URL names.
const rawFormat = "cvault-sector-aes256gcm-v1"

var (
	// ErrRefused: the platform or the vault refused the release.
	ErrRefused = errors.New("cvmdisk: disk key release refused")
	// ErrFormat: the disk's metadata is missing or not a format this guest opens.
	ErrFormat = errors.New("cvmdisk: not a guest-keyed disk")
)

// Refusal is a refused release, with Azure's codes.
type Refusal struct {
	Status          int
	Code, InnerCode string
	Message         string
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("disk key release refused (%d %s/%s): %s", r.Status, r.Code, r.InnerCode, r.Message)
}

func (r *Refusal) Unwrap() error { return ErrRefused }

// Releaser asks the platform for the VM's disk encryption key.
type Releaser struct {
	Client *http.Client
	// Roots verify the vault's release JWS (x5c chain).
	Roots *x509.CertPool
	// Credential is the VM's managed identity (its token for ARM).
	Credential azcore.TokenCredential
	// ARM is the management endpoint's base URL.
	ARM string
	Now func() time.Time
}

// WrappedKey is a disk's data key as the platform stores it.
type WrappedKey struct {
	ID         string `json:"id"`
	UniqueID   string `json:"uniqueId"`
	KeyID      string `json:"keyId"`
	WrappedKey []byte `json:"wrappedKey"`
}

// DiskKey is a released disk encryption set key, in the guest only.
type DiskKey struct {
	// Key is the DES's RSA private key (released to the transfer key).
	Key *rsa.PrivateKey
	// KeyURL is the key version released.
	KeyURL string
	// OSDisk is the VM's OS disk's wrapped data key.
	OSDisk WrappedKey
	// Signer is the subject of the certificate that signed the release.
	Signer string
}

// Release posts the guest's attestation token (binding tk) to the VM's
// releaseDiskEncryptionKey action, verifies the vault's JWS and unwraps
// the released key with tk.
func (r *Releaser) Release(ctx context.Context, vmID string, tk *skr.EphemeralKey, attestation string) (*DiskKey, error) {
	at, err := r.Credential.GetToken(ctx, azpolicy.TokenRequestOptions{Scopes: []string{ARMScope}})
	if err != nil {
		return nil, fmt.Errorf("cvmdisk: managed-identity token: %w", err)
	}
	body, err := json.Marshal(map[string]string{"target": attestation, "enc": keywrap.EncRSAAESKeyWrap256})
	if err != nil {
		return nil, err
	}
	u := strings.TrimRight(r.ARM, "/") + strings.TrimRight(vmID, "/") + "/releaseDiskEncryptionKey?api-version=" + APIVersion
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("cvmdisk: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+at.Token)
	res, err := r.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cvmdisk: release: %w", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("cvmdisk: release: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, refusal(res.StatusCode, b)
	}
	var out struct {
		Value  string     `json:"value"`
		KeyURL string     `json:"keyUrl"`
		OSDisk WrappedKey `json:"osDisk"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Value == "" {
		return nil, fmt.Errorf("cvmdisk: release: no value in the response")
	}
	ku, err := url.Parse(out.KeyURL)
	if err != nil || ku.Host == "" {
		return nil, fmt.Errorf("cvmdisk: release: bad keyUrl %q", out.KeyURL)
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	// The JWS must be the key's own vault's, whoever carried it here.
	rel, err := skr.VerifyRelease(out.Value, r.Roots, ku.Host, now())
	if err != nil {
		return nil, err
	}
	if kid := strings.TrimRight(rel.Request.KID, "/"); kid != "" && !strings.HasPrefix(strings.ToLower(out.KeyURL), strings.ToLower(kid)) {
		return nil, fmt.Errorf("cvmdisk: the vault released %s, not %s", kid, out.KeyURL)
	}
	priv, err := tk.Unwrap(rel)
	if err != nil {
		return nil, err
	}
	if priv.RSA == nil {
		return nil, errors.New("cvmdisk: the released key is not an RSA key")
	}
	return &DiskKey{Key: priv.RSA, KeyURL: out.KeyURL, OSDisk: out.OSDisk, Signer: rel.Signer.Subject.CommonName}, nil
}

func refusal(status int, b []byte) error {
	var e struct {
		Error struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			InnerError *struct {
				Code string `json:"code"`
			} `json:"innererror"`
		} `json:"error"`
	}
	r := &Refusal{Status: status}
	if json.Unmarshal(b, &e) == nil {
		r.Code, r.Message = e.Error.Code, e.Error.Message
		if e.Error.InnerError != nil {
			r.InnerCode = e.Error.InnerError.Code
		}
	}
	return r
}

// UnwrapDataKey opens a disk's data key (RSA-OAEP-256, as the platform
// wrapped it through the vault) with the released key.
func (k *DiskKey) UnwrapDataKey(wrapped []byte) ([]byte, error) {
	dek, err := rsa.DecryptOAEP(sha256.New(), nil, k.Key, wrapped, nil)
	if err != nil {
		return nil, fmt.Errorf("cvmdisk: unwrap data key: %w", err)
	}
	if len(dek) != keySize {
		return nil, errors.New("cvmdisk: the unwrapped data key is not 32 bytes")
	}
	return dek, nil
}

// Meta is what a guest-keyed disk's signed URL says of its records.
type Meta struct {
	DiskID     string // bound into every sector's associated data
	KeyID      string // the key version the data key is wrapped by
	WrappedKey []byte
	Size       int64 // bytes of records
}

// ReadMeta reads a guest-keyed disk's blob properties (pageblob GetProperties).
func ReadMeta(ctx context.Context, c *pageblob.Client) (Meta, error) {
	p, err := c.GetProperties(ctx, nil)
	if err != nil {
		return Meta{}, fmt.Errorf("cvmdisk: blob properties: %w", err)
	}
	get := func(k string) string {
		for mk, v := range p.Metadata {
			if strings.EqualFold(mk, k) && v != nil {
				return *v
			}
		}
		return ""
	}
	if get("cvaultformat") != rawFormat || get("cvaultrecordsize") != strconv.Itoa(RecordSize) {
		return Meta{}, fmt.Errorf("%w: format %q", ErrFormat, get("cvaultformat"))
	}
	w, err := base64.StdEncoding.DecodeString(get("cvaultwrappedkey"))
	if err != nil || len(w) == 0 {
		return Meta{}, fmt.Errorf("%w: wrapped key", ErrFormat)
	}
	m := Meta{DiskID: get("cvaultdiskid"), KeyID: get("cvaultkeyid"), WrappedKey: w}
	if p.ContentLength != nil {
		m.Size = *p.ContentLength
	}
	return m, nil
}

// The sector-record format the signed URL names (cvault-sector-aes256gcm-v1,
// the server's diskcrypt): per 4 KiB sector, nonce(12) ‖ AES-256-GCM
// ciphertext ‖ tag(16), associated data "cvault/disk-sector/v1\x00" ‖ disk
// ID ‖ 0 ‖ sector number (big endian); an all-zero record is a sector
// never written. The guest implements it itself (it shares no code with
// the server), which also cross-checks the format.
const (
	SectorSize = 4096
	nonceSize  = 12
	RecordSize = nonceSize + SectorSize + 16
	keySize    = 32
	adPrefix   = "cvault/disk-sector/v1\x00"
)

// ErrIntegrity: a record that does not open (tampered, moved, other key).
var ErrIntegrity = errors.New("cvmdisk: sector record failed authentication")

// Sectors seals and opens one disk's sector records in the guest.
type Sectors struct {
	aead cipher.AEAD
	ad   []byte
}

// NewSectors returns the record cipher of disk diskID (Meta.DiskID) under dek.
func NewSectors(dek []byte, diskID string) (*Sectors, error) {
	if len(dek) != keySize {
		return nil, errors.New("cvmdisk: data key must be 32 bytes")
	}
	b, err := aes.NewCipher(dek)
	if err != nil {
		return nil, fmt.Errorf("cvmdisk: %w", err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("cvmdisk: %w", err)
	}
	return &Sectors{aead: g, ad: append(append([]byte(adPrefix), diskID...), 0)}, nil
}

func (s *Sectors) adOf(sector int64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), s.ad...), uint64(sector))
}

// Seal encrypts whole sectors of plaintext starting at sector first into records.
func (s *Sectors) Seal(plaintext []byte, first int64) ([]byte, error) {
	if len(plaintext)%SectorSize != 0 {
		return nil, fmt.Errorf("cvmdisk: %d bytes are not whole %d-byte sectors", len(plaintext), SectorSize)
	}
	n := len(plaintext) / SectorSize
	out := make([]byte, 0, n*RecordSize)
	for i := range n {
		nonce := make([]byte, nonceSize)
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("cvmdisk: nonce: %w", err)
		}
		out = append(out, nonce...)
		out = s.aead.Seal(out, nonce, plaintext[i*SectorSize:(i+1)*SectorSize], s.adOf(first+int64(i)))
	}
	return out, nil
}

// Open decrypts whole records (from sector first) into plaintext; a record
// that does not authenticate fails the whole read.
func (s *Sectors) Open(records []byte, first int64) ([]byte, error) {
	if len(records)%RecordSize != 0 {
		return nil, fmt.Errorf("cvmdisk: %d bytes are not whole %d-byte records", len(records), RecordSize)
	}
	n := len(records) / RecordSize
	out := make([]byte, 0, n*SectorSize)
	var zero [RecordSize]byte
	for i := range n {
		rec := records[i*RecordSize : (i+1)*RecordSize]
		if bytes.Equal(rec, zero[:]) {
			out = append(out, zero[:SectorSize]...)
			continue
		}
		var err error
		if out, err = s.aead.Open(out, rec[:nonceSize], rec[nonceSize:], s.adOf(first+int64(i))); err != nil {
			return nil, fmt.Errorf("sector %d: %w", first+int64(i), ErrIntegrity)
		}
	}
	return out, nil
}

// ReadRecords downloads n records from sector first through the signed URL.
func ReadRecords(ctx context.Context, c *pageblob.Client, first, n int64) ([]byte, error) {
	buf := make([]byte, n*RecordSize)
	got, err := c.DownloadBuffer(ctx, buf, &blob.DownloadBufferOptions{Range: blob.HTTPRange{Offset: first * RecordSize, Count: int64(len(buf))}})
	if err != nil {
		return nil, fmt.Errorf("cvmdisk: read records: %w", err)
	}
	return buf[:got], nil
}

// WriteRecords uploads sealed records at sector first through a write signed URL.
func WriteRecords(ctx context.Context, c *pageblob.Client, records []byte, first int64) error {
	_, err := c.UploadPages(ctx, nopCloser{bytes.NewReader(records)}, blob.HTTPRange{Offset: first * RecordSize, Count: int64(len(records))}, nil)
	if err != nil {
		return fmt.Errorf("cvmdisk: write records: %w", err)
	}
	return nil
}

type nopCloser struct{ io.ReadSeeker }

func (nopCloser) Close() error { return nil }
