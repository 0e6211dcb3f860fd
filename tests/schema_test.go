package tests

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/inspect"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
)

// python3 returns the interpreter the doc programs run with.
func python3(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	return p
}

// TestFieldTableFromDocs: a reader written from docs/LAYOUT.md "Field
// table" alone (tests/testdata/fieldtable.py, no FDP code) reads the field
// table of a live `engine run`'s world segment, recomputes every
// fingerprint from the documented canonical description and finds the
// stored ones; the fields it reads are those the Go registry derives from
// the demo's types by reflection; `engine dump` shows the same fields (as
// JSON and as the text table).
func TestFieldTableFromDocs(t *testing.T) {
	py := python3(t)
	bin := shippedBinaries(t)
	inst := fmt.Sprintf("ft%d%05x", os.Getpid()%100000, rand.Intn(1<<20))
	t.Cleanup(func() { _, _ = shm.RemoveInstance(inst) })
	startMemEngine(t, bin, inst, nil, "--entities", "500")

	out, err := exec.Command(py, "testdata/fieldtable.py", filepath.Join(shm.Dir, "fdp."+inst+".world")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	var read []struct {
		Owner, Name, Stored, Computed string
		Fields                        []inspect.FieldReport
	}
	require.NoError(t, json.Unmarshal(out, &read), "%s", out)

	s, err := demo.NewSchema()
	require.NoError(t, err)
	types := map[string]reflect.Type{"Position": reflect.TypeFor[demo.Position](), "Velocity": reflect.TypeFor[demo.Velocity](),
		"Health": reflect.TypeFor[demo.Health](), "Team": reflect.TypeFor[demo.Team](), "Time": reflect.TypeFor[world.Time]()}
	want := map[string][]layout.FieldDesc{"Name": layout.VarSizeFields(true)}
	for n, ty := range types {
		want[n], err = world.Fields(ty)
		require.NoError(t, err)
	}
	require.Len(t, read, s.Reg.Len()+len(s.Reg.Singletons()))
	for _, r := range read {
		require.Equal(t, r.Stored, r.Computed, "%s %s: the stored fingerprint is the documented one of its fields", r.Owner, r.Name)
		require.Equal(t, reports(want[r.Name]), r.Fields, "%s %s", r.Owner, r.Name)
	}

	js, err := exec.Command(filepath.Join(bin, "engine"), "dump", "--json", inst, "world").Output()
	require.NoError(t, err)
	var rep inspect.Report
	require.NoError(t, json.Unmarshal(js, &rep))
	for _, c := range rep.World.Components {
		require.Equal(t, reports(want[c.Name]), c.Fields, "engine dump --json: component %s", c.Name)
	}
	require.Equal(t, reports(want["Time"]), rep.World.Singletons[0].Fields)
	txt, err := exec.Command(filepath.Join(bin, "engine"), "dump", inst, "world").Output()
	require.NoError(t, err)
	require.Regexp(t, `(?m)^component\s+0\s+Position\s+X\s+f32\s+0\s+1\s*$`, string(txt))
	require.Regexp(t, `(?m)^singleton\s+0\s+Time\s+Dt\s+i64\s+16\s+1\s*$`, string(txt))

	// engine ls --json names the control socket, and a client reaches the
	// engine through it (a refusal for a wrong schema proves who answers).
	ls, err := exec.Command(filepath.Join(bin, "engine"), "ls", "--json").Output()
	require.NoError(t, err)
	var entries []struct{ Instance, Socket string }
	require.NoError(t, json.Unmarshal(ls, &entries))
	sock := ""
	for _, e := range entries {
		if e.Instance == inst {
			require.NotEmpty(t, e.Socket, "ls --json: the socket of %s", inst)
			sock = e.Socket
		}
	}
	require.Equal(t, filepath.Join(shm.Dir, "fdp."+inst+".sock"), sock)
	hello, _ := json.Marshal(map[string]any{"proto_version": 3, "name": "probe", "tier": "fast", "every": 1, "mask": 0,
		"schema_hash": 1, "pid": os.Getpid()})
	probe, err := rawHello(sock, frame(hello))
	require.NoError(t, err)
	defer probe.close()
	require.Equal(t, "schema_mismatch", probe.code())
	require.Equal(t, fmt.Sprint(s.Reg.SchemaHash()), fmt.Sprint(probe.msg["engine_schema_hash"]))
}

// TestRejectReasonsDocumented: the reject reasons docs/LAYOUT.md's
// statistics block lists, with their codes, are world.RejectReason's, and
// docs/PROTOCOL.md names the first, the last and their count.
func TestRejectReasonsDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/LAYOUT.md")
	require.NoError(t, err)
	m := regexp.MustCompile(`commands rejected by reason, indexed by reason code: (.*?) \(higher codes`).FindStringSubmatch(string(b))
	require.NotNil(t, m)
	var want []string
	for r := world.RejectReason(0); r < world.NumRejectReasons; r++ {
		want = append(want, fmt.Sprintf("%d %s", r, r))
	}
	require.Equal(t, strings.Join(want, ", "), m[1])
	p, err := os.ReadFile("../docs/PROTOCOL.md")
	require.NoError(t, err)
	require.Contains(t, string(p), fmt.Sprintf("`%s` … `%s`: reason codes 0..%d", world.RejectReason(0), world.NumRejectReasons-1, world.NumRejectReasons-1))
	require.Contains(t, string(p), fmt.Sprintf("under reason `corrupt_ring` (%d)", world.RejectCorruptRing))
}

// TestProtocolDemoSchema: docs/PROTOCOL.md "Demo component types" is what
// `engine dump --schema` prints for a live demo engine. (It was part of
// TestFieldTableFromDocs, which skips without python3: a machine without it
// did not compare the block, and main's 40-byte Time went unseen there.)
func TestProtocolDemoSchema(t *testing.T) {
	bin := shippedBinaries(t)
	inst := fmt.Sprintf("ps%d%05x", os.Getpid()%100000, rand.Intn(1<<20))
	t.Cleanup(func() { _, _ = shm.RemoveInstance(inst) })
	startMemEngine(t, bin, inst, nil, "--entities", "500")
	schema, err := exec.Command(filepath.Join(bin, "engine"), "dump", "--schema", inst, "world").Output()
	require.NoError(t, err)
	doc, err := os.ReadFile("../docs/PROTOCOL.md")
	require.NoError(t, err)
	i := strings.Index(string(doc), "```text\nschema hash ")
	require.GreaterOrEqual(t, i, 0, "the demo schema in docs/PROTOCOL.md")
	block := string(doc)[i+len("```text\n"):]
	block = block[:strings.Index(block, "```")]
	require.Equal(t, block, string(schema), "docs/PROTOCOL.md's demo schema vs engine dump --schema")

	s, err := demo.NewSchema()
	require.NoError(t, err)
	require.Contains(t, block, fmt.Sprintf("schema hash 0x%016x\n", s.Reg.SchemaHash()), "the Go registry's hash")
}

func reports(fields []layout.FieldDesc) []inspect.FieldReport {
	out := make([]inspect.FieldReport, len(fields))
	for i, f := range fields {
		out[i] = inspect.FieldReport{Name: f.Name, Type: f.Type.String(), Offset: f.Offset, Count: f.Count}
	}
	return out
}

// TestLayoutFingerprintSnippet: the Python program of docs/LAYOUT.md
// "Field table" computes the fingerprint the Go registry gives the demo's
// Position.
func TestLayoutFingerprintSnippet(t *testing.T) {
	py := python3(t)
	b, err := os.ReadFile("../docs/LAYOUT.md")
	require.NoError(t, err)
	doc := string(b)
	i := strings.Index(doc, "```python\nimport struct\ndef fnv1a64")
	require.GreaterOrEqual(t, i, 0, "the fingerprint program in docs/LAYOUT.md")
	src := doc[i+len("```python\n"):]
	src = src[:strings.Index(src, "```")]
	lines := strings.Split(strings.TrimSpace(src), "\n")
	last := lines[len(lines)-1]
	lines[len(lines)-1] = "print(" + last + ")"
	out, err := exec.Command(py, "-c", strings.Join(lines, "\n")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, fmt.Sprint(world.Fingerprint(reflect.TypeFor[demo.Position]())), strings.TrimSpace(string(out)))
}
