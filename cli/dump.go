package cli

// `engine dump`: one segment decoded read-only.

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/fdp-engine/fdp/inspect"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/record"
	"github.com/fdp-engine/fdp/shm"
	"github.com/spf13/cobra"
)

// openSegment resolves a dump argument and maps the segment read-only:
//   - two arguments are an instance and a kind;
//   - an argument that names an existing file, relative or absolute (a
//     directory entry that is not a directory), or that contains '/', is
//     opened as that file (shm.OpenPath): `engine dump junk.bin` reads
//     ./junk.bin, not fdp.junk.bin in the segment directory;
//   - anything else is a segment name in shm.Dir, "fdp.<instance>.<kind>",
//     or "<instance>.<kind>" completed with the "fdp." prefix.
//
// A file in the working directory named like a segment shadows the
// segment: the file is what the user pointed at.
func openSegment(args []string) (*shm.Segment, error) {
	if len(args) == 2 {
		seg, err := shm.Open(shm.SegmentName(args[0], args[1]), false)
		if err != nil {
			return nil, openError(args[0], shm.SegmentName(args[0], args[1]), err)
		}
		return seg, nil
	}
	a := args[0]
	if isFileArg(a) {
		return shm.OpenPath(a)
	}
	name := strings.TrimPrefix(a, shm.Prefix)
	inst, kind, ok := strings.Cut(name, ".")
	if !ok || kind == "" {
		// An instance without a kind (`dump ux3`): name the kinds it has,
		// or the instances there are.
		if err := shm.CheckDir(); err != nil {
			return nil, err
		}
		if !instanceExists(inst) {
			return nil, unknownInstance(inst)
		}
		return nil, fmt.Errorf("dump %s: give a segment kind too: %s", a, kindsText(inst))
	}
	seg, err := shm.Open(shm.Prefix+name, false)
	if err != nil {
		return nil, openError(inst, shm.Prefix+name, err)
	}
	return seg, nil
}

// kindsText lists the segments of instance as dump arguments.
func kindsText(instance string) string {
	infos, err := shm.List()
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, in := range infos {
		if in.Instance == instance {
			out = append(out, "dump "+instance+" "+in.Kind)
		}
	}
	return strings.Join(out, ", ")
}

// isFileArg reports whether a dump argument is a file path rather than a
// segment name (see openSegment). Lstat: a symlink is a name the user gave
// too, and shm.OpenPath refuses it with its own error.
func isFileArg(a string) bool {
	if strings.Contains(a, "/") {
		return true
	}
	st, err := os.Lstat(a)
	return err == nil && !st.IsDir()
}

func newDumpCmd() *cobra.Command {
	var asJSON, chunks, schema bool
	c := &cobra.Command{
		Use:   "dump SEGMENT|PATH|RECORDING | dump INSTANCE KIND",
		Short: "Decode a segment read-only (common header, world slots, leases, event log, module ring and statistics) or a recording",
		Long: "Decode any FDP segment or recording read-only. An argument that names an existing file (relative or absolute) or contains\n" +
			"'/' is read as that file (PATH); otherwise it is a SEGMENT name in the segment directory (fdp.demo.world or\n" +
			"demo.world). Or give INSTANCE and KIND (demo world, demo mod.0). It never writes or blocks.\n" +
			"A PATH that is a recording (engine run --record) shows its header, frame count, keyframe index, compression\n" +
			"ratio and per-frame sizes, after reading and checking every frame.\n" +
			"Exits non-zero on a corrupt, truncated or foreign segment, and after printing when live data is inconsistent.",
		Args: cobra.RangeArgs(1, 2),

		ValidArgsFunction: completeSegment(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && isFileArg(args[0]) {
				switch fileKind(args[0]) {
				case kindRecording:
					return dumpRecording(cmd, args[0], asJSON)
				case kindNeither:
					return neitherError(args[0])
				}
			}
			seg, err := openSegment(args)
			if err != nil {
				return err
			}
			defer seg.Close()
			r, err := inspect.InspectWith(seg.Data, inspect.Options{Chunks: chunks})
			if err != nil {
				return fmt.Errorf("%s: %w", seg.Path, err)
			}
			r.Source = seg.Path
			w := cmd.OutOrStdout()
			switch {
			case schema && asJSON:
				return fmt.Errorf("--schema and --json: choose one (the JSON report has the schema: components[].fields, singletons[].fields)")
			case schema:
				err = inspect.SchemaText(w, r)
			case asJSON:
				err = writeJSON(w, r, true)
			default:
				err = inspect.Text(w, r)
			}
			if err != nil {
				return err
			}
			if n := len(r.Problems); n > 0 {
				return fmt.Errorf("%s: %d problem(s) in live data, first: %s", seg.Path, n, r.Problems[0])
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().BoolVar(&chunks, "chunks", false, "include the header of every chunk in use of every world slot")
	c.Flags().BoolVar(&schema, "schema", false, "print only the schema of a world segment: every component and singleton with its fields (name, type, offset, count)")
	return c
}

// What a dump PATH is, by its first bytes (its magic).
type dumpKind int

const (
	kindSegment   dumpKind = iota // layout.Magic, or not readable: shm.OpenPath says why
	kindRecording                 // record.Magic
	kindNeither                   // empty, or another magic
)

// fileKind tells a recording from a segment by the magic, so that an empty
// or short foreign file is named as neither (not "a segment below its
// header"); a file of a segment's size goes to the segment's checks.
func fileKind(path string) dumpKind {
	f, err := os.Open(path)
	if err != nil {
		return kindSegment
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return kindSegment
	}
	var b [8]byte
	n, _ := io.ReadFull(f, b[:])
	switch {
	case n >= len(record.Magic) && string(b[:len(record.Magic)]) == record.Magic:
		return kindRecording
	case n == len(layout.Magic) && b == layout.Magic, st.Size() >= layout.HeaderSize:
		return kindSegment // a segment's own checks say what is wrong (bad magic, checksum)
	}
	return kindNeither // empty, or too short for a segment and not one
}

// neitherError is the one line for a file that is neither.
func neitherError(path string) error {
	size := int64(-1)
	if st, err := os.Stat(path); err == nil {
		size = st.Size()
	}
	if size == 0 {
		return fmt.Errorf("%s: an empty file (0 bytes): neither an FDP segment nor a recording", path)
	}
	return fmt.Errorf("%s: bad magic: neither an FDP segment (magic %q) nor a recording (magic %q), %d bytes", path, string(layout.Magic[:]), record.Magic, size)
}

// dumpRecording is `engine dump FILE` of a recording: the report of
// record.Inspect (every frame read and applied); it exits non-zero after
// printing when the recording is damaged.
func dumpRecording(cmd *cobra.Command, path string, asJSON bool) error {
	r, err := record.Open(path)
	if err != nil {
		return err
	}
	defer r.Close()
	rep := record.Inspect(r)
	rep.Source = path
	w := cmd.OutOrStdout()
	if asJSON {
		err = writeJSON(w, rep, true)
	} else {
		err = rep.Text(w)
	}
	if err != nil {
		return err
	}
	if err := rep.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
