package layout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// listed is what Load reads of one package from `go list -json`.
type listed struct {
	ImportPath   string
	ForTest      string
	Dir          string
	GoFiles      []string
	CgoFiles     []string
	TestGoFiles  []string
	XTestGoFiles []string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// Load builds the Graph of the module at root: each package's imports, its
// unit tests' imports (`go list -deps -test`), its e2e-tagged tests' imports
// (the same with -tags e2e, less what the unit tests import, which the
// stricter rule for unit tests already covers), and the module packages
// its files name as a path to build or run ("./test/cainjector", or
// "../../cmd/sidecar" from the package's folder).
func Load(ctx context.Context, root string) (Graph, error) {
	plain, err := list(ctx, root, "")
	if err != nil {
		return nil, err
	}
	tagged, err := list(ctx, root, "e2e")
	if err != nil {
		return nil, err
	}
	module, err := modulePath(ctx, root)
	if err != nil {
		return nil, err
	}
	rel := func(importPath string) (string, bool) {
		if strings.HasSuffix(importPath, ".test") {
			return "", false // the main package go test generates
		}
		if importPath == module {
			return ".", true
		}
		r, ok := strings.CutPrefix(importPath, module+"/")
		return r, ok
	}
	dirs := map[string]bool{} // every module package, by relative dir
	for _, set := range [][]listed{plain, tagged} {
		for _, p := range set {
			if r, ok := rel(p.ImportPath); ok && p.ForTest == "" {
				dirs[r] = true
			}
		}
	}
	inModule := func(paths []string) []string {
		var out []string
		for _, ip := range paths {
			if r, ok := rel(ip); ok {
				out = append(out, r)
			}
		}
		return out
	}

	g := Graph{}
	add := func(n Node, to ...string) {
		for _, t := range to {
			if !slices.Contains(g[n], t) {
				g[n] = append(g[n], t)
			}
		}
		if _, ok := g[n]; !ok {
			g[n] = nil
		}
	}
	unitFiles := map[string][]string{} // pkg -> its unit test files
	unitImports := map[string][]string{}
	for _, p := range plain {
		pkg, ok := rel(p.ImportPath)
		if !ok || p.ForTest != "" {
			continue // a dependency, or a package recompiled for a test
		}
		add(Node{pkg, Code}, inModule(p.Imports)...)
		unit := inModule(append(slices.Clone(p.TestImports), p.XTestImports...))
		unitImports[pkg] = unit
		unitFiles[pkg] = append(slices.Clone(p.TestGoFiles), p.XTestGoFiles...)
		if len(unitFiles[pkg]) > 0 {
			add(Node{pkg, UnitTest}, unit...)
		}
		for _, f := range append(slices.Clone(p.GoFiles), p.CgoFiles...) {
			paths, err := pathsIn(filepath.Join(p.Dir, f), pkg, dirs)
			if err != nil {
				return nil, err
			}
			add(Node{pkg, Code}, paths...)
		}
		for _, f := range unitFiles[pkg] {
			paths, err := pathsIn(filepath.Join(p.Dir, f), pkg, dirs)
			if err != nil {
				return nil, err
			}
			add(Node{pkg, UnitTest}, paths...)
		}
	}
	for _, p := range tagged {
		pkg, ok := rel(p.ImportPath)
		if !ok || p.ForTest != "" {
			continue
		}
		// Non-test files behind the e2e tag are still code.
		add(Node{pkg, Code}, inModule(p.Imports)...)
		var e2eImports []string
		for _, ip := range inModule(append(slices.Clone(p.TestImports), p.XTestImports...)) {
			if !slices.Contains(unitImports[pkg], ip) {
				e2eImports = append(e2eImports, ip)
			}
		}
		var e2eFiles []string
		for _, f := range append(slices.Clone(p.TestGoFiles), p.XTestGoFiles...) {
			if !slices.Contains(unitFiles[pkg], f) {
				e2eFiles = append(e2eFiles, f)
			}
		}
		if len(e2eFiles) == 0 {
			continue
		}
		add(Node{pkg, E2ETest}, e2eImports...)
		for _, f := range e2eFiles {
			paths, err := pathsIn(filepath.Join(p.Dir, f), pkg, dirs)
			if err != nil {
				return nil, err
			}
			add(Node{pkg, E2ETest}, paths...)
		}
	}
	return g, nil
}

// list runs `go list -deps -test -json` over the module at root.
func list(ctx context.Context, root, tags string) ([]listed, error) {
	args := []string{"list", "-deps", "-test", "-json=ImportPath,ForTest,Dir,GoFiles,CgoFiles,TestGoFiles,XTestGoFiles,Imports,TestImports,XTestImports"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	args = append(args, "./...")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s in %s: %w: %s", strings.Join(args, " "), root, err, stderr.String())
	}
	var pkgs []listed
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			return pkgs, nil
		} else if err != nil {
			return nil, fmt.Errorf("decode go list -json output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
}

func modulePath(ctx context.Context, root string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-m")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list -m in %s: %w", root, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// pathsIn returns the module packages that the string literals of the Go
// file name as a path: "./dir" from the module root (as `go build` and
// `go run` are called from it), or "../dir" from the package's own folder
// (a test's working directory).
func pathsIn(file, pkg string, dirs map[string]bool) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", file, err)
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			return true
		}
		var target string
		switch {
		case strings.HasPrefix(s, "./"):
			target = path.Clean(s)
		case strings.HasPrefix(s, "../"):
			target = path.Join(pkg, s)
		default:
			return true
		}
		if target != pkg && dirs[target] {
			out = append(out, target)
		}
		return true
	})
	return out, nil
}
