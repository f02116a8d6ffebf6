package compute

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/cvault/cvault/internal/arm"
	"github.com/cvault/cvault/internal/compute/diskcrypt"
	"github.com/cvault/cvault/internal/identity"
)

// Key-access error codes (see the package comment).
const (
	CodeKeyVaultAccessForbidden = "KeyVaultAccessForbidden"
	CodeKeyVaultKeyDisabled     = "KeyVaultKeyDisabled"
	CodeKeyVaultKeyNotFound     = "KeyVaultKeyNotFound"
	CodeKeyVaultRegionMismatch  = "KeyVaultRegionMismatch"
	CodeKeyVaultKeyNotSupported = "KeyVaultKeyNotSupported"
)

// KeyError is a failure to use a DES's key. It ends the long-running
// operation that needed the key as Failed with Code; Message is shown to
// the client (it never holds key material); Err is the internal cause.
type KeyError struct {
	Code    string
	Message string
	Err     error
}

func (e *KeyError) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *KeyError) Unwrap() error { return e.Err }

// keyRef is a versioned key URL: https://{vault-host}/keys/{name}/{version}.
type keyRef struct {
	vault, name, version string
}

func (k keyRef) String() string { return k.vault + "/keys/" + k.name + "/" + k.version }

// parseKeyURL accepts a versioned key URL, as Azure requires for a DES.
func parseKeyURL(raw string) (keyRef, bool) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.User != nil {
		return keyRef{}, false
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 3 || !strings.EqualFold(parts[0], "keys") || parts[1] == "" || parts[2] == "" {
		return keyRef{}, false
	}
	return keyRef{vault: "https://" + strings.ToLower(u.Host), name: parts[1], version: parts[2]}, true
}

// keyPrincipal is who reaches a DES's key: a managed identity of the DES's
// tenant, optionally as the federated multi-tenant app.
type keyPrincipal struct {
	identityID        string // user-assigned identity ID or the DES ID (system-assigned)
	homeTenant        string
	federatedClientID string
}

// keyAccess holds one azkeys client per (principal, vault), so tokens and
// the vault's challenge are cached by the SDK as in a long-lived provider.
type keyAccess struct {
	httpClient *http.Client
	authority  string
	miToken    func(ctx context.Context, identityID, resource string) (azcore.AccessToken, error)

	mu      sync.Mutex
	clients map[string]*azkeys.Client
}

func newKeyAccess(hc *http.Client, authority string, mi func(ctx context.Context, identityID, resource string) (azcore.AccessToken, error)) *keyAccess {
	return &keyAccess{httpClient: hc, authority: authority, miToken: mi, clients: map[string]*azkeys.Client{}}
}

func (s *Service) miToken(ctx context.Context, identityID, resource string) (azcore.AccessToken, error) {
	tk, err := s.cfg.Identity.PlatformIdentityToken(ctx, identityID, resource)
	if err != nil {
		return azcore.AccessToken{}, err
	}
	return azcore.AccessToken{Token: tk.AccessToken, ExpiresOn: tk.ExpiresOn}, nil
}

// miCredential is the managed identity's own token (same-tenant keys).
type miCredential struct {
	k  *keyAccess
	id string
}

func (c miCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if len(opts.Scopes) != 1 {
		return azcore.AccessToken{}, fmt.Errorf("compute: managed identity token needs exactly one scope, got %d", len(opts.Scopes))
	}
	return c.k.miToken(ctx, c.id, opts.Scopes[0])
}

// client returns the azkeys client of p on vault; fresh skips the cache
// (and its cached tokens), so a DES proof sees the federated credential and
// service principal as they are now.
func (k *keyAccess) client(p keyPrincipal, vault string, fresh ...bool) (*azkeys.Client, error) {
	ck := p.identityID + "\x00" + p.federatedClientID + "\x00" + p.homeTenant + "\x00" + vault
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.clients[ck]; ok && len(fresh) == 0 {
		return c, nil
	}
	opts := azcore.ClientOptions{Transport: k.httpClient, Retry: policy.RetryOptions{MaxRetries: 1, RetryDelay: 50 * time.Millisecond}}
	var cred azcore.TokenCredential = miCredential{k: k, id: p.identityID}
	if p.federatedClientID != "" {
		// The identity's token is the app's credential; the tenant comes
		// from the vault's challenge (azkeys passes it as TenantID), which
		// AdditionallyAllowedTenants lets the credential honour.
		assertion := func(ctx context.Context) (string, error) {
			tk, err := k.miToken(ctx, p.identityID, identity.TokenExchangeAudience)
			return tk.Token, err
		}
		cc, err := azidentity.NewClientAssertionCredential(p.homeTenant, p.federatedClientID, assertion,
			&azidentity.ClientAssertionCredentialOptions{
				ClientOptions:              azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: k.authority}, Transport: k.httpClient},
				DisableInstanceDiscovery:   true,
				AdditionallyAllowedTenants: []string{"*"},
			})
		if err != nil {
			return nil, fmt.Errorf("compute: federated credential: %w", err)
		}
		cred = cc
	}
	c, err := azkeys.NewClient(vault, cred, &azkeys.ClientOptions{ClientOptions: opts})
	if err != nil {
		return nil, fmt.Errorf("compute: key vault client: %w", err)
	}
	k.clients[ck] = c
	return c, nil
}

var (
	aadstsRE = regexp.MustCompile(`AADSTS\d+:[^\r\n"]*`)
	innerRE  = regexp.MustCompile(`"innererror"\s*:\s*\{\s*"code"\s*:\s*"([A-Za-z]+)"`)
)

// classify turns an azkeys/azidentity failure into a KeyError.
func classify(err error, ref keyRef, op string) *KeyError {
	var ke *KeyError
	if errors.As(err, &ke) {
		return ke
	}
	var af *azidentity.AuthenticationFailedError
	if errors.As(err, &af) {
		detail := aadstsRE.FindString(err.Error())
		if detail == "" {
			detail = "the token request was refused"
		}
		return &KeyError{Code: CodeKeyVaultAccessForbidden, Err: err, Message: fmt.Sprintf(
			"The disk encryption set's identity could not obtain a token for key vault %s: %s", ref.vault, strings.TrimSpace(detail))}
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		msg := vaultMessage(re)
		switch {
		case re.StatusCode == http.StatusNotFound:
			return &KeyError{Code: CodeKeyVaultKeyNotFound, Err: err, Message: fmt.Sprintf("The key %s was not found in key vault %s.", ref, ref.vault)}
		case strings.Contains(strings.ToLower(msg), "disabled"):
			return &KeyError{Code: CodeKeyVaultKeyDisabled, Err: err, Message: fmt.Sprintf("The key %s is disabled: %s", ref, msg)}
		case re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden:
			code := re.ErrorCode
			if m := innerRE.FindStringSubmatch(err.Error()); m != nil {
				code += "/" + m[1]
			}
			return &KeyError{Code: CodeKeyVaultAccessForbidden, Err: err, Message: fmt.Sprintf(
				"Unable to %s with key %s: key vault %s refused the disk encryption set's identity (%d %s: %s).", op, ref, ref.vault, re.StatusCode, code, msg)}
		}
		return &KeyError{Code: CodeKeyVaultAccessForbidden, Err: err, Message: fmt.Sprintf(
			"Unable to %s with key %s: key vault answered %d %s.", op, ref, re.StatusCode, re.ErrorCode)}
	}
	return &KeyError{Code: CodeKeyVaultAccessForbidden, Err: err, Message: fmt.Sprintf("Unable to reach key vault %s to %s.", ref.vault, op)}
}

// vaultMessage is the first line of the vault's error message.
func vaultMessage(re *azcore.ResponseError) string {
	s := re.Error()
	if i := strings.Index(s, `"message"`); i >= 0 {
		s = s[i+len(`"message"`):]
		s = strings.TrimLeft(s, ": ")
		s = strings.TrimPrefix(s, `"`)
		if j := strings.Index(s, `"`); j >= 0 {
			s = s[:j]
		}
		if j := strings.Index(s, `\r`); j >= 0 {
			s = s[:j]
		}
		return s
	}
	return re.ErrorCode
}

// verify proves that p can use the key at ref as a DES needs it: the key
// exists, is enabled, is RSA (RSA-HSM, exportable, with a release policy
// for confidential-VM sets), its vault is in location, and a random value
// wraps and unwraps back. It is what a DES create or key change runs.
func (k *keyAccess) verify(ctx context.Context, p keyPrincipal, ref keyRef, location string, cvm bool, rnd io.Reader) *KeyError {
	c, err := k.client(p, ref.vault, true)
	if err != nil {
		return &KeyError{Code: CodeKeyVaultAccessForbidden, Message: "The key vault client could not be built.", Err: err}
	}
	var raw *http.Response
	got, err := c.GetKey(policy.WithCaptureResponse(ctx, &raw), ref.name, ref.version, nil)
	if raw != nil {
		if region := raw.Header.Get("x-ms-keyvault-region"); region != "" && arm.NormalizeLocation(region) != arm.NormalizeLocation(location) {
			return &KeyError{Code: CodeKeyVaultRegionMismatch, Message: fmt.Sprintf(
				"The key vault %s is in region '%s', but the disk encryption set is in '%s'; they must be in the same region.", ref.vault, region, location)}
		}
	}
	if err != nil {
		return classify(err, ref, "get")
	}
	a := got.Attributes
	now := time.Now()
	if a != nil && ((a.Enabled != nil && !*a.Enabled) || (a.Expires != nil && now.After(*a.Expires)) || (a.NotBefore != nil && now.Before(*a.NotBefore))) {
		return &KeyError{Code: CodeKeyVaultKeyDisabled, Message: fmt.Sprintf("The key %s is disabled, expired or not yet valid.", ref)}
	}
	if got.Key == nil || got.Key.Kty == nil || (*got.Key.Kty != azkeys.KeyTypeRSA && *got.Key.Kty != azkeys.KeyTypeRSAHSM) {
		return &KeyError{Code: CodeKeyVaultKeyNotSupported, Message: fmt.Sprintf("The key %s must be an RSA or RSA-HSM key.", ref)}
	}
	if cvm && (*got.Key.Kty != azkeys.KeyTypeRSAHSM || a == nil || a.Exportable == nil || !*a.Exportable || got.ReleasePolicy == nil) {
		return &KeyError{Code: CodeKeyVaultKeyNotSupported, Message: fmt.Sprintf(
			"The key %s of a ConfidentialVmEncryptedWithCustomerKey disk encryption set must be an exportable RSA-HSM key with a release policy.", ref)}
	}
	probe := make([]byte, diskcrypt.KeySize)
	if _, err := io.ReadFull(rnd, probe); err != nil {
		return &KeyError{Code: CodeKeyVaultAccessForbidden, Message: "internal error", Err: err}
	}
	// The round trip uses the fresh client just stored.
	w := &customerWrapper{k: k, p: p, ref: ref}
	wrapped, kid, err := w.WrapKey(ctx, probe)
	if err != nil {
		return classify(err, ref, "wrapKey")
	}
	back, err := w.UnwrapKey(ctx, wrapped, kid)
	if err != nil {
		return classify(err, ref, "unwrapKey")
	}
	if subtle.ConstantTimeCompare(back, probe) != 1 {
		return &KeyError{Code: CodeKeyVaultAccessForbidden, Message: fmt.Sprintf("The key %s did not unwrap what it wrapped.", ref)}
	}
	return nil
}

// customerWrapper wraps disk data keys with a customer's key over HTTPS
// (RSA-OAEP-256); its key IDs are the versioned key URLs (kid).
type customerWrapper struct {
	k   *keyAccess
	p   keyPrincipal
	ref keyRef
}

// wrapAlg is the algorithm DEKs are wrapped with (a fresh pointer per call).
func wrapAlg() *azkeys.EncryptionAlgorithm { a := azkeys.EncryptionAlgorithmRSAOAEP256; return &a }

// WrapKey implements diskcrypt.Wrapper.
func (w *customerWrapper) WrapKey(ctx context.Context, dek []byte) ([]byte, string, error) {
	c, err := w.k.client(w.p, w.ref.vault)
	if err != nil {
		return nil, "", err
	}
	res, err := c.WrapKey(ctx, w.ref.name, w.ref.version, azkeys.KeyOperationParameters{Algorithm: wrapAlg(), Value: dek}, nil)
	if err != nil {
		return nil, "", classify(err, w.ref, "wrapKey")
	}
	kid := w.ref.String()
	if res.KID != nil && *res.KID != "" {
		kid = string(*res.KID)
	}
	return res.Result, kid, nil
}

// UnwrapKey implements diskcrypt.Wrapper; keyID is the kid WrapKey returned.
func (w *customerWrapper) UnwrapKey(ctx context.Context, wrapped []byte, keyID string) ([]byte, error) {
	ref, ok := parseKeyURL(keyID)
	if !ok {
		return nil, fmt.Errorf("customer key id %q: %w", keyID, diskcrypt.ErrUnknownKey)
	}
	c, err := w.k.client(w.p, ref.vault)
	if err != nil {
		return nil, err
	}
	res, err := c.UnwrapKey(ctx, ref.name, ref.version, azkeys.KeyOperationParameters{Algorithm: wrapAlg(), Value: wrapped}, nil)
	if err != nil {
		return nil, classify(err, ref, "unwrapKey")
	}
	return res.Result, nil
}

// errGuestUnwraps refuses server-side unwrapping of confidential-VM disks.
var errGuestUnwraps = &KeyError{Code: "OperationNotAllowed", Message: "The data key of a ConfidentialVM_DiskEncryptedWithCustomerKey disk is released only to the attested guest (Secure Key Release); the platform never unwraps it."}

// guestOnly is the Wrapper of a confidential-VM customer-key disk: it wraps
// (with the customer's key, through the vault) but never unwraps.
type guestOnly struct{ *customerWrapper }

func (guestOnly) UnwrapKey(context.Context, []byte, string) ([]byte, error) {
	return nil, errGuestUnwraps
}
