package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// commandOutput is the output (stdout, stderr) of a long-running command in
// its --log-format logFormat; there is no configuration file to fall back on.
// The caller closes it.
func commandOutput(cmd *cobra.Command, logFormat string) (*output, error) {
	f, err := resolveLogFormat(logFormat, "")
	if err != nil {
		return nil, err
	}
	return newOutput(f, cmd.OutOrStdout(), os.Stderr), nil
}

// runContext is the context of a long-running command: done at SIGINT or
// SIGTERM, or after d when d > 0 (--duration). The caller calls the returned
// func to release the signal handler and the timer.
func runContext(cmd *cobra.Command, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	if d <= 0 {
		return ctx, stop
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, func() { cancel(); stop() }
}
