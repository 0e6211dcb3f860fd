package tests

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/host"
	"github.com/stretchr/testify/require"
)

// buildDocProgram builds src, a package main copied from the docs, as the
// main.go of pkg (a directory of this repository that holds a placeholder
// main.go, e.g. tests/doc_example) through a build overlay, so that nothing
// is written into the tree and the program builds against this checkout.
// It returns the binary, or an error with the go command's output and the
// program.
func buildDocProgram(t *testing.T, pkg, src string) (string, error) {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	dir := t.TempDir()
	file := filepath.Join(dir, "main.go")
	require.NoError(t, os.WriteFile(file, []byte(src), 0o600))
	overlay, err := json.Marshal(map[string]map[string]string{
		"Replace": {filepath.Join(root, pkg, "main.go"): file},
	})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "overlay.json"), overlay, 0o600))
	bin := filepath.Join(dir, filepath.Base(pkg))
	build := exec.Command("go", "build", "-overlay", filepath.Join(dir, "overlay.json"), "-o", bin, "./"+pkg)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v:\n%s\n--- the program:\n%s", err, out, src)
	}
	return bin, nil
}

// docDemoEngine starts, in this process, an engine of a demo world small
// enough for a test (entities, with churn per second; chunks of 256) for a
// docs program to attach to, and returns it with its simulation and its
// instance. The test steps it.
func docDemoEngine(t *testing.T, prefix string, entities, churn int) (*host.Engine, *demo.Sim, string) {
	t.Helper()
	s, err := demo.NewSchema()
	require.NoError(t, err)
	sim, err := demo.NewSim(s, demo.Config{Entities: entities, ChurnPerSec: churn, ChunkCapacity: 256, Seed: 1})
	require.NoError(t, err)
	inst := uniqueInstance(t, prefix)
	eng, err := host.New(host.Config{Instance: inst,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}, sim.W, sim)
	require.NoError(t, err)
	t.Cleanup(func() { eng.Close() })
	return eng, sim, inst
}
