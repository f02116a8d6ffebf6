package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/cvault/cvault/internal/demo"
)

func newDemoCmd() *cobra.Command {
	var logFile string
	cmd := &cobra.Command{
		Use:   "demo [skr|cross-tenant|all]",
		Short: "Replay the seed scenarios end to end against an in-process server (exit 0 only if every step held)",
		Long: `Replay the seed scenarios step by step against an in-process cvault on a throwaway embedded
store, over HTTPS, through the Azure SDK and the guest agent; one line per step.
With no argument every scenario runs. CVAULT_DEMO_BREAK=<step> fails that step on purpose.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := demo.Config{Out: cmd.OutOrStdout(), Break: os.Getenv("CVAULT_DEMO_BREAK")}
			if logFile != "" {
				f, err := os.Create(logFile)
				if err != nil {
					return err
				}
				defer f.Close()
				cfg.Logs = f
			}
			return demo.Run(cmd.Context(), cfg, args...)
		},
	}
	cmd.Flags().StringVar(&logFile, "server-log", "", "write the in-process server's log to this file")
	return cmd
}
