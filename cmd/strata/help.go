package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/strata-kv/strata/server"
)

// usageLine is printed, as etcd's, after an error in the command line.
const usageLine = `Usage:

  strata [flags]
    Start a Strata member. It takes etcd's flags, config file and ETCD_*
    environment variables.

  strata --version
    Show the version of strata (etcd's version lines, and Strata's).

  strata -h | --help
    Show the help information about strata.

  strata --config-file FILE
    Path to the server configuration file, in etcd's YAML format. Note that if a configuration file is provided, other command line flags and environment variables will be ignored.
    Duration-typed fields (for example --watch-progress-notify-interval) must be specified as integer nanoseconds
    in the JSON/YAML file (e.g. 600000000000 for 10m); human-readable strings
    such as "10m" are only accepted on the command line.

  strata snapshot restore FILE --data-dir DIR [--name NAME] [--backend ENGINE] [--skip-hash-check]
    [--initial-cluster NAME=URL,... --initial-cluster-token TOKEN --initial-advertise-peer-urls URLS]
  strata snapshot export OUT.db (--data-dir DIR | --snapshot FILE --backend ENGINE)
  strata defrag --data-dir DIR [--backend ENGINE]
  strata migrate --data-dir DIR --to ENGINE [--from ENGINE]
    Work on a stopped member's data directory.
`

// writeHelp writes --help: etcd's groups of flags with their defaults and
// meanings; Strata's own flags are marked [Strata], and the flags Strata
// does not honour say so.
func writeHelp(w io.Writer) {
	fmt.Fprint(w, usageLine)
	for _, g := range groups {
		first := true
		for _, d := range flagTable {
			if d.group != g {
				continue
			}
			if first {
				fmt.Fprintf(w, "\n%s:\n", g)
				first = false
			}
			def := d.def
			if d.helpDef != "" {
				def = d.helpDef
			}
			mark := ""
			if d.strata {
				mark = " [Strata]"
			}
			fmt.Fprintf(w, "  --%s '%s'%s\n    %s\n", d.name, def, mark, d.usage)
			if d.name == "feature-gates" {
				fmt.Fprintf(w, "    Options are:\n")
				for _, n := range sortedFeatures() {
					fmt.Fprintf(w, "    %s=true|false (%s, default=%t)\n", n, featureStage(n), featureDefaults[n])
				}
			}
			if d.apply == nil {
				fmt.Fprintf(w, "    Strata: only the default; any other value %s.\n", strings.TrimPrefix(d.refuse, "is "))
			}
		}
	}
	fmt.Fprintf(w, "\nOther:\n  --config-file ''\n    %s\n  --version 'false'\n    %s\n", configFileFlag.usage, versionFlag.usage)
	fmt.Fprint(w, "\nEnvironment: every flag may be given as ETCD_<FLAG> (--data-dir is ETCD_DATA_DIR), and --backend as STRATA_BACKEND; a flag on the command line and its variable together stop start-up, as etcd.\n")
	fmt.Fprint(w, "\nCAUTIOUS with unsafe flag! It may break the guarantees given by the consensus protocol!\n")
}

func sortedFeatures() []string {
	ns := make([]string, 0, len(featureDefaults))
	for n := range featureDefaults {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns
}

func featureStage(n string) string {
	if featureDefaults[n] {
		return "BETA"
	}
	return "ALPHA"
}

// writeVersion writes etcd's version lines, which test harnesses and
// upgrade scripts parse, with the etcd version whose API Strata serves,
// and one line of Strata's own.
func writeVersion(w io.Writer) {
	sha, strata := "Not provided (use ./build instead of go build)", "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			strata = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 7 {
				sha = s.Value[:7]
			}
		}
	}
	fmt.Fprintf(w, "etcd Version: %s\n", server.ServerVersion)
	fmt.Fprintf(w, "Git SHA: %s\n", sha)
	fmt.Fprintf(w, "Go Version: %s\n", runtime.Version())
	fmt.Fprintf(w, "Go OS/Arch: %s/%s\n", runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "Strata Version: %s (etcd API %s; backends %s)\n", strata, server.ServerVersion, backendNames())
}
