package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/fdp-engine/fdp/internal/logs"
	"github.com/spf13/cobra"
)

// addLogFormatFlag registers --log-format on c.
func addLogFormatFlag(c *cobra.Command, v *string) {
	c.Flags().StringVar(v, "log-format", "", fmt.Sprintf(`log format: "text" or "json" (one JSON object per line) (default $%s, else text)`, logs.EnvVar))
}

// resolveLogFormat returns the log format of a command: the --log-format
// flag if given, else $FDP_LOG_FORMAT if set (a supervisor sets it for its
// children), else fallback (`engine up`: the config's log_format) if not
// "", else text. An invalid value is a one-line error naming the valid
// ones.
func resolveLogFormat(flag, fallback string) (logs.Format, error) {
	from, v := "--log-format", flag
	if v == "" {
		from, v = "$"+logs.EnvVar, os.Getenv(logs.EnvVar)
	}
	if v == "" {
		from, v = "log_format", fallback
	}
	if v == "" {
		return logs.Text, nil
	}
	f, err := logs.ParseFormat(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", from, err)
	}
	return f, nil
}

// output is where a command writes: its log (stderr), and what it prints
// for people, the status line (stderr) and the summary (stdout). In the
// JSON format each line of those is a record of its own (logs.Lines), so
// that every line the command writes is one JSON object.
type output struct {
	format  logs.Format
	log     *slog.Logger // records on stderr
	summary *slog.Logger // records on stdout (the summary's, in JSON)
	status  io.Writer    // the status line
	out     io.Writer    // the summary
	flush   []func()
}

// newOutput returns the output of a command in format f.
func newOutput(f logs.Format, stdout, stderr io.Writer) *output {
	o := &output{format: f, log: logs.New(stderr, f), summary: logs.New(stdout, f), status: stderr, out: stdout}
	if f == logs.JSON {
		status, out := logs.NewLines(o.log, slog.LevelInfo), logs.NewLines(o.summary, slog.LevelInfo)
		o.status, o.out = status, out
		o.flush = append(o.flush, status.Flush, out.Flush)
	}
	return o
}

// close logs what is left of an unfinished line.
func (o *output) close() {
	for _, f := range o.flush {
		f()
	}
}

// fail returns err for cobra to print ("Error: ..."); in JSON it logs err
// as a record instead and keeps cobra from printing a line of text.
func (o *output) fail(cmd *cobra.Command, err error) error {
	if err == nil || o.format != logs.JSON {
		return err
	}
	o.log.Error(cmd.Name()+" failed", "err", err)
	cmd.SilenceErrors = true
	return errFailed
}

// errFailed is returned once the error was logged (output.fail).
var errFailed = errors.New("failed")
