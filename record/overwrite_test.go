package record_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fdp-engine/fdp/record"
	"github.com/stretchr/testify/require"
)

// TestCreateOverwrite: Create refuses an existing file without Overwrite
// (the old recording stays whole); with it, it replaces a recording or an
// empty file, and never a file that is not a recording.
func TestCreateOverwrite(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "a.fdpr")
	w, err := record.Create(rec, emptyWorldHeader(t), record.WriterOptions{})
	require.NoError(t, err)
	require.NoError(t, w.Close())
	before, err := os.ReadFile(rec)
	require.NoError(t, err)

	_, err = record.Create(rec, emptyWorldHeader(t), record.WriterOptions{})
	require.ErrorIs(t, err, record.ErrExists)
	after, err := os.ReadFile(rec)
	require.NoError(t, err)
	require.Equal(t, before, after, "refused: untouched")

	w, err = record.Create(rec, emptyWorldHeader(t), record.WriterOptions{Overwrite: true})
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.True(t, record.IsRecording(rec))

	text := filepath.Join(dir, "notes.txt")
	require.NoError(t, os.WriteFile(text, []byte("my notes\n"), 0o600))
	_, err = record.Create(text, emptyWorldHeader(t), record.WriterOptions{Overwrite: true})
	require.ErrorIs(t, err, record.ErrNotRecording)
	got, err := os.ReadFile(text)
	require.NoError(t, err)
	require.Equal(t, "my notes\n", string(got))
	_, err = record.Create(dir, emptyWorldHeader(t), record.WriterOptions{Overwrite: true})
	require.ErrorIs(t, err, record.ErrNotRecording)

	empty := filepath.Join(dir, "empty.fdpr")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	_, err = record.Create(empty, emptyWorldHeader(t), record.WriterOptions{})
	require.ErrorIs(t, err, record.ErrExists)
	w, err = record.Create(empty, emptyWorldHeader(t), record.WriterOptions{Overwrite: true})
	require.NoError(t, err)
	require.NoError(t, w.Close())
}
