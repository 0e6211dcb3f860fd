package layout

import (
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRecorderWords: the recorder words are aligned, in the statistics area
// after the last statistics word and before the time-control words, zero in
// a new segment (off), round trip, leave the segment decodable, and are the
// rows docs/LAYOUT.md's kind header table gives them.
func TestRecorderWords(t *testing.T) {
	b, _ := encodeTestWorld(t)
	require.Equal(t, RecorderStats{}, ReadRecorderStats(b), "a new segment: not recording")
	require.Equal(t, "off", RecorderOff.String())
	words := map[int]int{OffWRecState: 4, OffWRecWritten: 8, OffWRecDropped: 8, OffWRecFileBytes: 8, OffWRecRawBytes: 8, OffWRecKeyframes: 8}
	for off, size := range words {
		require.Zero(t, off%8, "aligned: %d", off)
		require.Greater(t, off, OffWStatTrimmed, "after the statistics words")
		require.LessOrEqual(t, off+size, OffWTimeBeat, "before the time-control words")
	}
	s := RecorderStats{State: RecorderFailed, Written: 1, Dropped: 2, FileBytes: 3, RawBytes: 4, Keyframes: 5}
	PutRecorderStats(b, s)
	require.Equal(t, s, ReadRecorderStats(b))
	_, err := DecodeWorld(b)
	require.NoError(t, err)
	require.Equal(t, "recorder-state(7)", RecorderState(7).String())

	doc, err := os.ReadFile("../docs/LAYOUT.md")
	require.NoError(t, err)
	rows := regexp.MustCompile(`(?m)^\| (\d+) \| (\d+) \| recorder: `).FindAllStringSubmatch(string(doc), -1)
	got := map[int]int{}
	for _, r := range rows {
		off, _ := strconv.Atoi(r[1])
		size, _ := strconv.Atoi(r[2])
		got[off] = size
	}
	require.Equal(t, words, got, "docs/LAYOUT.md's recorder rows")
}
