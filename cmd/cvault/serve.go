package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cvault/cvault/internal/app"
	"github.com/cvault/cvault/internal/barrier"
	"github.com/cvault/cvault/internal/compute"
	"github.com/cvault/cvault/internal/compute/diskdata"
)

func newServeCmd() *cobra.Command {
	var (
		cfg         app.Config
		rootKeyFile string
		simRootFile string
		aliases     []string
		logLevel    string
		logJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the cvault server (identity, ARM, key vault, attestation) on one HTTPS listener",
		Long: `Run the cvault server.

On first start it creates the data dir with a root key (embedded store only), a local CA
and a TLS certificate, and prints how clients trust the CA. Restarts reuse them.

The root key seals every secret at rest. With --store postgres://… no key is generated:
pass CVAULT_ROOT_KEY (64 hex characters or base64 of 32 bytes) or --root-key-file.
Several servers pointed at one PostgreSQL database serve the same tenants, vaults and keys;
put them behind one URL (a load balancer) and start each with that --url. Managed disks'
encrypted blocks live in DATA/disks, which such servers must share (one volume).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(logLevel, logJSON)
			if err != nil {
				return err
			}
			cfg.Logger = logger
			if cfg.StoreURL == "" {
				cfg.StoreURL = os.Getenv("CVAULT_STORE")
			}
			if cfg.RootKey, err = rootKey(rootKeyFile); err != nil {
				return err
			}
			if simRootFile != "" {
				if cfg.SimulatedRootsPEM, err = os.ReadFile(simRootFile); err != nil {
					return fmt.Errorf("--trust-sim-root: %w", err)
				}
			}
			if cfg.AuthorityAliases, err = parseAliases(aliases); err != nil {
				return err
			}
			if cfg.RotationHook, err = testRotationHook(os.Getenv(crashEnv), os.Getenv(delayEnv)); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			a, err := app.New(ctx, cfg)
			if err != nil {
				return err
			}
			defer a.Close()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "cvault %s serving %s on %s\n", version, a.BaseURL, a.Addr())
			if a.TLSFiles.CAPath != "" {
				fmt.Fprintf(out, "CA certificate: %s\n  trust it with: export SSL_CERT_FILE=%s\n", a.TLSFiles.CAPath, a.TLSFiles.CAPath)
			}
			if a.RootKeyCreated {
				fmt.Fprintf(out, "Generated root key: %s (keep it; it seals every secret in the store)\n", cfg.DataDir+"/root.key")
			}
			if a.Admin != nil {
				// Shown once, like a dev root token; also in --data/admin.json (0600).
				fmt.Fprintf(out, "Bootstrap administrator (saved to %s):\n  tenantId:     %s\n  clientId:     %s\n  clientSecret: %s\n  authority:    %s\n",
					cfg.DataDir+"/"+app.AdminFile, a.Admin.TenantID, a.Admin.ClientID, a.Admin.ClientSecret, a.Admin.Authority)
			}
			return a.Serve(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:8443", "address to listen on (host:port)")
	f.StringVar(&cfg.URL, "url", "", "public base URL, the only source of absolute URLs (default https://localhost:<listen port>; stored on first start)")
	f.StringVar(&cfg.DataDir, "data", "./cvault-data", "data directory (embedded store, root key, CA, TLS files)")
	f.StringVar(&cfg.StoreURL, "store", "", "store: empty for the embedded store in --data, or postgres://… (env CVAULT_STORE)")
	f.StringVar(&rootKeyFile, "root-key-file", "", "file holding the root key (default: env CVAULT_ROOT_KEY, else --data/root.key for the embedded store)")
	f.StringVar(&cfg.VaultDomain, "vault-domain", "vault.localhost", "parent domain of vault hosts ({vault}.{vault-domain})")
	f.StringVar(&cfg.TLSCertFile, "tls-cert", "", "TLS certificate chain (PEM) to use instead of the generated one")
	f.StringVar(&cfg.TLSKeyFile, "tls-key", "", "TLS private key (PEM) for --tls-cert")
	f.StringSliceVar(&cfg.Hostnames, "hostname", nil, "extra DNS names or IPs for the generated TLS certificate (repeatable)")
	f.StringVar(&simRootFile, "trust-sim-root", "", "trust the simulated SEV-SNP platform's roots in this PEM file (from 'cvault sim root'); tokens say x-cvault-simulated: true")
	f.BoolVar(&cfg.AMDKDS, "amd-kds", false, "fetch missing SEV-SNP VCEKs and AMD's CRLs from https://kdsintf.amd.com (cached in the store, shared by all servers) and refuse revoked VCEK/ASK; off: offline, the VCEK must come with the evidence")
	f.DurationVar(&cfg.DEKCacheTTL, "dek-cache-ttl", diskdata.DefaultDEKCacheTTL, "how long an unwrapped disk data key is reused; a customer's disabled key stops disk reads within this time (negative: no cache)")
	f.StringSliceVar(&aliases, "authority-alias", nil, "map an attestation authority URL named in release policies (e.g. Azure's https://sharedeus.eus.attest.azure.net) to an attestation instance: URL=INSTANCE (repeatable)")
	f.StringSliceVar(&cfg.TrustedAuthorities, "trusted-authority", nil, "external MAA-compatible attestation authority (issuer URL) whose tokens may release keys; keys via its OpenID metadata (repeatable)")
	f.StringVar(&cfg.DiskBlocks, "disk-blocks", "", "where managed-disk blocks live: dir (sparse files in --data/disks) or store (in the store, shared by every server on one PostgreSQL); default dir for the embedded store, store with postgres://…")
	f.DurationVar(&cfg.JobLease, "job-lease", 15*time.Second, "lease of a server on a job (DES key rotation); another server takes a job over when its holder has not renewed it for this long")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.BoolVar(&logJSON, "log-json", false, "log as JSON lines instead of text")
	return cmd
}

// parseAliases reads --authority-alias URL=INSTANCE values.
func parseAliases(in []string) (map[string]string, error) {
	out := map[string]string{}
	for _, a := range in {
		u, inst, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(u, "https://") || inst == "" {
			return nil, fmt.Errorf("--authority-alias %q: want https://AUTHORITY=INSTANCE", a)
		}
		out[u] = inst
	}
	return out, nil
}

// rootKey reads the operator's root key: --root-key-file, else CVAULT_ROOT_KEY,
// else nil (the embedded store's generated key file).
func rootKey(file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("root key: %w", err)
		}
		return barrier.ParseKey(b)
	}
	if v := os.Getenv("CVAULT_ROOT_KEY"); v != "" {
		return barrier.ParseKey([]byte(v))
	}
	return nil, nil
}

func newLogger(level string, json bool) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	if json {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
}

// crashEnv names a test-only fault injection (design §8): STEP:N kills the
// server with SIGKILL when the N-th disk re-wrap reaches STEP
// (compute.StepBeforeUnwrap, StepAfterWrap, StepAfterCommit).
const crashEnv = "CVAULT_TEST_ROTATION_CRASH"

// delayEnv names a test-only slowdown (design §8): a duration each disk
// re-wrap sleeps before its unwrap, so a multi-server test can kill the
// server holding a rotation while it is still running.
const delayEnv = "CVAULT_TEST_ROTATION_DELAY"

// testRotationHook combines the test-only crash and delay hooks (nil when
// neither is set).
func testRotationHook(crashSpec, delaySpec string) (func(string), error) {
	crash, err := crashHook(crashSpec)
	if err != nil {
		return nil, err
	}
	if delaySpec == "" {
		return crash, nil
	}
	delay, err := time.ParseDuration(delaySpec)
	if err != nil || delay < 0 {
		return nil, fmt.Errorf("%s=%q: want a duration", delayEnv, delaySpec)
	}
	return func(step string) {
		if step == compute.StepBeforeUnwrap {
			time.Sleep(delay)
		}
		if crash != nil {
			crash(step)
		}
	}, nil
}

func crashHook(spec string) (func(string), error) {
	if spec == "" {
		return nil, nil
	}
	step, nStr, ok := strings.Cut(spec, ":")
	n, err := strconv.Atoi(nStr)
	if !ok || err != nil || n < 1 {
		return nil, fmt.Errorf("%s=%q: want STEP:N", crashEnv, spec)
	}
	var count atomic.Int64
	return func(s string) {
		if s == step && count.Add(1) == int64(n) {
			p, _ := os.FindProcess(os.Getpid())
			_ = p.Kill() // SIGKILL: nothing deferred runs, as with kill -9
			select {}
		}
	}, nil
}
