package supervisor

// The structural check of a YAML configuration: every key is one the
// Config knows and every value has the type its field wants, said with the
// key's path in the document (modules[2].every) and in the user's words (a
// whole number, a duration), never a Go type name. It runs on the parsed
// node tree before the decode, so that the decoder's own messages ("field
// evrey not found in type supervisor.ModuleConfig") are never what the user
// reads.

import (
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

var durationType = reflect.TypeFor[Duration]()

// checkNode checks n against a value of type t at path p (empty for the
// document's root) and returns the first problem, one line.
func checkNode(n *yaml.Node, t reflect.Type, p string) error {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return checkNode(n.Content[0], t, p)
	}
	if n.Kind == yaml.AliasNode {
		return checkNode(n.Alias, t, p)
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil // an empty value leaves the default
	}
	at := func(format string, a ...any) error {
		where := p
		if where == "" {
			where = "the document"
		}
		return fmt.Errorf("%s (line %d): %s", where, n.Line, fmt.Sprintf(format, a...))
	}
	if t == durationType {
		var d Duration
		if n.Kind != yaml.ScalarNode || d.UnmarshalYAML(n) != nil {
			return at("want a duration such as 50ms or 2s, got %s", shown(n))
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return at("want a mapping of keys (%s), got %s", strings.Join(yamlKeys(t), ", "), shown(n))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fieldByKey(t, k.Value)
			if !ok {
				keys := yamlKeys(t)
				msg := fmt.Sprintf("%s (line %d): unknown key %q", join(p, k.Value), k.Line, k.Value)
				if s := suggest(k.Value, keys); s != "" {
					msg += fmt.Sprintf("; did you mean %q?", s)
				} else {
					msg += fmt.Sprintf(" (known: %s)", strings.Join(keys, ", "))
				}
				return fmt.Errorf("%s", msg)
			}
			if err := checkNode(v, f.Type, join(p, k.Value)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return at("want %s, got %s", kindWords(t), shown(n))
		}
		for i, e := range n.Content {
			if err := checkNode(e, t.Elem(), fmt.Sprintf("%s[%d]", p, i)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return at("want %s, got %s", kindWords(t), shown(n))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkNode(n.Content[i+1], t.Elem(), join(p, n.Content[i].Value)); err != nil {
				return err
			}
		}
		return nil
	}
	// A scalar field: decode the node into a value of the field's type, as
	// the real decode will.
	if n.Kind != yaml.ScalarNode {
		return at("want %s, got %s", kindWords(t), shown(n))
	}
	v := reflect.New(t)
	if err := n.Decode(v.Interface()); err != nil || !tagFits(t, n) {
		return at("want %s, got %s", kindWords(t), shown(n))
	}
	return nil
}

// tagFits reports whether scalar n, decoded without error into a value of
// type t, means what the field means: the decoder truncates 2.5 into an
// int 2 and takes true as the string "true", neither of which is what was
// written.
func tagFits(t reflect.Type, n *yaml.Node) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return n.Tag == "!!int"
	case reflect.String:
		return n.Tag == "!!str" || plainString(n)
	}
	return true
}

// plainString reports whether a scalar that YAML does not tag as a string
// is still one a string field takes without surprise: a number is (a name
// "7" or a group 2), a boolean is not (yes, no, true would become "true").
func plainString(n *yaml.Node) bool { return n.Tag == "!!int" || n.Tag == "!!float" }

// kindWords names what a field of type t wants, in the configuration's
// words.
func kindWords(t reflect.Type) string {
	if t == durationType {
		return "a duration such as 50ms or 2s"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct {
			return "a list of mappings"
		}
		return "a list of " + strings.TrimPrefix(kindWords(t.Elem()), "a ") + "s"
	case reflect.Map:
		return "a mapping of names to " + strings.TrimPrefix(kindWords(t.Elem()), "a ") + "s"
	case reflect.Struct:
		return "a mapping"
	}
	return t.Kind().String()
}

// shown renders a node for an error message: a scalar as its quoted value,
// anything else as what it is.
func shown(n *yaml.Node) string {
	switch n.Kind {
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "something else"
}

func join(p, k string) string {
	if p == "" {
		return k
	}
	return p + "." + k
}

// fieldByKey returns the field of struct type t whose yaml tag is key.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tagName(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

// yamlKeys lists the keys of struct type t in field order.
func yamlKeys(t reflect.Type) []string {
	out := make([]string, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		if name := tagName(t.Field(i)); name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// suggest returns the known key closest to key by edit distance, if it is
// close enough to be a typo (at most a third of the key's length, at least
// 1, at most 3 edits), else "".
func suggest(key string, known []string) string {
	best, bestD := "", 0
	for _, k := range known {
		d := editDistance(strings.ToLower(key), k)
		if best == "" || d < bestD {
			best, bestD = k, d
		}
	}
	limit := min(max(len(key)/3, 1), 3)
	if best == "" || bestD > limit {
		return ""
	}
	return best
}

// editDistance is the Damerau-Levenshtein distance (optimal string
// alignment: insertions, deletions, substitutions and transpositions of
// adjacent bytes each cost 1) between a and b.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
