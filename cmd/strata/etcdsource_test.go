package main

import (
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.etcd.io/etcd/server/v3/embed"
)

// etcdmainFlags reads, from etcd's own etcdmain/config.go in the module
// cache, the names of the flags etcdmain's newConfig adds to
// embed.Config's (fs.StringVar(&x, "config-file", ...), fs.Var(...)) and
// those of its ignored list. It skips the test when the source is not
// there (no go command, or the module not downloaded).
func etcdmainFlags(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "go.etcd.io/etcd/server/v3").Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Skipf("etcd's server module source is not at hand: %v", err)
	}
	path := filepath.Join(dir, "etcdmain", "config.go")
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Skipf("etcd's etcdmain/config.go: %v", err)
	}
	var names []string
	lit := func(e ast.Expr) (string, bool) {
		b, ok := e.(*ast.BasicLit)
		if !ok || b.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(b.Value)
		return s, err == nil
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.ValueSpec: // var ignored = []string{...}
			for i, id := range n.Names {
				if id.Name != "ignored" || i >= len(n.Values) {
					continue
				}
				if cl, ok := n.Values[i].(*ast.CompositeLit); ok {
					for _, e := range cl.Elts {
						if s, ok := lit(e); ok {
							names = append(names, s)
						}
					}
				}
			}
		case *ast.FuncDecl:
			if n.Name.Name != "newConfig" {
				return false
			}
		case *ast.CallExpr: // fs.XxxVar(p, "name", ...) or fs.Var(v, "name", ...)
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok || len(n.Args) < 2 {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "fs" || !strings.HasSuffix(sel.Sel.Name, "Var") {
				return true
			}
			if s, ok := lit(n.Args[1]); ok {
				names = append(names, s)
			}
		}
		return true
	})
	if len(names) < 10 {
		t.Fatalf("found only %d flags in %s: %q", len(names), path, names)
	}
	return names
}

// TestEtcdFlagListIsEtcds checks testdata/etcd-flags.txt, which
// TestEtcdFlagList and TestHelp walk, against etcd v3.7.3 itself: the
// flags (and defaults) embed.Config.AddFlags puts on a flag set, and
// those etcdmain's newConfig adds, read from its source. A flag etcd adds
// or drops, or a default it changes, shows here.
func TestEtcdFlagListIsEtcds(t *testing.T) {
	listed := etcdFlags(t)
	fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
	embed.NewConfig().AddFlags(fs)
	etcd := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		etcd[f.Name] = true
		def, ok := listed[f.Name]
		switch {
		case !ok:
			t.Errorf("etcd's embed.Config has --%s (default %q); testdata/etcd-flags.txt does not", f.Name, f.DefValue)
		case def != f.DefValue:
			t.Errorf("--%s: etcd's default is %q, testdata/etcd-flags.txt says %q", f.Name, f.DefValue, def)
		}
	})
	for _, name := range etcdmainFlags(t) {
		if etcd[name] {
			t.Errorf("--%s is both embed.Config's and etcdmain's", name)
		}
		etcd[name] = true
		if _, ok := listed[name]; !ok {
			t.Errorf("etcd's etcdmain has --%s; testdata/etcd-flags.txt does not", name)
		}
	}
	var extra []string
	for name := range listed {
		if !etcd[name] {
			extra = append(extra, name)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("testdata/etcd-flags.txt lists flags etcd v3.7.3 does not have: %q", extra)
	}
}
