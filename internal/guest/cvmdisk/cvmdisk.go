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
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
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

	"github.com/cvault/cvault/internal/compute/diskcrypt"
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
	if len(dek) != diskcrypt.KeySize {
		return nil, fmt.Errorf("cvmdisk: data key: %w", diskcrypt.ErrKeySize)
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
	if get("cvaultformat") != rawFormat || get("cvaultrecordsize") != strconv.Itoa(diskcrypt.RecordSize) {
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

// Sectors seals and opens one disk's sector records in the guest.
type Sectors struct{ c *diskcrypt.Cipher }

// NewSectors returns the record cipher of disk diskID (Meta.DiskID) under dek.
func NewSectors(dek []byte, diskID string) (*Sectors, error) {
	c, err := diskcrypt.NewCipher(dek, diskID, rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Sectors{c: c}, nil
}

// Seal encrypts whole sectors of plaintext starting at sector first into records.
func (s *Sectors) Seal(plaintext []byte, first int64) ([]byte, error) {
	if len(plaintext)%diskcrypt.SectorSize != 0 {
		return nil, fmt.Errorf("cvmdisk: %d bytes are not whole %d-byte sectors", len(plaintext), diskcrypt.SectorSize)
	}
	n := int64(len(plaintext) / diskcrypt.SectorSize)
	out := make([]byte, n*diskcrypt.RecordSize)
	for i := range n {
		if err := s.c.Seal(out[i*diskcrypt.RecordSize:(i+1)*diskcrypt.RecordSize], plaintext[i*diskcrypt.SectorSize:(i+1)*diskcrypt.SectorSize], first+i); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Open decrypts whole records (from sector first) into plaintext; a record
// that does not authenticate fails the whole read.
func (s *Sectors) Open(records []byte, first int64) ([]byte, error) {
	if len(records)%diskcrypt.RecordSize != 0 {
		return nil, fmt.Errorf("cvmdisk: %d bytes are not whole %d-byte records", len(records), diskcrypt.RecordSize)
	}
	n := int64(len(records) / diskcrypt.RecordSize)
	out := make([]byte, n*diskcrypt.SectorSize)
	for i := range n {
		if err := s.c.Open(out[i*diskcrypt.SectorSize:(i+1)*diskcrypt.SectorSize], records[i*diskcrypt.RecordSize:(i+1)*diskcrypt.RecordSize], first+i); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ReadRecords downloads n records from sector first through the signed URL.
func ReadRecords(ctx context.Context, c *pageblob.Client, first, n int64) ([]byte, error) {
	buf := make([]byte, n*diskcrypt.RecordSize)
	got, err := c.DownloadBuffer(ctx, buf, &blob.DownloadBufferOptions{Range: blob.HTTPRange{Offset: first * diskcrypt.RecordSize, Count: int64(len(buf))}})
	if err != nil {
		return nil, fmt.Errorf("cvmdisk: read records: %w", err)
	}
	return buf[:got], nil
}

// WriteRecords uploads sealed records at sector first through a write signed URL.
func WriteRecords(ctx context.Context, c *pageblob.Client, records []byte, first int64) error {
	_, err := c.UploadPages(ctx, nopCloser{bytes.NewReader(records)}, blob.HTTPRange{Offset: first * diskcrypt.RecordSize, Count: int64(len(records))}, nil)
	if err != nil {
		return fmt.Errorf("cvmdisk: write records: %w", err)
	}
	return nil
}

type nopCloser struct{ io.ReadSeeker }

func (nopCloser) Close() error { return nil }
