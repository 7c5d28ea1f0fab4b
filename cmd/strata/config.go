package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// parsed is a member's command line, environment and config file, read
// as etcd v3.7.3's etcdmain reads them.
type parsed struct {
	settings settings
	// help and version: print and exit.
	help, version bool
	// configFile is the --config-file (or ETCD_CONFIG_FILE) read, if any.
	configFile string
	// warnings are etcd's warnings about the configuration, logged once
	// the logger is made from it.
	warnings []warning
}

// warning is one log line: its level, message and key-value pairs.
type warning struct {
	level slog.Level
	msg   string
	args  []any
}

// errUsage marks errors of the command line itself (an unknown flag, a
// bad value): etcd prints its usage line for them and exits 2.
var errUsage = errors.New("usage")

type usageError struct{ err error }

func (e usageError) Error() string   { return e.err.Error() }
func (e usageError) Unwrap() []error { return []error{errUsage, e.err} }

// etcd's error when --listen-client-urls is given without
// --advertise-client-urls (embed.ErrUnsetAdvertiseClientURLsFlag).
var errUnsetAdvertiseClientURLs = errors.New("--advertise-client-urls is required when --listen-client-urls is set explicitly")

// flagSet is one parse of the member flags: the pflag set and the values.
type flagSet struct {
	fs   *pflag.FlagSet
	vals map[string]*value
	defs map[string]*flagDef
}

// allFlags is the flag table with etcdmain's own flags.
func allFlags() []flagDef {
	defs := slices.Clone(flagTable)
	defs = append(defs, configFileFlag, versionFlag)
	for _, n := range ignoredFlags {
		defs = append(defs, flagDef{name: n, kind: kIgnored, group: gOther, yaml: "-"})
	}
	return defs
}

func newFlagSet() *flagSet {
	f := &flagSet{
		fs:   pflag.NewFlagSet("strata", pflag.ContinueOnError),
		vals: map[string]*value{},
		defs: map[string]*flagDef{},
	}
	f.fs.SetOutput(io.Discard)
	f.fs.Usage = func() {}
	// As Go's flag package (etcd's): flags stop at the first argument
	// that is not one.
	f.fs.SetInterspersed(false)
	for _, d := range allFlags() {
		d := d
		v := newValue(d.kind, d.def, d.choices...)
		pf := f.fs.VarPF(v, d.name, "", d.usage)
		if d.kind == kBool || d.kind == kIgnored {
			pf.NoOptDefVal = "true"
		}
		f.vals[d.name] = v
		f.defs[d.name] = &d
	}
	return f
}

func (f *flagSet) changed(name string) bool { return f.fs.Changed(name) }

// normalizeArgs turns etcd's single-dash long flags (-name x, which Go's
// flag package takes) into pflag's --name x. Values are left alone.
func (f *flagSet) normalizeArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			// The rest is not flags: pflag and etcd stop here.
			return append(out, args[i:]...)
		}
		if !strings.HasPrefix(a, "--") && len(a) > 2 {
			name, _, _ := strings.Cut(a[1:], "=")
			if _, ok := f.defs[name]; ok {
				a = "-" + a
			}
		}
		out = append(out, a)
		// A value flag given without "=" takes the next argument as its
		// value, whatever it looks like.
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if d, ok := f.defs[name]; ok && strings.HasPrefix(a, "--") && !hasValue && d.kind != kBool && d.kind != kIgnored && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return out
}

// parseMember reads a member's configuration as etcd does: the command
// line; then, if --config-file (or ETCD_CONFIG_FILE) names a file, that
// file alone (other flags and the environment are ignored); else the
// ETCD_* environment for the flags not on the command line (a variable
// shadowed by a flag given on the command line is an error, as etcd's
// "conflicting environment variable"), and STRATA_BACKEND for --backend.
// env is the environment, as os.Environ.
func parseMember(args, env []string) (*parsed, error) {
	p := &parsed{}
	f := newFlagSet()
	if err := f.fs.Parse(f.normalizeArgs(args)); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			p.help = true
			return p, nil
		}
		return nil, usageError{err}
	}
	if f.fs.NArg() > 0 {
		return nil, fmt.Errorf("%q is not a valid flag", f.fs.Arg(0))
	}
	if f.vals["version"].b {
		p.version = true
		return p, nil
	}
	getenv := envLookup(env)
	p.configFile = f.vals["config-file"].text
	if p.configFile == "" {
		p.configFile = getenv("ETCD_CONFIG_FILE")
	}
	if p.configFile != "" {
		f = newFlagSet()
		if err := p.loadConfigFile(f, p.configFile); err != nil {
			return nil, err
		}
		p.info("loaded server configuration, other configuration command line flags and environment variables will be ignored if provided",
			"path", p.configFile)
	} else {
		if err := p.applyEnv(f, env); err != nil {
			return nil, err
		}
		// etcd: an explicit --listen-client-urls needs an explicit
		// --advertise-client-urls.
		if f.changed("listen-client-urls") && !f.changed("advertise-client-urls") {
			return nil, errUnsetAdvertiseClientURLs
		}
	}
	for _, n := range ignoredFlags {
		if f.changed(n) {
			p.warn("flag is no longer supported - ignoring", "flag-name", n)
		}
	}
	for n, msg := range deprecatedFlags {
		if f.changed(n) {
			p.warn(msg)
		}
	}
	if err := p.apply(f); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *parsed) warn(msg string, args ...any) {
	p.warnings = append(p.warnings, warning{slog.LevelWarn, msg, args})
}

func (p *parsed) info(msg string, args ...any) {
	p.warnings = append(p.warnings, warning{slog.LevelInfo, msg, args})
}

func envLookup(env []string) func(string) string {
	return func(k string) string {
		for i := len(env) - 1; i >= 0; i-- {
			if name, val, ok := strings.Cut(env[i], "="); ok && name == k {
				return val
			}
		}
		return ""
	}
}

// envKey is etcd's flags.FlagToEnv: --some-flag is ETCD_SOME_FLAG.
func envKey(prefix, name string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// envPrefix is the environment prefix of a flag: STRATA for Strata's own,
// ETCD for etcd's.
func envPrefix(d *flagDef) string {
	if d.strata {
		return "STRATA"
	}
	return "ETCD"
}

// applyEnv sets the flags not given on the command line from the
// environment, as etcd's flags.SetFlagsFromEnv: an empty variable is not
// used; a variable of a flag given on the command line stops start-up
// (etcd: "conflicting environment variable is shadowed by corresponding
// command-line flag"); an unused ETCD_ variable is warned about.
// ETCD_VERSION is never used (etcd warns "cannot set special environment
// variable").
func (p *parsed) applyEnv(f *flagSet, env []string) error {
	getenv := envLookup(env)
	if v := getenv("ETCD_VERSION"); v != "" {
		p.warn("cannot set special environment variable", "key", "ETCD_VERSION", "value", v)
	}
	alreadySet := map[string]bool{}
	used := map[string]bool{"ETCD_VERSION": true}
	var err error
	f.fs.VisitAll(func(pf *pflag.Flag) {
		d := f.defs[pf.Name]
		key := envKey(envPrefix(d), pf.Name)
		if pf.Changed {
			alreadySet[key] = true
			return
		}
		if used[key] {
			return
		}
		val := getenv(key)
		if val == "" {
			return
		}
		used[key] = true
		if serr := f.fs.Set(pf.Name, val); serr != nil && err == nil {
			err = fmt.Errorf("invalid value %q for %s: %w", val, key, serr)
		}
		p.info("recognized and used environment variable", "variable-name", key, "variable-value", val)
	})
	if err != nil {
		return err
	}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case used[k]:
		case alreadySet[k]:
			return fmt.Errorf("conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag): %s", k)
		case strings.HasPrefix(k, "ETCD_"):
			p.warn("unrecognized environment variable", "environment-variable", kv)
		}
	}
	return nil
}

// Nested maps of etcd's config file whose keys are flags (see flagDef.yaml).
var yamlParents = []string{"client-transport-security", "peer-transport-security", "socket-options", "discovery-config", "discovery-config.client"}

// loadConfigFile sets f's flags from the YAML config file at path, in
// etcd's format (embed.Config's JSON names; URL lists as comma-separated
// strings; durations as integer nanoseconds; TLS settings under
// client-transport-security and peer-transport-security). As etcd's
// (sigs.k8s.io/yaml, not strict), keys it does not know are ignored;
// Strata warns about them.
func (p *parsed) loadConfigFile(f *flagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	keys := map[string]string{} // YAML key path -> flag name
	for name, d := range f.defs {
		switch d.yaml {
		case "-":
		case "":
			keys[name] = name
		default:
			keys[d.yaml] = name
		}
	}
	return p.loadYAMLMap(f, path, keys, "", m)
}

func (p *parsed) loadYAMLMap(f *flagSet, path string, keys map[string]string, prefix string, m map[string]any) error {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	for _, k := range ks {
		key, val := prefix+k, m[k]
		if val == nil {
			continue // as etcd: a key without a value keeps the default
		}
		if name, ok := keys[key]; ok {
			text, err := yamlText(f.defs[name].kind, val)
			if err == nil {
				err = f.fs.Set(name, text)
			}
			if err != nil {
				return fmt.Errorf("%s: %s: %w", path, key, err)
			}
			continue
		}
		if sub, ok := val.(map[string]any); ok && slices.Contains(yamlParents, key) {
			if err := p.loadYAMLMap(f, path, keys, key+".", sub); err != nil {
				return err
			}
			continue
		}
		if strings.HasPrefix(key, "client-transport-security.") || strings.HasPrefix(key, "peer-transport-security.") {
			// A TLS setting with no flag (client allowed-cn, ...): never
			// ignored when it asks for something.
			if !zeroYAML(val) {
				return fmt.Errorf("%s: %s %s", path, key, noTLSYet)
			}
			continue
		}
		p.warn("unknown configuration key ignored", "path", path, "key", key)
	}
	return nil
}

// yamlText turns a config file value into the flag syntax of k.
func yamlText(k kind, val any) (string, error) {
	switch x := val.(type) {
	case bool:
		return strconv.FormatBool(x), nil
	case string:
		return x, nil
	case json.Number:
		if k == kDuration {
			n, err := x.Int64()
			if err != nil {
				return "", fmt.Errorf("a duration is an integer number of nanoseconds: %w", err)
			}
			return time.Duration(n).String(), nil
		}
		return x.String(), nil
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			s, err := yamlText(kString, e)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("unexpected value %v", val)
}

func zeroYAML(val any) bool {
	switch x := val.(type) {
	case nil:
		return true
	case bool:
		return !x
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	case json.Number:
		return x.String() == "0"
	}
	return false
}

// apply copies the flags Strata honours into the settings and refuses
// the others when they are not at their default. Flags whose etcd
// default is derived from others (--initial-cluster from --name, ...)
// are copied only when given, so that server.Config derives them.
func (p *parsed) apply(f *flagSet) error {
	s := &p.settings
	for i := range flagTable {
		d := &flagTable[i]
		v := f.vals[d.name]
		if d.apply == nil {
			if !v.atDefault(newValue(d.kind, d.def, d.choices...)) {
				return fmt.Errorf("--%s %s", d.name, d.refuse)
			}
			continue
		}
		if derivedDefault[d.name] && !f.changed(d.name) {
			continue
		}
		if err := d.apply(s, v); err != nil {
			return err
		}
	}
	// etcd's checks of the raft timing, with its texts.
	hb, el := f.vals["heartbeat-interval"].u, f.vals["election-timeout"].u
	switch {
	case hb == 0:
		return fmt.Errorf("--heartbeat-interval must be >0 (set to %dms)", hb)
	case el == 0:
		return fmt.Errorf("--election-timeout must be >0 (set to %dms)", el)
	case el > maxElectionMs:
		return fmt.Errorf("--election-timeout[%vms] is too long, and should be set less than %vms", el, maxElectionMs)
	}
	if s.server.EngineOptions.Mlock && s.backend != "bbolt" {
		return fmt.Errorf("--memory-mlock is not supported with --backend=%s: only bbolt maps its data file into memory", s.backend)
	}
	return nil
}

// maxElectionMs is etcd's longest --election-timeout.
const maxElectionMs = 50000

// derivedDefault are the flags whose default Strata's server.Config
// derives from other settings (as etcd derives them): they are copied
// only when given.
var derivedDefault = map[string]bool{
	"data-dir":                    true,
	"initial-cluster":             true,
	"initial-advertise-peer-urls": true,
	"advertise-client-urls":       true,
}
