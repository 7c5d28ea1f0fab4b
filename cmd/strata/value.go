package main

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// kind is the type of a flag's value, as etcd declares it (Go's flag
// types and etcd's pkg/flags types).
type kind int

const (
	kString        kind = iota
	kBool               // --x alone means true; a value needs --x=false
	kUint               // flag.Uint: decimal, 0x.. or 0..
	kUint32             // flags.Uint32Value
	kUint64             // flag.Uint64
	kInt                // flag.Int
	kInt64              // flag.Int64
	kDuration           // flag.Duration: "10s"; a config file holds nanoseconds
	kURLs               // flags.UniqueURLs: comma-separated URLs, unique, sorted
	kStrings            // flags.StringsValue: comma-separated, kept as given
	kUniqueStrings      // flags.UniqueStringsValue: comma-separated, unique, sorted
	kSelect             // flags.SelectiveStringValue: one of a fixed set
	kFeatureGates       // featuregate: Name=bool,...
	kIgnored            // flags.IgnoredFlag: accepted, warned about, no value
)

// typeName is what --help says a kind takes.
var typeName = map[kind]string{
	kString: "string", kBool: "bool", kUint: "uint", kUint32: "uint32", kUint64: "uint64",
	kInt: "int", kInt64: "int64", kDuration: "duration", kURLs: "urls", kStrings: "strings",
	kUniqueStrings: "strings", kSelect: "string", kFeatureGates: "mapStringBool", kIgnored: "",
}

// value is one flag's value: a pflag.Value that parses as etcd's flag of
// the same kind does. Set replaces the value (a flag given twice keeps the
// last, as Go's flag package and etcd's list types do).
type value struct {
	kind    kind
	choices []string // kSelect: the valid values; kURLs: values taken as they are ("*" for --cors)
	text    string   // canonical text; what String returns

	b    bool
	u    uint64
	i    int64
	d    time.Duration
	list []string
	// gates: kFeatureGates, in the order given.
	gates []gate
}

type gate struct {
	name string
	on   bool
}

func newValue(k kind, def string, choices ...string) *value {
	v := &value{kind: k, choices: choices}
	if err := v.Set(def); err != nil {
		panic(fmt.Sprintf("default %q of a %s flag: %v", def, typeName[k], err))
	}
	return v
}

func (v *value) Type() string   { return typeName[v.kind] }
func (v *value) String() string { return v.text }

// Set parses s as etcd parses the flag's kind.
func (v *value) Set(s string) error {
	switch v.kind {
	case kString:
	case kIgnored:
		v.text = ""
		return nil
	case kBool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		v.b, s = b, strconv.FormatBool(b)
	case kUint, kUint32, kUint64:
		bits := 64
		if v.kind == kUint32 {
			bits = 32
		}
		u, err := strconv.ParseUint(s, 0, bits)
		if err != nil {
			return err
		}
		v.u, s = u, strconv.FormatUint(u, 10)
	case kInt, kInt64:
		i, err := strconv.ParseInt(s, 0, 64)
		if err != nil {
			return err
		}
		v.i, s = i, strconv.FormatInt(i, 10)
	case kDuration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		v.d, s = d, d.String()
	case kURLs:
		if s == "" {
			v.list = nil
			break
		}
		if slices.Contains(v.choices, s) {
			v.list = []string{s}
			break
		}
		us, err := parseURLList(s)
		if err != nil {
			return err
		}
		v.list, s = us, strings.Join(us, ",")
	case kStrings:
		v.list = nil
		if s != "" {
			v.list = strings.Split(s, ",")
		}
	case kUniqueStrings:
		v.list = nil
		if s != "" {
			v.list = strings.Split(s, ",")
			slices.Sort(v.list)
			v.list = slices.Compact(v.list)
		}
		s = strings.Join(v.list, ",")
	case kSelect:
		if !slices.Contains(v.choices, s) {
			return fmt.Errorf("invalid value %q, valid values are: %q", s, v.choices)
		}
	case kFeatureGates:
		gs, err := parseGates(s)
		if err != nil {
			return err
		}
		v.gates = gs
	}
	v.text = s
	return nil
}

// parseURLList parses a comma-separated list of URLs as etcd's
// types.NewURLs: http and https URLs are host:port without a path, unix
// and unixs are taken as they are; the list comes back sorted and without
// duplicates.
func parseURLList(s string) ([]string, error) {
	var out []string
	for _, in := range strings.Split(s, ",") {
		in = strings.TrimSpace(in)
		u, err := url.Parse(in)
		if err != nil {
			return nil, err
		}
		switch u.Scheme {
		case "http", "https":
			if _, _, err := net.SplitHostPort(u.Host); err != nil {
				return nil, fmt.Errorf(`URL address does not have the form "host:port": %s`, in)
			}
			if u.Path != "" {
				return nil, fmt.Errorf("URL must not contain a path: %s", in)
			}
		case "unix", "unixs":
		default:
			return nil, fmt.Errorf("URL scheme must be http, https, unix, or unixs: %s", in)
		}
		out = append(out, u.String())
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// parseGates parses --feature-gates, "Name=true,Other=false", as etcd's
// feature gate: only etcd's server features, each with a boolean.
func parseGates(s string) ([]gate, error) {
	var gs []gate
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("missing bool value for %s", k)
		}
		k = strings.TrimSpace(k)
		if _, known := featureDefaults[k]; !known {
			return nil, fmt.Errorf("unrecognized feature gate: %s", k)
		}
		b, err := strconv.ParseBool(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("invalid value of %s=%s, err: %v", k, val, err)
		}
		gs = append(gs, gate{k, b})
	}
	return gs, nil
}

// atDefault reports whether v holds the same value as def, a value of the
// same flag holding its default.
func (v *value) atDefault(def *value) bool {
	switch v.kind {
	case kIgnored:
		return true
	case kFeatureGates:
		for _, g := range v.gates {
			if featureDefaults[g.name] != g.on {
				return false
			}
		}
		return true
	}
	return v.text == def.text
}
