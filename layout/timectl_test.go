package layout

import (
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTimeControlWords: the time-control words are distinct, aligned, in
// the statistics area between the last statistics word and the publish
// histogram, zero in a new segment (read as running at speed 1), round
// trip, leave the segment decodable, and are the rows docs/LAYOUT.md's
// kind header table gives them (offset and size).
func TestTimeControlWords(t *testing.T) {
	b, _ := encodeTestWorld(t)
	require.Equal(t, TimeControl{State: TimeRunning, Speed: 1}, LoadTimeControl(b), "a new segment")
	words := map[int]int{OffWTimeBeat: 8, OffWTimeSteps: 8, OffWTimeState: 4, OffWTimeFlags: 4, OffWTimeSpeed: 8}
	end := 0
	for off, size := range words {
		require.Zero(t, off%size, "aligned: %d", off)
		require.Greater(t, off, OffWStatTrimmed, "after the statistics words")
		require.LessOrEqual(t, off+size, OffWPubHist, "before the publish histogram")
		end = max(end, off+size)
	}
	require.Equal(t, OffWPubHist, end)
	require.Equal(t, 2496, OffWTimeBeat)

	tc := TimeControl{State: TimePaused, Speed: 0.5, Steps: 7, Beat: 123456789, Replay: true}
	StoreTimeControl(b, tc)
	require.Equal(t, tc, LoadTimeControl(b))
	_, err := DecodeWorld(b)
	require.NoError(t, err, "the words are outside what the header checks")
	require.Equal(t, "paused", TimePaused.String())
	require.Equal(t, "running", TimeRunning.String())
	require.Equal(t, "TimeState(9)", TimeState(9).String())

	doc, err := os.ReadFile("../docs/LAYOUT.md")
	require.NoError(t, err)
	rows := regexp.MustCompile(`(?m)^\| (\d+) \| (\d+) \| time control: `).FindAllStringSubmatch(string(doc), -1)
	got := map[int]int{}
	for _, r := range rows {
		off, _ := strconv.Atoi(r[1])
		size, _ := strconv.Atoi(r[2])
		got[off] = size
	}
	require.Equal(t, words, got, "docs/LAYOUT.md's time control rows")
}
