// Package record is the flight recorder's frame-delta stream
// (docs/LAYOUT.md, "Frame-delta stream"): the encoder that captures a
// published frame slot as a keyframe or as a version-based delta, the
// decoder, the in-memory frame image that deltas apply to, the file
// container (a header record, frame records, a frame index at the end) with
// its background writer, and the reader that iterates and seeks.
//
// Floor 3 (docs/ARCHITECTURE.md, "Layers"): it imports layout and zstd
// only. It reads a world segment through a layout.World and a slot index,
// never a live world: the engine (host) hands it the slot it just
// published and leased, and replay rebuilds a world from an Image.
//
// Invariants:
//   - R1 (self-describing): a stream opens with a header record holding the
//     whole world schema; a decoder needs nothing else, and rejects a frame
//     that does not fit it.
//   - R2 (checked): every record has a CRC-32C (Castagnoli) of its head and
//     of its payload; nothing of a record is used before both check, so a
//     damaged record is an error, never data.
//   - R3 (never half-applied): Image.Apply validates a whole frame against
//     the image before it changes any byte.
//   - R4 (no rescan): a capture reads the slot header, the version words of
//     the chunks in use and of the singletons, and copies only what is newer
//     than the version of the previous capture.
package record
