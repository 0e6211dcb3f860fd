package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fdp-engine/fdp/shm"
	"github.com/spf13/cobra"
)

// startCommand is the start of a long-running command (run, replay): its
// output (stdout, stderr) in its --log-format logFormat (there is no
// configuration file to fall back on), then its flags' check, then the shm
// directory's (said before anything reads the directory: recovery would
// fail for it with another reason). A failure is returned as out.fail
// returns it; on success the caller closes the output.
func startCommand(cmd *cobra.Command, logFormat string, check func() error) (*output, error) {
	f, err := resolveLogFormat(logFormat, "")
	if err != nil {
		return nil, err
	}
	out := newOutput(f, cmd.OutOrStdout(), os.Stderr)
	err = check()
	if err == nil {
		err = shm.CheckDir()
	}
	if err != nil {
		err = out.fail(cmd, err)
		out.close()
		return nil, err
	}
	return out, nil
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
