package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/cvault/cvault/internal/attest/snp"
	"github.com/cvault/cvault/internal/guest/evidence"
	"github.com/cvault/cvault/internal/sim"
)

func newSimCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulated AMD SEV-SNP platform: its roots and signed attestation reports",
		Long: `The simulated SEV-SNP platform signs spec-exact attestation reports with its own
ARK/ASK/VCEK chain, so attestation and key release run on machines without SEV-SNP.
A server trusts it only when started with 'cvault serve --trust-sim-root FILE', where
FILE is the output of 'cvault sim root'; every token it then issues says
x-cvault-simulated: true.`,
	}
	cmd.AddCommand(newSimRootCmd(), newSimReportCmd())
	return cmd
}

func newSimRootCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "root",
		Short: "Print the simulated platform's root certificates (PEM) for serve --trust-sim-root",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pem, err := sim.AllRootsPEM()
			if err != nil {
				return err
			}
			return writeOut(cmd.OutOrStdout(), out, pem)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write to this file instead of stdout")
	return cmd
}

func newSimReportCmd() *cobra.Command {
	var (
		out, product, reportData, runtimeFile, measurement, hostData, nonce string
		o                                                                   sim.Options
		version                                                             uint32
	)
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Print an MAA SevSnpVm request (report, VCEK chain, runtime data) from the simulated platform",
		Long: `Print the JSON body of an MAA SevSnpVm attestation request, ready to POST to
https://HOST/attestation/{instance}/attest/SevSnpVm?api-version=2022-08-01:
a simulated report, its VCEK chain and (with --runtime-data) the runtime data whose
SHA-256 the report binds in REPORT_DATA[0:32].`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var runtime []byte
			switch {
			case reportData != "" && runtimeFile != "":
				return fmt.Errorf("--report-data and --runtime-data exclude each other (runtime data fixes the report data)")
			case runtimeFile != "":
				var err error
				if runtime, err = os.ReadFile(runtimeFile); err != nil {
					return fmt.Errorf("--runtime-data: %w", err)
				}
				o.ReportData = evidence.ReportData(runtime)
			case reportData != "":
				if err := hexInto(o.ReportData[:], reportData, "--report-data", true); err != nil {
					return err
				}
			}
			if err := hexInto(o.Measurement[:], measurement, "--measurement", false); err != nil {
				return err
			}
			if err := hexInto(o.HostData[:], hostData, "--host-data", false); err != nil {
				return err
			}
			if o.VMPL > 3 {
				return fmt.Errorf("--vmpl %d: VMPLs are 0 to 3", o.VMPL)
			}
			o.Version = version
			p, err := sim.New(sim.Config{ProductLine: product})
			if err != nil {
				return err
			}
			raw, chain, err := p.Report(o)
			if err != nil {
				return err
			}
			body, err := snp.Request{Report: raw, CertChain: chain.PEM(), RuntimeData: runtime, Nonce: nonce}.Marshal()
			if err != nil {
				return err
			}
			return writeOut(cmd.OutOrStdout(), out, append(body, '\n'))
		},
	}
	f := cmd.Flags()
	f.StringVar(&product, "product", "Milan", "product line to impersonate: Milan or Genoa")
	f.StringVar(&reportData, "report-data", "", "REPORT_DATA as hex (up to 64 bytes, zero-padded); no runtime data is sent")
	f.StringVar(&runtimeFile, "runtime-data", "", "file whose bytes are sent as runtimeData and bound by REPORT_DATA[0:32] = SHA-256")
	f.StringVar(&measurement, "measurement", "", "launch MEASUREMENT as hex (48 bytes)")
	f.StringVar(&hostData, "host-data", "", "HOST_DATA as hex (32 bytes)")
	f.StringVar(&nonce, "nonce", "", "nonce to send (echoed in the token)")
	f.BoolVar(&o.Debug, "debug", false, "set the guest policy DEBUG bit")
	f.BoolVar(&o.MigrateMA, "migrate-ma", false, "set the guest policy MIGRATE_MA bit")
	f.BoolVar(&o.SMT, "smt", false, "set the guest policy SMT bit")
	f.BoolVar(&o.VLEK, "vlek", false, "sign with the simulated VLEK instead of the VCEK")
	f.Uint32Var(&o.VMPL, "vmpl", 0, "VMPL of the requesting guest (0-3)")
	f.Uint32Var(&o.GuestSVN, "guest-svn", 0, "GUEST_SVN")
	f.Uint32Var(&version, "report-version", 3, "report version (2 or 3)")
	f.StringVar(&out, "out", "", "write to this file instead of stdout")
	return cmd
}

// hexInto decodes s into dst; exact requires len(s) == 2*len(dst) unless prefix is allowed.
func hexInto(dst []byte, s, flag string, prefix bool) error {
	if s == "" {
		return nil
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("%s: not hex: %w", flag, err)
	}
	if len(b) > len(dst) || (!prefix && len(b) != len(dst)) {
		return fmt.Errorf("%s: %d bytes, want %d", flag, len(b), len(dst))
	}
	copy(dst, b)
	return nil
}

func writeOut(stdout io.Writer, file string, b []byte) error {
	if file == "" {
		_, err := stdout.Write(b)
		return err
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}
