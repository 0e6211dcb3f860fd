package record_test

import (
	"bytes"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/record"
	"github.com/stretchr/testify/require"
)

// eventFrame is the payload of a keyframe of an empty world (one
// component, no chunks) carrying one event of the given payload.
func eventFrame(frame uint64, payload []byte) []byte {
	return record.AppendFrame(nil, &record.Frame{Kind: record.KindKeyframe, Frame: frame, Version: frame,
		Events: []record.Event{{Type: 1, Frame: frame, Payload: payload}}})
}

func emptyWorldHeader(t *testing.T) *record.Header {
	g, err := layout.ComputeWorldGeometry(layout.WorldParams{Instance: "w", Slots: 2, ChunkCapacity: 16, MaxChunks: 1,
		Components: []layout.ComponentDesc{layout.Opaque(layout.ComponentDesc{Name: "A", Size: 4, Align: 4})}})
	require.NoError(t, err)
	return &record.Header{Instance: "w", Geometry: g}
}

// TestWriterQueueBound: a writer whose file does not take its bytes (a
// FIFO nobody reads yet) queues QueueFrames frames and refuses the next
// one without blocking, counting it dropped; once the bytes flow again
// everything queued reaches the file, in order, followed by the index.
// Payloads that zstd cannot shrink are stored uncompressed (codec 0), the
// others compressed.
func TestWriterQueueBound(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	rfd, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	require.NoError(t, err)
	defer rfd.Close()
	wr, err := record.Create(fifo, emptyWorldHeader(t), record.WriterOptions{QueueFrames: 2})
	require.NoError(t, err)

	big := make([]byte, 1<<20) // more than a pipe holds: the writer blocks in write(2)
	rand.New(rand.NewSource(1)).Read(big)
	require.True(t, wr.TryEnqueue(record.KindKeyframe, 1, eventFrame(1, big)))
	deadline := time.Now().Add(30 * time.Second)
	for wr.Stats().Queued != 0 { // the writer took frame 1 and is stuck writing it
		require.True(t, time.Now().Before(deadline))
		time.Sleep(time.Millisecond)
	}
	require.True(t, wr.TryEnqueue(record.KindKeyframe, 2, eventFrame(2, make([]byte, 4096))))
	require.True(t, wr.TryEnqueue(record.KindKeyframe, 3, eventFrame(3, make([]byte, 4096))))
	start := time.Now()
	require.False(t, wr.TryEnqueue(record.KindKeyframe, 4, eventFrame(4, nil)), "the queue holds 2 frames")
	wr.NoteDropped()
	require.Less(t, time.Since(start), time.Second, "TryEnqueue does not block")
	st := wr.Stats()
	require.Equal(t, uint64(3), st.Enqueued)
	require.Equal(t, uint64(2), st.Dropped)
	require.Equal(t, 2, st.Queued)

	// Let the bytes flow: read the FIFO to its end.
	require.NoError(t, syscall.SetNonblock(int(rfd.Fd()), false))
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(rfd)
		got <- b
	}()
	require.NoError(t, wr.Close())
	data := <-got
	require.Equal(t, uint64(3), wr.Stats().Written)

	rd, err := record.NewReader(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	require.False(t, rd.Rebuilt())
	ix := rd.Index()
	require.Len(t, ix, 3)
	for i, e := range ix {
		require.Equal(t, uint64(i+1), e.Frame)
		f, err := rd.Frame(i)
		require.NoError(t, err)
		require.Equal(t, e.Frame, f.Events[0].Frame)
	}
	require.Equal(t, big, mustFrame(t, rd, 0).Events[0].Payload)
	require.Equal(t, ix[0].Raw, ix[0].Stored, "random bytes are stored as they are")
	require.Equal(t, byte(record.CodecNone), data[ix[0].Offset+5])
	require.Less(t, ix[1].Stored, ix[1].Raw, "zeros are compressed")
	require.Equal(t, byte(record.CodecZstd), data[ix[1].Offset+5])
	require.False(t, wr.TryEnqueue(record.KindKeyframe, 5, eventFrame(5, nil)), "a closed writer takes nothing")
}

func mustFrame(t *testing.T, rd *record.Reader, i int) *record.Frame {
	f, err := rd.Frame(i)
	require.NoError(t, err)
	return f
}
