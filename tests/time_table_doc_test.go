package tests

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// TestLayoutTimeTable: a client that declares the time singleton from
// docs/LAYOUT.md's table alone (the named fields, their types and offsets;
// 40 bytes, align 8) gets the fields and the fingerprint of the Go
// registry's Time: no byte of it is unnamed or named otherwise.
func TestLayoutTimeTable(t *testing.T) {
	b, err := os.ReadFile("../docs/LAYOUT.md")
	require.NoError(t, err)
	s := string(b)
	i := strings.Index(s, "engine's time singleton (Go `world.Time`")
	require.GreaterOrEqual(t, i, 0)
	s = s[i : strings.Index(s[i:], "In Python:")+i]
	var fields []layout.FieldDesc
	end := uint32(0)
	for _, m := range regexp.MustCompile(`(?m)^\| (\d+) \| (\d+) \| ([^|]*) \|$`).FindAllStringSubmatch(s, -1) {
		off, _ := strconv.Atoi(m[1])
		size, _ := strconv.Atoi(m[2])
		require.Equal(t, end, uint32(off), "row %q: the rows cover every byte in order", m[0])
		end += uint32(size)
		f := regexp.MustCompile("^`(\\w+)`: (\\w+),").FindStringSubmatch(m[3])
		require.NotNil(t, f, "row %q names its field and type", m[0])
		ty, ok := layout.FieldTypeByName(f[2])
		require.True(t, ok, f[2])
		require.Equal(t, uint32(size), ty.Size(), "row %q", m[0])
		fields = append(fields, layout.FieldDesc{Name: f[1], Type: ty, Offset: uint32(off), Count: 1})
	}
	sch, err := demo.NewSchema()
	require.NoError(t, err)
	var time layout.SingletonDesc
	for _, d := range sch.Reg.Singletons() {
		if d.Name == world.TimeName {
			time = d
		}
	}
	require.Equal(t, time.Size, end, "the table's size")
	require.Equal(t, time.Fields, fields)
	require.Equal(t, time.Fingerprint, layout.FieldsFingerprint(end, 8, fields))
}
