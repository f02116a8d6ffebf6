package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spf13/cobra"

	"github.com/cvault/cvault/internal/guest/evidence"
	"github.com/cvault/cvault/internal/localdial"
	"github.com/cvault/cvault/internal/sim"
)

func newGuestCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "guest",
		Short: "In-VM side: attest this VM (real SEV-SNP device or the simulated platform), serve IMDS tokens",
	}
	cmd.AddCommand(newGuestAttestCmd(), newGuestReleaseCmd(), newIMDSProxyCmd())
	return cmd
}

// guestAttestOptions are `cvault guest attest`'s inputs.
type guestAttestOptions struct {
	MAA         string // instance URL, https://host/attestation/{instance}
	RuntimeData []byte
	Nonce       string
	Provider    evidence.Provider
	Client      *http.Client
}

func newGuestAttestCmd() *cobra.Command {
	var (
		o                            guestAttestOptions
		simulated                    bool
		runtimeFile, caFile, product string
	)
	cmd := &cobra.Command{
		Use:   "attest",
		Short: "Collect SEV-SNP evidence, get an attestation token, verify it against /certs and print it",
		Long: `Collect SEV-SNP evidence binding the runtime data (from /dev/sev-guest or configfs-tsm,
or with --sim from the simulated platform), POST it to the attestation instance
(--maa https://HOST/attestation/{instance}, or Azure's https://NAME.REGION.attest.azure.net),
verify the returned token's signature against the instance's /certs and its issuer, and
print the token and its decoded claims.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.MAA == "" {
				return errors.New("--maa is required (https://HOST/attestation/{instance})")
			}
			if runtimeFile != "" {
				var err error
				if o.RuntimeData, err = os.ReadFile(runtimeFile); err != nil {
					return fmt.Errorf("--runtime-data: %w", err)
				}
			}
			if simulated {
				p, err := sim.New(sim.Config{ProductLine: product})
				if err != nil {
					return err
				}
				o.Provider = &evidence.Simulated{Platform: p}
			} else {
				dev, err := evidence.NewDevice()
				if err != nil {
					return fmt.Errorf("%w (use --sim for the simulated platform)", err)
				}
				o.Provider = dev
			}
			var err error
			if o.Client, err = caClient(caFile); err != nil {
				return err
			}
			return guestAttest(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.MAA, "maa", "", "attestation instance URL (https://HOST/attestation/{instance})")
	f.BoolVar(&simulated, "sim", false, "use the simulated SEV-SNP platform instead of the guest device")
	f.StringVar(&product, "product", "Milan", "with --sim: product line to impersonate (Milan or Genoa)")
	f.StringVar(&runtimeFile, "runtime-data", "", "file sent as runtimeData and bound in REPORT_DATA (default: none)")
	f.StringVar(&o.Nonce, "nonce", "", "nonce to send (echoed in the token)")
	f.StringVar(&caFile, "ca", "", "CA certificate to trust (default: SSL_CERT_FILE, else the system roots)")
	return cmd
}

// caClient trusts caFile, else SSL_CERT_FILE, else the system roots.
func caClient(caFile string) (*http.Client, error) {
	if caFile == "" {
		caFile = os.Getenv("SSL_CERT_FILE")
	}
	if caFile == "" {
		return localdial.Client(nil), nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA: no certificate in %s", caFile)
	}
	return localdial.Client(pool), nil
}

// guestAttest runs the guest side of MAA's SevSnpVm protocol and prints the verified token.
func guestAttest(ctx context.Context, o guestAttestOptions, out io.Writer) error {
	maa := strings.TrimRight(o.MAA, "/")
	var rd [64]byte
	if len(o.RuntimeData) > 0 {
		rd = evidence.ReportData(o.RuntimeData)
	}
	ev, err := o.Provider.Evidence(ctx, rd)
	if err != nil {
		return err
	}
	body, err := ev.Request(o.RuntimeData, o.Nonce)
	if err != nil {
		return err
	}
	var tokResp struct {
		Token string `json:"token"`
	}
	if err := call(ctx, o.Client, "POST", maa+"/attest/SevSnpVm?api-version=2022-08-01", body, &tokResp); err != nil {
		return fmt.Errorf("attest: %w", err)
	}
	var set jose.JSONWebKeySet
	if err := call(ctx, o.Client, "GET", maa+"/certs", nil, &set); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	claims, err := verifyToken(tokResp.Token, set, maa, time.Now())
	if err != nil {
		return err
	}
	pretty, err := json.MarshalIndent(claims, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s\n%s\n", tokResp.Token, pretty)
	return err
}

// verifyToken checks an attestation token's RS256 signature with the key its kid names in
// set, its issuer and its validity window, and returns its claims.
func verifyToken(token string, set jose.JSONWebKeySet, issuer string, now time.Time) (map[string]any, error) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	if len(tok.Headers) != 1 {
		return nil, errors.New("token: not a single-signature JWT")
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) == 0 {
		return nil, fmt.Errorf("token: kid %q is not in %s/certs", tok.Headers[0].KeyID, issuer)
	}
	var std jwt.Claims
	claims := map[string]any{}
	if err := tok.Claims(keys[0].Key, &std, &claims); err != nil {
		return nil, fmt.Errorf("token signature: %w", err)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: issuer, Time: now}, time.Minute); err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	return claims, nil
}

// call sends a JSON request and decodes a 200 JSON answer into v; any other answer is an
// error carrying the server's message.
func call(ctx context.Context, c *http.Client, method, url string, body []byte, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Code != "" {
			return fmt.Errorf("%s: %s %s", res.Status, e.Error.Code, e.Error.Message)
		}
		return fmt.Errorf("%s: %.200s", res.Status, b)
	}
	return json.Unmarshal(b, v)
}
