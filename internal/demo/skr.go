package demo

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	azpolicy "github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/msi/armmsi"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/cvault/cvault/internal/app"
	"github.com/cvault/cvault/internal/cli/client"
	"github.com/cvault/cvault/internal/guest/evidence"
	"github.com/cvault/cvault/internal/guest/skr"
	"github.com/cvault/cvault/internal/localdial"
	"github.com/cvault/cvault/internal/release/policy"
	"github.com/cvault/cvault/internal/sim"
)

// SKR step names, in order.
var skrSteps = []string{"server", "resource-group", "vm-identity", "premium-vault", "exportable-key", "guest-attest",
	"guest-release", "decrypt", "refuse-debug", "refuse-untrusted", "refuse-no-release", "refuse-expired", "audit-log"}

func skrScenario() Scenario {
	return Scenario{Name: "skr", Title: "Secure Key Release to a confidential VM (seeds 000/001)", Steps: skrSteps, Run: runSKR}
}

// clock is the in-process server's clock; the demo moves it forward to
// show an expired attestation token refused.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.off) }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// skrEnv is what the steps share.
type skrEnv struct {
	app      *app.App
	clock    *clock
	hc       *http.Client
	base     string
	sub      string
	armOpts  *arm.ClientOptions
	admin    azcore.TokenCredential
	cli      *client.Client
	platform *sim.Platform
	vaultURI string
	keyID    string
	pub      *rsa.PublicKey
	vmID     string // the VM identity's principal
	vmSecret string // and its managed-identity secret
	released *rsa.PrivateKey
	other    string // a second identity without `release`
	tk       *skr.EphemeralKey
	token    string // the VM's attestation token
	miURL    string
}

const (
	demoRG    = "skr-demo"
	demoVault = "skr-demo-kv"
	demoKey   = "skr-key"
	demoLoc   = "eastus"
)

func runSKR(ctx context.Context, cfg Config, r *Runner) error {
	e := &skrEnv{clock: &clock{}}
	stop, err := e.start(ctx, cfg, r)
	if stop != nil {
		defer stop()
	}
	if err != nil {
		return err
	}
	return r.steps(ctx, []namedStep{
		{"resource-group", e.resourceGroup}, {"vm-identity", e.vmIdentity}, {"premium-vault", e.premiumVault},
		{"exportable-key", e.exportableKey}, {"guest-attest", e.guestAttest}, {"guest-release", e.guestRelease},
		{"decrypt", e.decrypt}, {"refuse-debug", e.refuseDebug}, {"refuse-untrusted", e.refuseUntrusted},
		{"refuse-no-release", e.refuseNoRelease}, {"refuse-expired", e.refuseExpired}, {"audit-log", e.auditLog},
	})
}

func (e *skrEnv) start(ctx context.Context, cfg Config, r *Runner) (func(), error) {
	var stop func()
	err := r.Step("server", func() (string, error) {
		p, err := sim.New(sim.Config{})
		if err != nil {
			return "", err
		}
		e.platform = p
		dir, err := os.MkdirTemp("", "cvault-demo-")
		if err != nil {
			return "", err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			os.RemoveAll(dir)
			return "", err
		}
		logs := cfg.Logs
		if logs == nil {
			logs = io.Discard
		}
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		sctx, cancel := context.WithCancel(ctx)
		a, err := app.New(sctx, app.Config{DataDir: dir, Listener: ln, URL: "https://localhost:" + port,
			Logger: slog.New(slog.NewTextHandler(logs, nil)), Now: e.clock.Now, SimulatedRootsPEM: p.RootPEM()})
		if err != nil {
			cancel()
			os.RemoveAll(dir)
			return "", err
		}
		done := make(chan struct{})
		go func() { _ = a.Serve(sctx); close(done) }()
		stop = func() { cancel(); <-done; a.Close(); os.RemoveAll(dir) }
		e.app, e.base, e.sub = a, a.BaseURL.String(), a.Bootstrap.SubscriptionID
		e.hc = localdial.Client(a.CA.Pool())
		e.armOpts = &arm.ClientOptions{ClientOptions: client.ClientOptions(e.base, e.hc)}
		if e.admin, err = e.adminCredential(); err != nil {
			return "", err
		}
		if e.cli, err = client.New(client.Options{Server: e.base, DataDir: dir, HTTPClient: e.hc}); err != nil {
			return "", err
		}
		e.miURL = e.base + "/metadata/identity/oauth2/token"
		return fmt.Sprintf("cvault at %s (embedded store, simulated SEV-SNP root trusted)", e.base), nil
	})
	return stop, err
}

// adminCredential signs in as the bootstrap administrator (a fresh
// credential: after the demo moves the clock, cached tokens are stale).
func (e *skrEnv) adminCredential() (azcore.TokenCredential, error) {
	ad := e.app.Admin
	return azidentity.NewClientSecretCredential(ad.TenantID, ad.ClientID, ad.ClientSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: client.ClientOptions(e.base, e.hc), DisableInstanceDiscovery: true})
}

func (e *skrEnv) resourceGroup(ctx context.Context) (string, error) {
	p := "/subscriptions/" + e.sub + "/resourcegroups/" + demoRG
	if err := e.cli.ARM(ctx, http.MethodPut, p, client.VersionResources, map[string]string{"location": demoLoc}, nil); err != nil {
		return "", err
	}
	return "resource group " + demoRG + " in " + demoLoc, nil
}

// identity creates a user-assigned identity and issues its managed-identity secret.
func (e *skrEnv) identity(ctx context.Context, name string) (principal, secret string, err error) {
	mc, err := armmsi.NewUserAssignedIdentitiesClient(e.sub, e.admin, e.armOpts)
	if err != nil {
		return "", "", err
	}
	res, err := mc.CreateOrUpdate(ctx, demoRG, name, armmsi.Identity{Location: to.Ptr(demoLoc)}, nil)
	if err != nil {
		return "", "", err
	}
	var v map[string]any
	if err := e.cli.ARM(ctx, http.MethodPost, *res.ID+"/secret", client.VersionMSI, nil, &v); err != nil {
		return "", "", err
	}
	secret, _ = v["secret"].(string)
	if secret == "" {
		return "", "", errors.New("no managed-identity secret issued")
	}
	return *res.Properties.PrincipalID, secret, nil
}

func (e *skrEnv) vmIdentity(ctx context.Context) (string, error) {
	pid, secret, err := e.confidentialVM(ctx, "cvm", nil)
	if err != nil {
		return "", err
	}
	e.vmID, e.vmSecret = pid, secret
	if e.other, _, err = e.identity(ctx, "other-identity"); err != nil {
		return "", err
	}
	return "confidential VM cvm (Standard_DC2as_v5, simulated SEV-SNP) with system-assigned identity " + pid + "; its MI secret goes to the guest", nil
}

// confidentialVM creates a running ConfidentialVM (armcompute) with a
// system-assigned identity and returns the identity's principal and the
// VM's managed-identity secret (POST …/identitySecret: what IMDS gives the
// guest in Azure). des, when set, encrypts its OS disk with the customer's
// key (ConfidentialVM_DiskEncryptedWithCustomerKey).
func (e *skrEnv) confidentialVM(ctx context.Context, name string, des *string) (principal, secret string, err error) {
	vc, err := armcompute.NewVirtualMachinesClient(e.sub, e.admin, e.armOpts)
	if err != nil {
		return "", "", err
	}
	sec := &armcompute.VMDiskSecurityProfile{SecurityEncryptionType: to.Ptr(armcompute.SecurityEncryptionTypesDiskWithVMGuestState)}
	if des != nil {
		sec.DiskEncryptionSet = &armcompute.DiskEncryptionSetParameters{ID: des}
	}
	p, err := vc.BeginCreateOrUpdate(ctx, demoRG, name, armcompute.VirtualMachine{
		Location: to.Ptr(demoLoc),
		Identity: &armcompute.VirtualMachineIdentity{Type: to.Ptr(armcompute.ResourceIdentityTypeSystemAssigned)},
		Properties: &armcompute.VirtualMachineProperties{
			HardwareProfile: &armcompute.HardwareProfile{VMSize: to.Ptr(armcompute.VirtualMachineSizeTypes("Standard_DC2as_v5"))},
			SecurityProfile: &armcompute.SecurityProfile{SecurityType: to.Ptr(armcompute.SecurityTypesConfidentialVM),
				UefiSettings: &armcompute.UefiSettings{SecureBootEnabled: to.Ptr(true), VTpmEnabled: to.Ptr(true)}},
			StorageProfile: &armcompute.StorageProfile{OSDisk: &armcompute.OSDisk{
				CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesFromImage), DeleteOption: to.Ptr(armcompute.DiskDeleteOptionTypesDelete),
				ManagedDisk: &armcompute.ManagedDiskParameters{SecurityProfile: sec}}},
		},
	}, nil)
	if err != nil {
		return "", "", err
	}
	vm, err := p.PollUntilDone(ctx, nil)
	if err != nil {
		return "", "", err
	}
	if vm.Identity == nil || vm.Identity.PrincipalID == nil {
		return "", "", errors.New("the VM has no system-assigned identity")
	}
	var v map[string]any
	if err := e.cli.ARM(ctx, http.MethodPost, *vm.ID+"/identitySecret", computeAPIVersion, nil, &v); err != nil {
		return "", "", err
	}
	secret, _ = v["secret"].(string)
	if secret == "" {
		return "", "", errors.New("no managed-identity secret issued for the VM")
	}
	return *vm.Identity.PrincipalID, secret, nil
}

// computeAPIVersion is the Compute RP version the demo's REST calls use.
const computeAPIVersion = "2024-11-01"

func (e *skrEnv) vmCredential() azcore.TokenCredential {
	return &skr.ManagedIdentity{Endpoint: e.miURL, Secret: e.vmSecret, Client: e.hc}
}

func (e *skrEnv) premiumVault(ctx context.Context) (string, error) {
	vc, err := armkeyvault.NewVaultsClient(e.sub, e.admin, e.armOpts)
	if err != nil {
		return "", err
	}
	tenant := e.app.Bootstrap.TenantID
	perm := func(oid string, keys ...armkeyvault.KeyPermissions) *armkeyvault.AccessPolicyEntry {
		ap := &armkeyvault.AccessPolicyEntry{TenantID: to.Ptr(tenant), ObjectID: to.Ptr(oid), Permissions: &armkeyvault.Permissions{}}
		for _, k := range keys {
			ap.Permissions.Keys = append(ap.Permissions.Keys, to.Ptr(k))
		}
		return ap
	}
	poller, err := vc.BeginCreateOrUpdate(ctx, demoRG, demoVault, armkeyvault.VaultCreateOrUpdateParameters{
		Location: to.Ptr(demoLoc),
		Properties: &armkeyvault.VaultProperties{
			TenantID: to.Ptr(tenant),
			SKU:      &armkeyvault.SKU{Family: to.Ptr(armkeyvault.SKUFamilyA), Name: to.Ptr(armkeyvault.SKUNamePremium)},
			AccessPolicies: []*armkeyvault.AccessPolicyEntry{
				perm(e.app.Bootstrap.AdminObjectID, armkeyvault.KeyPermissionsCreate, armkeyvault.KeyPermissionsGet, armkeyvault.KeyPermissionsEncrypt),
				perm(e.vmID, armkeyvault.KeyPermissionsGet, armkeyvault.KeyPermissionsRelease),
				perm(e.other, armkeyvault.KeyPermissionsGet),
			},
		},
	}, nil)
	if err != nil {
		return "", err
	}
	res, err := poller.PollUntilDone(ctx, nil)
	if err != nil {
		return "", err
	}
	e.vaultURI = *res.Properties.VaultURI
	return fmt.Sprintf("premium vault %s; access policy grants the VM identity get+release", e.vaultURI), nil
}

func (e *skrEnv) keys() (*azkeys.Client, error) {
	return azkeys.NewClient(e.vaultURI, e.admin, &azkeys.ClientOptions{ClientOptions: client.ClientOptions(e.base, e.hc)})
}

func (e *skrEnv) exportableKey(ctx context.Context) (string, error) {
	kc, err := e.keys()
	if err != nil {
		return "", err
	}
	authority := e.app.Attestation.Issuer("default")
	res, err := kc.CreateKey(ctx, demoKey, azkeys.CreateKeyParameters{
		Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeySize: to.Ptr[int32](2048),
		KeyAttributes: &azkeys.KeyAttributes{Exportable: to.Ptr(true)},
		ReleasePolicy: &azkeys.KeyReleasePolicy{EncodedPolicy: policy.CVMDefault(authority), Immutable: to.Ptr(true)},
	}, nil)
	if err != nil {
		return "", err
	}
	e.keyID = string(*res.Key.KID)
	e.pub = &rsa.PublicKey{N: new(big.Int).SetBytes(res.Key.N), E: int(new(big.Int).SetBytes(res.Key.E).Int64())}
	return "exportable RSA-HSM key " + e.keyID + " with Azure's default CVM release policy (authority " + authority + ")", nil
}

func (e *skrEnv) evidence(debug bool) evidence.Provider {
	return &evidence.Simulated{Platform: e.platform, Options: sim.Options{Debug: debug}}
}

// newTransferKey: the guest makes its transfer key and attests genuine
// evidence bound to it; both are kept (e.tk, e.token) for the releases.
func (e *skrEnv) newTransferKey(ctx context.Context) error {
	tk, err := skr.NewEphemeralKey()
	if err != nil {
		return err
	}
	e.tk = tk
	tok, err := tk.Attest(ctx, e.hc, e.app.Attestation.Issuer("default"), e.evidence(false), "")
	if err != nil {
		return err
	}
	e.token = tok
	return nil
}

func (e *skrEnv) guestAttest(ctx context.Context) (string, error) {
	if err := e.newTransferKey(ctx); err != nil {
		return "", err
	}
	tk, tok := e.tk, e.token
	c, err := unverifiedClaims(tok)
	if err != nil {
		return "", err
	}
	if c["x-ms-compliance-status"] != "azure-compliant-cvm" || c["x-ms-attestation-type"] != "sevsnpvm" {
		return "", fmt.Errorf("token claims compliance=%v type=%v", c["x-ms-compliance-status"], c["x-ms-attestation-type"])
	}
	return fmt.Sprintf("guest attested simulated SEV-SNP evidence binding its transfer key %s: %s, %s", tk.KID()[:12]+"…",
		c["x-ms-attestation-type"], c["x-ms-compliance-status"]), nil
}

func (e *skrEnv) agent(cred azcore.TokenCredential, debug bool) *skr.Agent {
	return &skr.Agent{Client: e.hc, Roots: e.app.CA.Pool(), Credential: cred, Evidence: e.evidence(debug),
		MAA: e.app.Attestation.Issuer("default")}
}

func (e *skrEnv) guestRelease(ctx context.Context) (string, error) {
	out, err := e.agent(e.vmCredential(), false).ReleaseWithToken(ctx, e.keyID, e.tk, e.token)
	if err != nil {
		return "", err
	}
	if out.Key.RSA == nil || !out.Key.RSA.PublicKey.Equal(e.pub) {
		return "", errors.New("the released key is not the vault's key")
	}
	e.released = out.Key.RSA
	return fmt.Sprintf("released with the VM's managed identity; JWS signed by %s (x5c chains to cvault's CA); key_hsm unwrapped in the guest",
		out.Released.Signer.Subject.CommonName), nil
}

func (e *skrEnv) decrypt(ctx context.Context) (string, error) {
	kc, err := e.keys()
	if err != nil {
		return "", err
	}
	secret := []byte("seed 000: only an attested CVM reads this")
	res, err := kc.Encrypt(ctx, demoKey, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: secret}, nil)
	if err != nil {
		return "", err
	}
	pt, err := rsa.DecryptOAEP(sha256.New(), nil, e.released, res.Result, nil)
	if err != nil {
		return "", err
	}
	if string(pt) != string(secret) {
		return "", errors.New("decrypted text differs")
	}
	return fmt.Sprintf("the vault encrypted %d bytes (RSA-OAEP-256); the released key decrypted them in the guest", len(secret)), nil
}

// refusal calls release and checks the refusal's status, code and inner code.
func refusal(err error, status int, code, inner, mentions string) (string, error) {
	var re *skr.ReleaseError
	if !errors.As(err, &re) {
		return "", fmt.Errorf("want a %d %s refusal, got %v", status, code, err)
	}
	if re.Status != status || re.Code != code || (inner != "" && re.InnerCode != inner) || !strings.Contains(re.Message, mentions) {
		return "", fmt.Errorf("want %d %s/%s mentioning %q, got %d %s/%s: %s", status, code, inner, mentions, re.Status, re.Code, re.InnerCode, re.Message)
	}
	msg := re.Message
	if len(msg) > 110 {
		msg = msg[:110] + "…"
	}
	return fmt.Sprintf("%d %s (%s): %s", re.Status, re.Code, re.InnerCode, msg), nil
}

func (e *skrEnv) refuseDebug(ctx context.Context) (string, error) {
	_, err := e.agent(e.vmCredential(), true).Release(ctx, e.keyID, e.tk)
	return refusal(err, http.StatusForbidden, "Forbidden", "ReleasePolicyNotSatisfied", "x-ms-compliance-status")
}

func (e *skrEnv) refuseUntrusted(ctx context.Context) (string, error) {
	// A look-alike of Azure's MAA signs the genuine token's claims with its
	// own key; nothing maps that authority to an instance or trusts it.
	claims, err := unverifiedClaims(e.token)
	if err != nil {
		return "", err
	}
	claims["iss"] = "https://sharedeus.eus.attest.azure.net"
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", err
	}
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: k, KeyID: "look-alike"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	forged, err := jwt.Signed(sg).Claims(claims).Serialize()
	if err != nil {
		return "", err
	}
	_, err = e.agent(e.vmCredential(), false).ReleaseWithToken(ctx, e.keyID, e.tk, forged)
	return refusal(err, http.StatusForbidden, "Forbidden", "UntrustedAttestationAuthority", "https://sharedeus.eus.attest.azure.net")
}

func (e *skrEnv) refuseNoRelease(ctx context.Context) (string, error) {
	// The other identity holds only `get`; it presents a genuine token.
	mc, err := armmsi.NewUserAssignedIdentitiesClient(e.sub, e.admin, e.armOpts)
	if err != nil {
		return "", err
	}
	id, err := mc.Get(ctx, demoRG, "other-identity", nil)
	if err != nil {
		return "", err
	}
	var v map[string]any
	if err := e.cli.ARM(ctx, http.MethodPost, *id.ID+"/secret", client.VersionMSI, nil, &v); err != nil {
		return "", err
	}
	s, _ := v["secret"].(string)
	cred := &skr.ManagedIdentity{Endpoint: e.miURL, Secret: s, Client: e.hc}
	_, err = e.agent(cred, false).ReleaseWithToken(ctx, e.keyID, e.tk, e.token)
	return refusal(err, http.StatusForbidden, "Forbidden", "ForbiddenByPolicy", "release permission")
}

func (e *skrEnv) refuseExpired(ctx context.Context) (string, error) {
	// Nine hours later the 8-hour attestation token has expired; the VM's
	// managed-identity token is fresh (the credential fetches a new one).
	e.clock.advance(9 * time.Hour)
	_, err := e.agent(e.vmCredential(), false).ReleaseWithToken(ctx, e.keyID, e.tk, e.token)
	return refusal(err, http.StatusForbidden, "Forbidden", "AttestationNotVerified", "expired")
}

func (e *skrEnv) auditLog(ctx context.Context) (string, error) {
	cred, err := e.adminCredential() // the clock moved: a fresh token
	if err != nil {
		return "", err
	}
	at, err := cred.GetToken(ctx, azpolicy.TokenRequestOptions{Scopes: []string{skr.VaultScope}})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.vaultURI+"/keys/"+demoKey+"/releaseaudit?api-version=7.4", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+at.Token)
	res, err := e.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	var page struct {
		Value []struct {
			Decision string `json:"decision"`
			Caller   struct {
				ObjectID string `json:"objectId"`
			} `json:"caller"`
			Measurement string `json:"measurement"`
		} `json:"value"`
	}
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET releaseaudit: %s", res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(&page); err != nil {
		return "", err
	}
	allowed, refused := 0, 0
	for _, v := range page.Value {
		switch v.Decision {
		case "allowed":
			allowed++
		case "refused":
			refused++
		}
	}
	if allowed != 1 || refused != 4 {
		return "", fmt.Errorf("audit log has %d allowed and %d refused entries, want 1 and 4", allowed, refused)
	}
	return fmt.Sprintf("audit log: %d attempts, 1 allowed, 4 refused, each with caller, key version and attested measurement", len(page.Value)), nil
}

// unverifiedClaims decodes a token's claims for display and for the
// look-alike authority (the server verifies; the demo only reads).
func unverifiedClaims(tok string) (map[string]any, error) {
	t, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, err
	}
	c := map[string]any{}
	if err := t.UnsafeClaimsWithoutVerification(&c); err != nil {
		return nil, err
	}
	return c, nil
}
