// Package layout states the rooms of this repository (README.md's layout
// table) and the one direction in which code may point from one room to
// another, and checks a graph of the module's packages against them.
//
// Check is a pure function of a Graph and Rules, so a test can plant a
// violation in a graph it makes up; Load builds the real Graph with
// `go list -deps -test`, with and without -tags e2e.
package layout

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Kind says which files of a package a node of the graph stands for, since
// the rules differ between a package's code and its tests.
type Kind int

const (
	// Code is a package's non-test files.
	Code Kind = iota
	// UnitTest is a package's _test.go files that build without -tags e2e.
	UnitTest
	// E2ETest is a package's test files that build only with -tags e2e
	// (the *_e2e_test.go files, and the suites e2e/ and e2e/node): a suite,
	// wherever it lives.
	E2ETest
)

func (k Kind) String() string {
	switch k {
	case Code:
		return "code"
	case UnitTest:
		return "unit tests"
	case E2ETest:
		return "e2e tests"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Node is one package's code or tests. Pkg is the package's directory
// relative to the module root ("internal/names"), "." for the root.
type Node struct {
	Pkg  string
	Kind Kind
}

// Graph maps each node to the module packages (directories relative to the
// module root) that it imports, or builds or runs by path (`go build
// ./test/cainjector` points as surely as an import does).
type Graph map[Node][]string

// Room is a set of directories that one owner holds, at one level of the
// stack.
type Room struct {
	Name string
	// Rank is the room's level: code may point only to rooms of a lower
	// rank, or within its own room. Two rooms of one rank may not point at
	// each other.
	Rank int
	// Dirs are module-relative directories. A package is in the room of
	// the longest of all rooms' Dirs that holds it.
	Dirs []string
}

// Rules are the rooms, the two general exceptions to "lower rank only", and
// the named arrows allowed against them.
type Rules struct {
	Rooms []Room
	// TestHelpers are the rooms that any package's unit tests may import,
	// whatever its rank: the fakes and the example manifests.
	TestHelpers []string
	// Suites is the room that e2e-tagged test files count as, wherever
	// they live: they may import every room of a lower rank.
	Suites string
	// Open are folders that hold rooms but are none: a package in one of
	// them that no room's Dirs name more closely is in no room. A new e2e
	// environment must say where it stands in the stack.
	Open []string
	// Exceptions are single arrows allowed against the rooms, each with
	// the reason it is not a dependency.
	Exceptions []Exception
}

// Exception allows the one arrow From -> To.
type Exception struct {
	From Node
	To   string
	Why  string
}

// House is this repository's layout, README.md's table: imports point only
// from hack/ and the suites, to the e2e environments (stacked
// controlplane, then webhookenv and nodeparts, then nodeenv), to the test
// fakes and the examples, to build/, to the product (cmd/ and internal/).
// The product imports nothing else; its unit tests may import test/ and
// examples/ besides.
var House = Rules{
	Rooms: []Room{
		{Name: "product", Rank: 0, Dirs: []string{"cmd", "internal"}},
		{Name: "build", Rank: 1, Dirs: []string{"build"}},
		{Name: "test", Rank: 2, Dirs: []string{"test"}},
		{Name: "examples", Rank: 2, Dirs: []string{"examples"}},
		{Name: "controlplane", Rank: 3, Dirs: []string{"e2e/framework/controlplane"}},
		{Name: "webhookenv", Rank: 4, Dirs: []string{"e2e/framework/webhookenv"}},
		{Name: "nodeparts", Rank: 4, Dirs: []string{"e2e/framework/nodeparts"}},
		{Name: "nodeenv", Rank: 5, Dirs: []string{"e2e/framework/nodeenv"}},
		// charts/ and manifests/ hold no Go code: their Go packages are
		// the tests of the chart and the kustomize base.
		{Name: "suites", Rank: 6, Dirs: []string{"e2e", "charts", "manifests"}},
		{Name: "hack", Rank: 6, Dirs: []string{"hack"}},
	},
	TestHelpers: []string{"test", "examples"},
	Suites:      "suites",
	Open:        []string{"e2e/framework"},
	Exceptions: []Exception{{
		From: Node{"examples", E2ETest},
		To:   "hack/demo",
		Why: "TestStandaloneCopy runs the tests that read the seed manifests, " +
			"hack/demo's among them, in a copy of the repository with nothing beside it; " +
			"it names the package to test, it does not use it",
	}},
}

// Violation is one arrow that points the wrong way, or a package that is in
// no room.
type Violation struct {
	From     Node
	FromRoom string
	To       string
	ToRoom   string
	// Reason says which rule the arrow breaks.
	Reason string
}

func (v Violation) String() string {
	if v.To == "" {
		return fmt.Sprintf("%s (%s): %s", v.From.Pkg, v.From.Kind, v.Reason)
	}
	return fmt.Sprintf("%s (%s, room %s) -> %s (room %s): %s", v.From.Pkg, v.From.Kind, v.FromRoom, v.To, v.ToRoom, v.Reason)
}

// RoomOf is the room that holds the module-relative directory pkg, and
// false if none does.
func (r Rules) RoomOf(pkg string) (Room, bool) {
	holds := func(d string) bool { return pkg == d || strings.HasPrefix(pkg, d+"/") }
	var best Room
	bestLen := -1
	for _, room := range r.Rooms {
		for _, d := range room.Dirs {
			if holds(d) && len(d) > bestLen {
				best, bestLen = room, len(d)
			}
		}
	}
	for _, d := range r.Open {
		if holds(d) && len(d) >= bestLen {
			return Room{}, false
		}
	}
	return best, bestLen >= 0
}

func (r Rules) room(name string) (Room, bool) {
	for _, room := range r.Rooms {
		if room.Name == name {
			return room, true
		}
	}
	return Room{}, false
}

// Check returns every arrow of g that the rules forbid, and every package
// of g that is in no room (a new top-level folder must be given one, and a
// row in README.md), sorted so that the output is stable.
func Check(g Graph, r Rules) []Violation {
	var out []Violation
	for from, tos := range g {
		fromRoom, ok := r.RoomOf(from.Pkg)
		if !ok {
			out = append(out, Violation{From: from, Reason: "package is in no room: give its folder a room in hack/layout.House and a row in README.md's layout table"})
			continue
		}
		// An e2e-tagged test file is a suite wherever it lives.
		actsAs := fromRoom
		if from.Kind == E2ETest {
			if suites, ok := r.room(r.Suites); ok {
				actsAs = suites
			}
		}
		for _, to := range tos {
			if r.excepted(from, to) {
				continue
			}
			toRoom, ok := r.RoomOf(to)
			if !ok {
				out = append(out, Violation{From: from, FromRoom: fromRoom.Name, To: to, Reason: "target is in no room"})
				continue
			}
			if reason := forbidden(from.Kind, fromRoom, actsAs, toRoom, r); reason != "" {
				out = append(out, Violation{From: from, FromRoom: fromRoom.Name, To: to, ToRoom: toRoom.Name, Reason: reason})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func (r Rules) excepted(from Node, to string) bool {
	for _, e := range r.Exceptions {
		if e.From == from && e.To == to {
			return true
		}
	}
	return false
}

// forbidden says why an arrow from a node of kind k in room from (acting as
// room actsAs) to room to is not allowed, or "" if it is.
func forbidden(k Kind, from, actsAs, to Room, r Rules) string {
	if to.Name == from.Name || to.Name == actsAs.Name || to.Rank < actsAs.Rank {
		return ""
	}
	if k == UnitTest && slices.Contains(r.TestHelpers, to.Name) {
		return ""
	}
	if to.Rank == actsAs.Rank {
		return fmt.Sprintf("rooms %s and %s are side by side (rank %d): neither may point at the other", actsAs.Name, to.Name, to.Rank)
	}
	return fmt.Sprintf("points up, from rank %d (%s) to rank %d: imports point only down the stack", actsAs.Rank, actsAs.Name, to.Rank)
}
