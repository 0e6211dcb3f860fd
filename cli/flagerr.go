package cli

// Flag errors in one line of our own words: pflag's say
// "unknown shorthand flag: '1' in -1" for a negative number given as an
// argument and leak "strconv.ParseUint: parsing ..." for a bad flag
// value. flagError (the root's FlagErrorFunc, inherited by every command)
// rewrites both.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// flagError is the FlagErrorFunc of every command.
func flagError(cmd *cobra.Command, err error) error {
	var ne *pflag.NotExistError
	if errors.As(err, &ne) && ne.GetSpecifiedShortnames() != "" {
		tok := "-" + ne.GetSpecifiedShortnames()
		if _, nerr := strconv.ParseFloat(tok, 64); nerr == nil {
			// A negative number where an argument was meant.
			if cmd.Name() == "ctl" {
				if a := cmd.Flags().Args(); len(a) >= 2 {
					if _, perr := parseCtl(a[1], []string{tok}); perr != nil {
						return perr
					}
				}
			}
			return fmt.Errorf("%s: argument %s: negative numbers are not valid here", cmd.Name(), tok)
		}
	}
	var ive *pflag.InvalidValueError
	if errors.As(err, &ive) && ive.GetFlag() != nil {
		f := ive.GetFlag()
		want := ""
		switch f.Value.Type() {
		case "uint", "uint8", "uint16", "uint32", "uint64":
			want = "want a whole number, 0 or more"
		case "int", "int8", "int16", "int32", "int64":
			want = "want a whole number"
		case "float32", "float64":
			want = "want a number"
		case "duration":
			want = "want a duration such as 500ms, 2s or 1m"
		case "bool":
			want = "want true or false"
		case "uintSlice":
			want = "want whole numbers, 0 or more, separated by commas"
		default:
			want = "not a valid " + f.Value.Type()
		}
		return fmt.Errorf("--%s %q: %s (%s)", f.Name, ive.GetValue(), want, strings.TrimSpace(f.Usage))
	}
	return err
}
