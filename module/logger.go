package module

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/fdp-engine/fdp/internal/logs"
)

// LogFormatEnv is the environment variable that sets a module process's
// log format: "text" (the default) or "json", one JSON object per line. The
// supervisor (`engine up`) sets it to "json" for every child it starts and
// re-emits their records as its own, in its own format.
const LogFormatEnv = logs.EnvVar

// NewLogger returns a logger that writes to stderr in format: "text" or
// "json"; "" reads $FDP_LOG_FORMAT (text when unset). In either format a
// duration attribute is written rounded to three significant digits, as a
// duration string ("524µs"). An invalid format is an ErrInvalidSpec error
// (a refusal, exit 78 from MainOptions), returned with a text logger to say
// so.
func NewLogger(format string) (*slog.Logger, error) {
	from := "log format"
	if format == "" {
		from, format = "$"+LogFormatEnv, os.Getenv(LogFormatEnv)
	}
	if format == "" {
		return logs.New(os.Stderr, logs.Text), nil
	}
	f, err := logs.ParseFormat(format)
	if err != nil {
		return logs.New(os.Stderr, logs.Text), fmt.Errorf("%w: %s: %w", ErrInvalidSpec, from, err)
	}
	return logs.New(os.Stderr, f), nil
}
