// Command sbom writes an SPDX 2.3 JSON software bill of materials for a Go
// binary from the module list that the go command embeds in it (what `go
// version -m` prints): the main module, every dependency module linked in,
// with its version and go.sum hash, and the Go standard library. It says
// nothing it did not read from the binary, so it lists modules, not files
// or licenses. The release workflow runs it on both images' binaries.
//
//	go run ./build/sbom -o webhook.spdx.json _output/images/bin/linux_amd64/pod-identity-webhook
package main

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "sbom:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("sbom", flag.ContinueOnError)
	out := fs.String("o", "", "write the SPDX JSON here instead of stdout")
	epoch := fs.Int64("source-date-epoch", 0, "the document's creation time, in Unix seconds (the commit time), so the SBOM is reproducible")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: sbom [-o file] [-source-date-epoch N] <go binary>")
	}
	doc, err := Generate(fs.Arg(0), time.Unix(*epoch, 0))
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if *out == "" {
		_, err = stdout.Write(b)
		return err
	}
	return os.WriteFile(*out, b, 0o644)
}

// Document is the subset of an SPDX 2.3 document that this tool fills.
type Document struct {
	SPDXVersion       string         `json:"spdxVersion"`
	DataLicense       string         `json:"dataLicense"`
	SPDXID            string         `json:"SPDXID"`
	Name              string         `json:"name"`
	DocumentNamespace string         `json:"documentNamespace"`
	CreationInfo      CreationInfo   `json:"creationInfo"`
	Packages          []Package      `json:"packages"`
	Relationships     []Relationship `json:"relationships"`
}

// CreationInfo says who made the document and when.
type CreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

// Package is one SPDX package: the binary, a module, or the standard
// library.
type Package struct {
	SPDXID           string        `json:"SPDXID"`
	Name             string        `json:"name"`
	VersionInfo      string        `json:"versionInfo,omitempty"`
	DownloadLocation string        `json:"downloadLocation"`
	FilesAnalyzed    bool          `json:"filesAnalyzed"`
	Checksums        []Checksum    `json:"checksums,omitempty"`
	ExternalRefs     []ExternalRef `json:"externalRefs,omitempty"`
	Comment          string        `json:"comment,omitempty"`
}

// Checksum is an SPDX checksum.
type Checksum struct {
	Algorithm     string `json:"algorithm"`
	ChecksumValue string `json:"checksumValue"`
}

// ExternalRef is a package URL.
type ExternalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

// Relationship links two SPDX elements.
type Relationship struct {
	SPDXElementID      string `json:"spdxElementId"`
	RelationshipType   string `json:"relationshipType"`
	RelatedSPDXElement string `json:"relatedSpdxElement"`
}

var idUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]`)

func spdxID(kind, name string) string {
	return "SPDXRef-" + kind + "-" + idUnsafe.ReplaceAllString(name, "-")
}

func purl(path, version string) string {
	return "pkg:golang/" + path + "@" + version
}

// Generate reads the module list of the Go binary at path.
func Generate(path string, created time.Time) (*Document, error) {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the module list of %s: %w", path, err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	name := filepath.Base(path)
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}

	binID := spdxID("File", name)
	doc := &Document{
		SPDXVersion:       "SPDX-2.3",
		DataLicense:       "CC0-1.0",
		SPDXID:            "SPDXRef-DOCUMENT",
		Name:              name,
		DocumentNamespace: "https://github.com/podidentity/injector/spdx/" + name + "-" + hex.EncodeToString(sum[:]),
		CreationInfo: CreationInfo{
			Created:  created.UTC().Format(time.RFC3339),
			Creators: []string{"Tool: podidentity-injector-hack-sbom"},
		},
	}
	doc.Packages = append(doc.Packages, Package{
		SPDXID:           binID,
		Name:             name,
		VersionInfo:      info.Main.Version,
		DownloadLocation: "NOASSERTION",
		Checksums:        []Checksum{{Algorithm: "SHA256", ChecksumValue: hex.EncodeToString(sum[:])}},
		Comment: fmt.Sprintf("Go binary of package %s, built with %s for %s/%s", info.Path, info.GoVersion,
			settings["GOOS"], settings["GOARCH"]),
	})
	doc.Relationships = append(doc.Relationships, Relationship{"SPDXRef-DOCUMENT", "DESCRIBES", binID})

	add := func(kind string, m *debug.Module, comment string) {
		if m == nil || m.Path == "" {
			return
		}
		if m.Replace != nil {
			comment = strings.TrimSpace(comment + " replaced by " + m.Replace.Path + "@" + m.Replace.Version)
			m = &debug.Module{Path: m.Path, Version: m.Replace.Version, Sum: m.Replace.Sum}
		}
		p := Package{
			SPDXID:           spdxID(kind, m.Path),
			Name:             m.Path,
			VersionInfo:      m.Version,
			DownloadLocation: "NOASSERTION",
			ExternalRefs:     []ExternalRef{{"PACKAGE-MANAGER", "purl", purl(m.Path, m.Version)}},
			Comment:          comment,
		}
		if m.Sum != "" {
			// The go.sum hash (h1:, a hash of the module's file tree) is not
			// an SPDX checksum algorithm, so it goes in the comment.
			p.Comment = strings.TrimSpace(p.Comment + " go.sum " + m.Sum)
		}
		doc.Packages = append(doc.Packages, p)
		doc.Relationships = append(doc.Relationships, Relationship{binID, "CONTAINS", p.SPDXID})
	}
	main := info.Main
	add("Module", &main, "main module")
	for _, d := range info.Deps {
		add("Module", d, "")
	}
	std := &debug.Module{Path: "stdlib", Version: info.GoVersion}
	add("Go", std, "the Go standard library and runtime")
	return doc, nil
}
