package record_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/fdp-engine/fdp/record"
	"github.com/stretchr/testify/require"
)

// TestRoundTripDifferential: a random world published by a real
// sync.Publisher is captured at every publish but the dropped ones (not
// captured at all, or captured and refused by the queue: Rewind); each
// payload is decoded and applied to an image, which must equal the slot
// byte for byte (Image.CompareSlot: an independent reading of the
// segment). The same payloads go through a Writer into a file (zstd and
// uncompressed); reading the file back gives, frame by frame, the images
// of the live run (digests), and a Seek to every frame gives the same.
func TestRoundTripDifferential(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opt      record.WriterOptions
		keyEvery int
	}{{"zstd", record.WriterOptions{}, 7}, {"raw", record.WriterOptions{Uncompressed: true}, 0}} {
		for seed := int64(1); seed <= seeds(); seed++ {
			t.Run(fmt.Sprintf("%s-%d", tc.name, seed), func(t *testing.T) {
				l := newLive(t, 64, 64, 500, seed)
				hdr, err := record.NewHeader(l.lw, 1, 16666666, uint32(tc.keyEvery))
				require.NoError(t, err)
				path := filepath.Join(t.TempDir(), "rec.fdpr")
				wr, err := record.Create(path, hdr, tc.opt)
				require.NoError(t, err)
				cp := record.NewCapturer(l.lw, tc.keyEvery)
				im := record.NewImage(hdr)
				digests := map[uint64]uint64{}
				var kinds [5]int
				for i := 0; i < 250; i++ {
					l.step([]float64{0, 0.01, 0.1, 0.5}[l.rng.Intn(4)])
					s := l.publish()
					if l.rng.Intn(10) == 0 {
						continue // dropped before capture
					}
					evs := []record.Event{{Type: 7, Frame: l.frame, Payload: []byte{byte(i)}}}
					bts := []record.Batch{{Module: "m", Slot: 2, PID: 42, Seq: uint64(i), Applied: 1, Commands: make([]byte, 24)}}
					raw, info, err := cp.Capture(nil, s, evs, bts)
					require.NoError(t, err)
					if l.rng.Intn(10) == 0 {
						cp.Rewind() // the queue refused it
						continue
					}
					kinds[info.Kind]++
					f, err := record.DecodeFrame(info.Kind, raw, hdr)
					require.NoError(t, err)
					require.Equal(t, evs, f.Events)
					require.Equal(t, bts[0].Commands, f.Batches[0].Commands)
					require.NoError(t, im.Apply(f))
					require.NoError(t, im.CompareSlot(l.lw, s), "frame %d (%s)", l.frame, info.Kind)
					digests[l.frame] = digest(im)
					for !wr.TryEnqueue(info.Kind, info.Frame, raw) {
						// the test's queue must not drop: wait for room
					}
				}
				require.NoError(t, wr.Close())
				require.Positive(t, kinds[record.KindDelta])
				require.Positive(t, kinds[record.KindKeyframe])

				rd, err := record.Open(path)
				require.NoError(t, err)
				defer rd.Close()
				require.False(t, rd.Rebuilt())
				require.Len(t, rd.Index(), len(digests))
				im2 := record.NewImage(rd.Header())
				for i, e := range rd.Index() {
					f, err := rd.Frame(i)
					require.NoError(t, err)
					require.NoError(t, im2.Apply(f))
					require.Equal(t, digests[e.Frame], digest(im2), "frame %d", e.Frame)
				}
				for i := len(rd.Index()) - 1; i >= 0; i -= 13 {
					im3 := record.NewImage(rd.Header())
					_, err := rd.Seek(im3, i)
					require.NoError(t, err)
					require.Equal(t, digests[rd.Index()[i].Frame], digest(im3))
				}
				// Seeking forward and back with one image (a replay's
				// steps and seeks), and a stream from the middle.
				im4 := record.NewImage(rd.Header())
				for _, i := range []int{3, 4, 9, 30, 2, 31, len(rd.Index()) - 1, 0} {
					_, err := rd.Seek(im4, i)
					require.NoError(t, err)
					require.Equal(t, digests[rd.Index()[i].Frame], digest(im4), "seek to %d", i)
				}
				st := rd.Stream(20, len(rd.Index()), 2, 3)
				defer st.Close()
				_, err = rd.Seek(im4, 19)
				require.NoError(t, err)
				for j := 20; ; j++ {
					f, i, err := st.Next()
					if err == io.EOF {
						require.Equal(t, len(rd.Index()), j)
						break
					}
					require.NoError(t, err)
					require.Equal(t, j, i)
					require.NoError(t, im4.Apply(f))
					require.Equal(t, digests[rd.Index()[i].Frame], digest(im4), "stream at %d", i)
					rd.Recycle(f) // its buffer serves a later record: the image keeps its copies
				}
			})
		}
	}
}

// TestKeyframeBudget: with no keyframe interval, a capturer makes a
// keyframe exactly when the deltas since the last one reach the budget
// times its bytes (record.DefaultKeyframeBudget; and 1 when set so), so
// that a seek decodes at most about 1 + budget keyframes' worth.
func TestKeyframeBudget(t *testing.T) {
	for _, budget := range []float64{record.DefaultKeyframeBudget, 1} {
		l := newLive(t, 64, 64, 600, 4)
		cp := record.NewCapturer(l.lw, 0)
		if budget != record.DefaultKeyframeBudget {
			cp.SetKeyframeBudget(budget)
		}
		keyBytes, since, keys := 0, 0, 0
		for i := 0; i < 400; i++ {
			l.step(0.3)
			_, info, err := cp.Capture(nil, l.publish(), nil, nil)
			require.NoError(t, err)
			due := i == 0 || float64(since) >= budget*float64(keyBytes)
			require.Equal(t, due, info.Kind == record.KindKeyframe, "capture %d: %d delta bytes since a keyframe of %d", i, since, keyBytes)
			if info.Kind == record.KindKeyframe {
				keyBytes, since = info.Bytes, 0
				keys++
			} else {
				since += info.Bytes
			}
		}
		require.Greater(t, keys, 3, "budget %v", budget)
	}
}

// seeds is the random worlds a differential test tries: 2, or
// FDP_RECORD_SEEDS (a soak).
func seeds() int64 {
	if n, err := strconv.Atoi(os.Getenv("FDP_RECORD_SEEDS")); err == nil && n > 0 {
		return int64(n)
	}
	return 2
}
