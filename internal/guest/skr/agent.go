package skr

import (
	"bytes"
	"context"
	"crypto/x509"
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

	"github.com/cvault/cvault/internal/guest/evidence"
	"github.com/cvault/cvault/internal/jwk"
	"github.com/cvault/cvault/internal/keywrap"
)

// VaultScope is the scope the agent asks the managed-identity endpoint for:
// Key Vault's public audience, as real SKR clients ask IMDS.
const VaultScope = "https://vault.azure.net/.default"

// ReleaseError is a release the vault refused, with Key Vault's error code.
type ReleaseError struct {
	Status    int
	Code      string
	InnerCode string
	Message   string
}

func (e *ReleaseError) Error() string {
	return fmt.Sprintf("release refused (%d %s): %s", e.Status, e.Code, e.Message)
}

// Agent is the in-VM release client: it attests with a fresh or given
// transfer key, obtains the VM's managed-identity token, calls the vault's
// release operation, verifies the signed answer and unwraps the key.
type Agent struct {
	// Client reaches the attestation service and the vault.
	Client *http.Client
	// Roots verify the release JWS's x5c chain (the vault's issuing CA).
	Roots *x509.CertPool
	// Credential is the VM's managed identity.
	Credential azcore.TokenCredential
	// Evidence produces the SEV-SNP report (device or simulated).
	Evidence evidence.Provider
	// MAA is the attestation instance URL (https://host/attestation/{name}).
	MAA string
	// Enc is the requested wrap algorithm; "" asks for RSA_AES_KEY_WRAP_256.
	Enc string
	// APIVersion of the release call; "" means 7.4.
	APIVersion string
	Now        func() time.Time
}

// Outcome is a completed release.
type Outcome struct {
	Key      *jwk.PrivateKey
	Released *Released
	Token    string // the attestation token sent as target
}

// Release attests with key and releases keyID (https://{vault}/keys/{name}[/{version}]).
func (a *Agent) Release(ctx context.Context, keyID string, key *EphemeralKey) (*Outcome, error) {
	tok, err := key.Attest(ctx, a.Client, a.MAA, a.Evidence, "")
	if err != nil {
		return nil, err
	}
	return a.ReleaseWithToken(ctx, keyID, key, tok)
}

// ReleaseWithToken releases keyID with an attestation token already obtained.
func (a *Agent) ReleaseWithToken(ctx context.Context, keyID string, key *EphemeralKey, token string) (*Outcome, error) {
	value, err := a.CallRelease(ctx, keyID, token)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(keyID)
	if err != nil {
		return nil, fmt.Errorf("skr: key id: %w", err)
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	rel, err := VerifyRelease(value, a.Roots, u.Host, now())
	if err != nil {
		return nil, err
	}
	priv, err := key.Unwrap(rel)
	if err != nil {
		return nil, err
	}
	return &Outcome{Key: priv, Released: rel, Token: token}, nil
}

// CallRelease POSTs the release request with the managed-identity token and
// returns the response's JWS value, or a *ReleaseError.
func (a *Agent) CallRelease(ctx context.Context, keyID, token string) (string, error) {
	if a.Credential == nil {
		return "", errors.New("skr: no managed-identity credential")
	}
	at, err := a.Credential.GetToken(ctx, azpolicy.TokenRequestOptions{Scopes: []string{VaultScope}})
	if err != nil {
		return "", fmt.Errorf("skr: managed-identity token: %w", err)
	}
	enc := a.Enc
	if enc == "" {
		enc = keywrap.EncRSAAESKeyWrap256
	}
	ver := a.APIVersion
	if ver == "" {
		ver = "7.4"
	}
	body, err := json.Marshal(map[string]string{"target": token, "enc": enc})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(keyID, "/")+"/release?api-version="+url.QueryEscape(ver), bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("skr: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+at.Token)
	res, err := a.Client.Do(req)
	if err != nil {
		return "", fmt.Errorf("skr: release: %w", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return "", fmt.Errorf("skr: release: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Code       string `json:"code"`
				Message    string `json:"message"`
				InnerError *struct {
					Code string `json:"code"`
				} `json:"innererror"`
			} `json:"error"`
		}
		re := &ReleaseError{Status: res.StatusCode}
		if json.Unmarshal(b, &e) == nil {
			re.Code, re.Message = e.Error.Code, e.Error.Message
			if e.Error.InnerError != nil {
				re.InnerCode = e.Error.InnerError.Code
			}
		} else {
			re.Message = fmt.Sprintf("%.200s", b)
		}
		return "", re
	}
	var out struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Value == "" {
		return "", fmt.Errorf("%w: no value in the release response", ErrReleaseJWS)
	}
	return out.Value, nil
}

// ManagedIdentity is a managed-identity credential speaking the App Service
// protocol (IDENTITY_ENDPOINT + X-IDENTITY-HEADER, api-version 2019-08-01)
// that cvault's managed-identity endpoint serves; it is what azidentity's
// ManagedIdentityCredential does with those variables set, without reading
// the environment (the demo runs several "VMs" in one process).
type ManagedIdentity struct {
	Endpoint string // https://host/metadata/identity/oauth2/token
	Secret   string // the VM's (or identity's) managed-identity secret
	Client   *http.Client
}

// GetToken implements azcore.TokenCredential.
func (m *ManagedIdentity) GetToken(ctx context.Context, o azpolicy.TokenRequestOptions) (azcore.AccessToken, error) {
	if len(o.Scopes) != 1 {
		return azcore.AccessToken{}, errors.New("skr: managed identity: want exactly one scope")
	}
	q := url.Values{"api-version": {"2019-08-01"}, "resource": {strings.TrimSuffix(o.Scopes[0], "/.default")}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.Endpoint+"?"+q.Encode(), nil)
	if err != nil {
		return azcore.AccessToken{}, err
	}
	req.Header.Set("X-IDENTITY-HEADER", m.Secret)
	res, err := m.Client.Do(req)
	if err != nil {
		return azcore.AccessToken{}, fmt.Errorf("skr: managed identity: %w", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusOK {
		return azcore.AccessToken{}, fmt.Errorf("skr: managed identity: %s: %.200s", res.Status, b)
	}
	var t struct {
		AccessToken string `json:"access_token"`
		ExpiresOn   string `json:"expires_on"`
	}
	if err := json.Unmarshal(b, &t); err != nil || t.AccessToken == "" {
		return azcore.AccessToken{}, errors.New("skr: managed identity: no access_token in the response")
	}
	exp, _ := strconv.ParseInt(t.ExpiresOn, 10, 64)
	return azcore.AccessToken{Token: t.AccessToken, ExpiresOn: time.Unix(exp, 0)}, nil
}
