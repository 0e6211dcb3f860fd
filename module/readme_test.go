package module_test

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeObserverExample: the Go block of README.md's "Observers and
// reactive modules" section is the text of example_test.go's Medic (which
// go test compiles), line for line and in order, indented with 4 spaces
// for tabs.
func TestReadmeObserverExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i := strings.Index(s, "\n### Observers and reactive modules\n")
	if i < 0 {
		t.Fatal(`README.md has no section "Observers and reactive modules"`)
	}
	s = s[i:]
	open := strings.Index(s, "\n```go\n")
	if open < 0 {
		t.Fatal("the section has no Go code block")
	}
	s = s[open+len("\n```go\n"):]
	end := strings.Index(s, "\n```\n")
	if end < 0 {
		t.Fatal("unterminated code block")
	}
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	for n := range lines {
		lines[n] = strings.ReplaceAll(lines[n], "\t", "    ")
	}
	at := 0
	for _, want := range strings.Split(s[:end], "\n") {
		if want == "" {
			continue
		}
		for at < len(lines) && lines[at] != want {
			at++
		}
		if at == len(lines) {
			t.Fatalf("README line not in example_test.go (in order): %q", want)
		}
		at++
	}
}
