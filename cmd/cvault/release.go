package main

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"

	"github.com/cvault/cvault/internal/guest/evidence"
	"github.com/cvault/cvault/internal/guest/skr"
	"github.com/cvault/cvault/internal/jwk"
	"github.com/cvault/cvault/internal/release/policy"
	"github.com/cvault/cvault/internal/sim"
)

// releasePolicyFlag returns the policy of `key create --policy FILE` or
// --cvm-default-policy (authority: the server's default attestation instance).
func releasePolicyFlag(file string, cvmDefault bool, serverURL string) ([]byte, error) {
	switch {
	case file != "" && cvmDefault:
		return nil, errors.New("--policy and --cvm-default-policy exclude each other")
	case cvmDefault:
		return policy.CVMDefault(strings.TrimRight(serverURL, "/") + "/attestation/default"), nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--policy: %w", err)
		}
		if _, err := policy.Parse(b); err != nil {
			return nil, fmt.Errorf("--policy %s: %w", file, err)
		}
		return b, nil
	}
	return nil, nil
}

func newGuestReleaseCmd() *cobra.Command {
	var (
		keyID, maa, out, format, caFile, product, enc string
		simulated, debug                              bool
	)
	cmd := &cobra.Command{
		Use:   "release --key https://VAULT/keys/NAME[/VERSION]",
		Short: "Secure Key Release from inside the VM: attest, release with the VM's managed identity, verify, unwrap",
		Long: `Release an exportable key to this VM (seed 000):
  1. generate an ephemeral RSA-2048 transfer key (memory only),
  2. collect SEV-SNP evidence binding it (the guest device, or --sim) and attest to --maa,
  3. get the VM's managed-identity token for Key Vault (IDENTITY_ENDPOINT + IDENTITY_HEADER,
     else the IMDS endpoint — run 'cvault guest imds-proxy' where there is none),
  4. POST {key}/release with the attestation token,
  5. verify the signed answer (x5c chain to the trusted CA naming the vault host, RS256),
  6. unwrap key_hsm with the transfer key and write the key (--format jwk|pem|raw).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyID == "" {
				return errors.New("--key is required (https://VAULT-HOST/keys/NAME[/VERSION])")
			}
			ku, err := url.Parse(keyID)
			if err != nil || ku.Scheme != "https" {
				return fmt.Errorf("--key %q: want https://VAULT-HOST/keys/NAME[/VERSION]", keyID)
			}
			if maa == "" {
				return errors.New("--maa is required (https://HOST/attestation/{instance})")
			}
			client, err := caClient(caFile)
			if err != nil {
				return err
			}
			roots, err := caPool(caFile)
			if err != nil {
				return err
			}
			var prov evidence.Provider
			if simulated {
				p, err := sim.New(sim.Config{ProductLine: product})
				if err != nil {
					return err
				}
				prov = &evidence.Simulated{Platform: p, Options: sim.Options{Debug: debug}}
			} else if prov, err = evidence.NewDevice(); err != nil {
				return fmt.Errorf("%w (use --sim for the simulated platform)", err)
			}
			cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
				ClientOptions: azcore.ClientOptions{Transport: client}})
			if err != nil {
				return fmt.Errorf("managed identity: %w", err)
			}
			tk, err := skr.NewEphemeralKey()
			if err != nil {
				return err
			}
			agent := &skr.Agent{Client: client, Roots: roots, Credential: cred, Evidence: prov, MAA: maa, Enc: enc}
			res, err := agent.Release(cmd.Context(), keyID, tk)
			if err != nil {
				return err
			}
			b, err := formatKey(res.Key, format)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "released %s (%s, public fingerprint %s), signed by %s\n",
				res.Released.Key.KID, res.Key.Type, skr.Fingerprint(res.Key.Public()), res.Released.Signer.Subject.CommonName)
			if out == "-" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			return os.WriteFile(out, b, 0o600)
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyID, "key", "", "key identifier: https://VAULT-HOST/keys/NAME[/VERSION]")
	f.StringVar(&maa, "maa", "", "attestation instance URL (https://HOST/attestation/{instance})")
	f.BoolVar(&simulated, "sim", false, "use the simulated SEV-SNP platform instead of the guest device")
	f.BoolVar(&debug, "sim-debug", false, "with --sim: the report says the guest is debuggable")
	f.StringVar(&product, "product", "Milan", "with --sim: product line to impersonate (Milan or Genoa)")
	f.StringVar(&out, "out", "-", "where to write the key (- for stdout; files are written 0600)")
	f.StringVar(&format, "format", "pem", "key output format: jwk, pem (PKCS#8; oct keys: raw base64) or raw (PKCS#8 DER / AES bytes)")
	f.StringVar(&enc, "enc", "RSA_AES_KEY_WRAP_256", "wrap algorithm: CKM_RSA_AES_KEY_WRAP, RSA_AES_KEY_WRAP_256 or RSA_AES_KEY_WRAP_384")
	f.StringVar(&caFile, "ca", "", "CA certificate to trust (default: SSL_CERT_FILE, else the system roots)")
	return cmd
}

// caPool is the pool caClient trusts, for verifying the release JWS (nil:
// the system roots).
func caPool(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		caFile = os.Getenv("SSL_CERT_FILE")
	}
	if caFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA: no certificate in %s", caFile)
	}
	return pool, nil
}

// formatKey renders a released key.
func formatKey(k *jwk.PrivateKey, format string) ([]byte, error) {
	switch format {
	case "raw":
		return k.Marshal()
	case "pem":
		if k.Oct != nil {
			return []byte(base64.StdEncoding.EncodeToString(k.Oct) + "\n"), nil
		}
		der, err := k.Marshal()
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	case "jwk":
		var key any
		switch {
		case k.RSA != nil:
			key = k.RSA
		case k.EC != nil:
			key = k.EC
		default:
			key = k.Oct
		}
		b, err := json.MarshalIndent(jose.JSONWebKey{Key: key}, "", "  ")
		if err != nil {
			return nil, err
		}
		return append(b, '\n'), nil
	}
	return nil, fmt.Errorf("--format %q: want jwk, pem or raw", format)
}

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Secure Key Release policies"}
	var policyFile, tokenArg, issuer string
	check := &cobra.Command{
		Use:   "check --policy FILE --token TOKEN|FILE|-",
		Short: "Dry-run a release policy against an attestation token's claims (before enforcing it)",
		Long: `Evaluate a release policy on an attestation token's claims as release would, and explain
which member failed (claim, expected, actual). The token's signature is NOT verified here
(release verifies it against the authority); --issuer overrides the token's iss, e.g. to see
how a policy naming Azure's MAA host would judge a cvault token behind --authority-alias.
Exit status 0 when the policy is satisfied, 1 when it is not.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pb, err := os.ReadFile(policyFile)
			if err != nil {
				return fmt.Errorf("--policy: %w", err)
			}
			pol, err := policy.Parse(pb)
			if err != nil {
				return err
			}
			tok, err := readToken(tokenArg, cmd.InOrStdin())
			if err != nil {
				return err
			}
			claims, err := tokenClaims(tok)
			if err != nil {
				return err
			}
			iss := issuer
			if iss == "" {
				iss, _ = claims["iss"].(string)
			}
			res, err := pol.Evaluate(iss, claims)
			if err != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "NOT SATISFIED: %v\n", err)
				return errors.New("release policy not satisfied")
			}
			fmt.Fprintf(cmd.OutOrStdout(), "satisfied by anyOf[%d] (authority %s)\n", res.Index, res.Authority)
			return nil
		},
	}
	check.Flags().StringVar(&policyFile, "policy", "", "release policy JSON file")
	check.Flags().StringVar(&tokenArg, "token", "", "attestation token (compact JWT), a file holding one, or - for stdin")
	check.Flags().StringVar(&issuer, "issuer", "", "evaluate as if issued by this authority (default: the token's iss)")
	cmd.AddCommand(check)
	return cmd
}

func readToken(arg string, stdin io.Reader) (string, error) {
	var b []byte
	var err error
	switch {
	case arg == "":
		return "", errors.New("--token is required")
	case arg == "-":
		b, err = io.ReadAll(io.LimitReader(stdin, 1<<20))
	case strings.Count(arg, ".") == 2 && !strings.ContainsAny(arg, "/\\"):
		b = []byte(arg)
	default:
		b, err = os.ReadFile(arg)
	}
	if err != nil {
		return "", fmt.Errorf("--token: %w", err)
	}
	// `cvault guest attest` prints the token on its first line.
	line, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte("\n"))
	return string(bytes.TrimSpace(line)), nil
}

func tokenClaims(tok string) (map[string]any, error) {
	sig, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.ES256})
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(sig.UnsafePayloadWithoutVerification()))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, errors.New("token: the payload is not a JSON object")
	}
	return claims, nil
}
