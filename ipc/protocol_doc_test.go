package ipc

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// protocolDoc returns docs/PROTOCOL.md.
func protocolDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../docs/PROTOCOL.md")
	require.NoError(t, err)
	return string(b)
}

// docSection returns the text of the section headed by title (any level)
// up to the next heading of the same or a higher level.
func docSection(t *testing.T, doc, title string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^(#+) ` + regexp.QuoteMeta(title) + `\s*$`)
	m := re.FindStringSubmatchIndex(doc)
	require.NotNil(t, m, "docs/PROTOCOL.md has no section %q", title)
	level := m[3] - m[2]
	rest := doc[m[1]:]
	end := regexp.MustCompile(`(?m)^#{1,` + strconv.Itoa(level) + `} `).FindStringIndex(rest)
	if end != nil {
		rest = rest[:end[0]]
	}
	return rest
}

// tableKeys returns the backticked first cells of the rows of the first
// table after the line that contains after ("" for the section's first).
func tableKeys(t *testing.T, text, after string) []string {
	t.Helper()
	i := strings.Index(text, after)
	require.GreaterOrEqual(t, i, 0, "no %q", after)
	var keys []string
	started := false
	for _, line := range strings.Split(text[i:], "\n") {
		if !strings.HasPrefix(line, "|") {
			if started {
				break
			}
			continue
		}
		started = true
		cell := strings.TrimSpace(strings.Split(line, "|")[1])
		if strings.HasPrefix(cell, "`") && strings.HasSuffix(cell, "`") {
			keys = append(keys, strings.Trim(cell, "`"))
		}
	}
	require.NotEmpty(t, keys, "no table after %q", after)
	slices.Sort(keys)
	return keys
}

// jsonTags returns the JSON keys of a struct type (fields tagged "-"
// excluded), sorted.
func jsonTags(v any) []string {
	var out []string
	ty := reflect.TypeOf(v)
	for i := 0; i < ty.NumField(); i++ {
		tag, _, _ := strings.Cut(ty.Field(i).Tag.Get("json"), ",")
		if tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	slices.Sort(out)
	return out
}

// TestProtocolDocMatchesCode: every message, field and refusal code that
// docs/PROTOCOL.md names exists in the code, and every one of the code is
// in the document (as TestMetricsDocumented does for metrics).
func TestProtocolDocMatchesCode(t *testing.T) {
	doc := protocolDoc(t)
	hello := docSection(t, doc, "Hello (module → engine)")
	require.Equal(t, jsonTags(Hello{}), tableKeys(t, hello, "| key | JSON type |"), "hello fields")
	require.Equal(t, jsonTags(LifecycleSub{}), tableKeys(t, hello, "`lifecycle` (keys checked strictly)"), "lifecycle keys")
	require.Equal(t, jsonTags(WakeOnSub{}), tableKeys(t, hello, "`wake_on` (slow tier only"), "wake_on keys")
	reply := docSection(t, doc, "Reply (engine → module)")
	require.Equal(t, jsonTags(ctlReply{}), tableKeys(t, reply, "| key | type |"), "reply fields")
	require.Equal(t, jsonTags(Welcome{}), tableKeys(t, reply, "A welcome:"), "welcome fields")
	require.Contains(t, reply, "`world`, `events`, `module`")
	require.Equal(t, []string{"events", "module", "world"}, jsonTags(SegmentNames{}))
	// The descriptors, in their order.
	for fd := WelcomeFD(0); fd < WelcomeFDs; fd++ {
		require.Contains(t, reply, "**"+strconv.Itoa(int(fd))+"** the ", "descriptor %d", fd)
	}
	require.Contains(t, reply, "exactly three file descriptors")
	require.Equal(t, 3, WelcomeFDs)

	codes := docSection(t, doc, "Refusal codes")
	var want []string
	for _, c := range ctlCodes {
		want = append(want, c.code)
	}
	slices.Sort(want)
	require.Equal(t, want, tableKeys(t, codes, "| code |"), "refusal codes")

	// Versions and limits.
	versions := docSection(t, doc, "Versions")
	require.Contains(t, versions, "| control protocol | `3` (`ipc.ControlProtoVersion`)")
	require.Equal(t, 3, ControlProtoVersion)
	has := func(s string) { t.Helper(); require.True(t, strings.Contains(doc, s), "docs/PROTOCOL.md lacks %q", s) }
	has("| a control frame | 65536 bytes | `too_large` |")
	has("`0 ≤ n ≤ 65536`")
	require.Equal(t, 65536, ControlMaxMessage)
	has("The engine allows 5 s (`ControlConfig.HandshakeTimeout`)")

	// Every test the document names exists.
	var src strings.Builder
	for _, dir := range []string{"../tests", "."} {
		files, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, f := range files {
			if strings.HasSuffix(f.Name(), "_test.go") {
				b, err := os.ReadFile(dir + "/" + f.Name())
				require.NoError(t, err)
				src.Write(b)
			}
		}
	}
	named := regexp.MustCompile("`(?:tests|ipc)\\.(Test\\w+)`").FindAllStringSubmatch(docSection(t, doc, "Tests"), -1)
	require.NotEmpty(t, named)
	for _, m := range named {
		require.Contains(t, src.String(), "func "+m[1]+"(t *testing.T)", "docs/PROTOCOL.md names %s", m[1])
	}
}
