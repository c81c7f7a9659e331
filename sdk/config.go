package sdk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/xdsbridge/xdsbridge/internal/suggest"
)

// FieldError is a problem with one field of a plugin's configuration.
type FieldError struct {
	// Path is the dotted path inside the config block, e.g. "tls.ca_file" or
	// "names[2].name"; empty for the block as a whole.
	Path string
	// Message says what is wrong, in lower case, without the path.
	Message string
	// File and Line are set when the problem lies in another file the plugin
	// read (the static plugin's cluster file, say). The host reports such an
	// error at that place instead of at the field.
	File string
	Line int
}

func (e FieldError) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Message)
	case e.File != "":
		return fmt.Sprintf("%s: %s", e.File, e.Message)
	case e.Path != "":
		return e.Path + ": " + e.Message
	default:
		return e.Message
	}
}

// ConfigErrors collects every problem found in a configuration, so a user
// fixes them all in one go.
type ConfigErrors []FieldError

func (es ConfigErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// Add appends a problem at path.
func (es *ConfigErrors) Add(path, format string, args ...any) {
	*es = append(*es, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

// Err returns es as an error, or nil when there are none.
func (es ConfigErrors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// DecodeConfig decodes a YAML config block into v, a pointer to a struct
// with `yaml` tags, on top of whatever v already holds (its defaults). Unknown
// keys are errors. Every problem is returned as a ConfigErrors with the
// field's path.
func DecodeConfig(data []byte, v any) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return ConfigErrors{{Message: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil // empty block: defaults
	}
	doc := root.Content[0]
	if doc.Kind == yaml.ScalarNode && doc.Tag == "!!null" {
		return nil
	}

	// Map every line to the deepest path on it, to place yaml's type errors.
	lines := map[int]string{}
	var errs ConfigErrors
	checkKeys(doc, reflect.TypeOf(v), "", lines, &errs)

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return append(errs, FieldError{Message: err.Error()})
		}
		for _, msg := range te.Errors {
			if strings.Contains(msg, "not found in type") {
				continue // reported by checkKeys with its path
			}
			path, rest := "", msg
			if m := lineRE.FindStringSubmatch(msg); m != nil {
				n, _ := strconv.Atoi(m[1])
				path, rest = lines[n], m[2]
			}
			errs = append(errs, FieldError{Path: path, Message: rest})
		}
	}
	return errs.Err()
}

var lineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// checkKeys walks n beside the Go type t, records each line's path, and
// reports keys that t has no field for.
func checkKeys(n *yaml.Node, t reflect.Type, path string, lines map[int]string, errs *ConfigErrors) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if _, ok := lines[n.Line]; !ok || len(path) > len(lines[n.Line]) {
		lines[n.Line] = path
	}
	if t == nil {
		return
	}
	switch n.Kind {
	case yaml.MappingNode:
		switch t.Kind() {
		case reflect.Struct:
			fields := yamlFields(t)
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, val := n.Content[i], n.Content[i+1]
				p := join(path, k.Value)
				lines[k.Line] = p
				ft, ok := fields[k.Value]
				if !ok {
					*errs = append(*errs, FieldError{Path: p, Message: fmt.Sprintf("unknown key %q%s", k.Value, suggestKey(k.Value, fields))})
					continue
				}
				checkKeys(val, ft, p, lines, errs)
			}
		case reflect.Map:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, val := n.Content[i], n.Content[i+1]
				p := join(path, k.Value)
				lines[k.Line] = p
				checkKeys(val, t.Elem(), p, lines, errs)
			}
		}
	case yaml.SequenceNode:
		if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			for i, c := range n.Content {
				checkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), lines, errs)
			}
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps the YAML keys of struct t to their field types, following
// inline fields as yaml.v3 does.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range yamlFields(ft) {
					out[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		// A field that decodes itself (a yaml.Node, an Unmarshaler) takes
		// any keys below it.
		ft := f.Type
		if ft == reflect.TypeOf(yaml.Node{}) || ft == reflect.TypeOf(&yaml.Node{}) ||
			ft.Implements(unmarshalerType) || reflect.PointerTo(ft).Implements(unmarshalerType) {
			ft = nil
		}
		out[name] = ft
	}
	return out
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func suggestKey(key string, fields map[string]reflect.Type) string {
	return suggest.Hint(key, slices.Sorted(maps.Keys(fields)))
}
