package module

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// TestMainOptionsLogFormat: MainOptions (its Logger nil) logs in the
// format $FDP_LOG_FORMAT names: a refusal (here an invalid $FDP_TIER) is one
// JSON object with "json", one slog text line with "text" or unset; an
// invalid $FDP_LOG_FORMAT is itself a refusal, one line, exit 78 (a
// supervisor does not restart it).
func TestMainOptionsLogFormat(t *testing.T) {
	testutil.RunChild("FDP_TEST_MAINOPTS", func(string) int {
		MainOptions(specOnly{Spec{Name: "m", Tier: Fast, Every: 1}}, Options{Registry: world.NewRegistry(),
			Instance: fmt.Sprintf("nosuch%d", time.Now().UnixNano()%1e9), AttachTimeout: 200 * time.Millisecond, RejoinTimeout: -1})
		return 0
	})
	for _, c := range []struct {
		env  []string
		json bool
		want string
	}{
		{[]string{"FDP_LOG_FORMAT=json", "FDP_TIER=bogus"}, true, "$FDP_TIER"},
		{[]string{"FDP_LOG_FORMAT=text", "FDP_TIER=bogus"}, false, "$FDP_TIER"},
		{[]string{"FDP_LOG_FORMAT=", "FDP_TIER=bogus"}, false, "$FDP_TIER"},
		{[]string{"FDP_LOG_FORMAT=xml", "FDP_TIER="}, false, "$FDP_LOG_FORMAT"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMainOptionsLogFormat$", "-test.count=1")
		cmd.Env = append(os.Environ(), append([]string{"FDP_TEST_MAINOPTS=1", "FDP_MODULE=", "FDP_EVERY="}, c.env...)...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != layout.ExitRefused {
			t.Fatalf("%v: %v, want exit %d:\n%s", c.env, err, layout.ExitRefused, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 1 {
			t.Fatalf("%v: %d lines, want one:\n%s", c.env, len(lines), out)
		}
		var rec struct{ Level, Msg, Module, Err string }
		isJSON := json.Unmarshal([]byte(lines[0]), &rec) == nil
		if isJSON != c.json || (!isJSON && !strings.HasPrefix(lines[0], "time=")) {
			t.Fatalf("%v: not the format asked for: %s", c.env, lines[0])
		}
		if isJSON && (rec.Level != "ERROR" || rec.Msg != "module refused: a restart cannot change it" || rec.Module != "m" ||
			!strings.Contains(rec.Err, c.want)) {
			t.Fatalf("%v: record %+v", c.env, rec)
		}
		if !strings.Contains(lines[0], c.want) || !strings.Contains(lines[0], "module refused") {
			t.Fatalf("%v: %s does not name %s", c.env, lines[0], c.want)
		}
	}
}

// TestMainOptionsOwnLogger: a module's own Logger (here slog text on
// stderr) gets module=<name> on the SDK's records, as the default logger
// has it (it was missing).
func TestMainOptionsOwnLogger(t *testing.T) {
	testutil.RunChild("FDP_TEST_OWNLOGGER", func(string) int {
		MainOptions(specOnly{Spec{Name: "m", Tier: Fast, Every: 1}}, Options{Registry: world.NewRegistry(),
			Logger:   slog.New(slog.NewTextHandler(os.Stderr, nil)),
			Instance: fmt.Sprintf("nosuch%d", time.Now().UnixNano()%1e9), AttachTimeout: 200 * time.Millisecond, RejoinTimeout: -1})
		return 0
	})
	cmd := exec.Command(os.Args[0], "-test.run=^TestMainOptionsOwnLogger$", "-test.count=1")
	cmd.Env = append(os.Environ(), "FDP_TEST_OWNLOGGER=1", "FDP_MODULE=", "FDP_EVERY=", "FDP_TIER=bogus")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), `msg="module refused: a restart cannot change it"`) || !strings.Contains(string(out), "module=m ") {
		t.Fatalf("no module=m on the SDK's record:\n%s", out)
	}
}
