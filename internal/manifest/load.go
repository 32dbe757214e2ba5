package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/resource"
)

// Options name manifests the way kubectl's -f, -R and -k do.
type Options struct {
	// Filenames are files, directories (their .json, .yaml and .yml
	// files), globs, or "-" for Stdin.
	Filenames []string
	// Recursive walks the directories of Filenames into their
	// subdirectories (-R).
	Recursive bool
	// Kustomize is a directory with a kustomization.yaml to build (-k).
	Kustomize string
	// Namespace is the namespace of namespaced objects that name none.
	Namespace string
	// Stdin is read for "-".
	Stdin io.Reader
}

// Validate says what is wrong with the combination, in flag names.
func (o Options) Validate() error {
	var errs []error
	if len(o.Filenames) == 0 && o.Kustomize == "" {
		errs = append(errs, errors.New("-f or -k is required: name a manifest file, a directory, - for standard input, or a kustomization directory"))
	}
	if len(o.Filenames) > 0 && o.Kustomize != "" {
		errs = append(errs, errors.New("-f and -k cannot be used together: run once per input, or list the files in the kustomization"))
	}
	if o.Recursive && o.Kustomize != "" {
		errs = append(errs, errors.New("-R walks the directories of -f; -k builds one kustomization, which names its own resources"))
	}
	stdin := 0
	for _, f := range o.Filenames {
		if f == "-" {
			stdin++
		}
		// The builder would fetch a URL; this package reads what is on
		// disk or piped in, and never reaches out.
		if strings.HasPrefix(f, "http://") || strings.HasPrefix(f, "https://") {
			errs = append(errs, fmt.Errorf("-f %s: a URL is not read; download it and pass the file, or pipe it to -f -", f))
		}
	}
	if stdin > 1 {
		errs = append(errs, errors.New("-f - is given more than once: standard input can be read only once"))
	}
	return errors.Join(errs...)
}

// maxDocument bounds one document, as the API server bounds a request.
const maxDocument = 3 << 20

// Load reads the objects that o names, with k8s.io/cli-runtime's resource
// builder: the code with which kubectl reads -f, -R and -k, kustomize
// included. The builder runs locally and never asks a server.
func Load(o Options) (*Set, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInput, err)
	}
	inputs := func(b *resource.Builder) *resource.Builder {
		for _, f := range o.Filenames {
			if f == "-" {
				// The builder's own "-" reads os.Stdin; a caller's reader
				// is what the plugin's tests give it.
				b = b.Stream(o.Stdin, "-")
				continue
			}
			b = b.FilenameParam(false, &resource.FilenameOptions{Filenames: []string{f}, Recursive: o.Recursive})
		}
		if o.Kustomize != "" {
			b = b.FilenameParam(false, &resource.FilenameOptions{Kustomize: o.Kustomize})
		}
		return b
	}
	s := &Set{}
	if err := s.visit(inputs, o.Namespace, o.Kustomize); err != nil {
		return nil, err
	}
	return s, nil
}

// kindCheck is the builder's schema check, which sees each document before
// it is decoded. It refuses a document without apiVersion or kind itself:
// the decoder's message for it would quote the whole document, a Secret's
// data included.
type kindCheck struct {
	// failed is the check's last refusal, which the builder returns only
	// as text.
	failed error
}

// errNoKind marks a document without apiVersion or kind.
var errNoKind = errors.New("every object needs apiVersion and kind")

// ValidateBytes is resource.ContentValidator.
func (c *kindCheck) ValidateBytes(data []byte) error {
	if len(data) > maxDocument {
		c.failed = fmt.Errorf("a document is larger than %d bytes", maxDocument)
		return c.failed
	}
	var tm struct {
		APIVersion *string `json:"apiVersion"`
		Kind       *string `json:"kind"`
	}
	if err := json.Unmarshal(data, &tm); err != nil {
		c.failed = fmt.Errorf("a document is not an object: %w", err)
		return c.failed
	}
	switch {
	case tm.Kind == nil || *tm.Kind == "":
		c.failed = fmt.Errorf("field kind is missing: %w", errNoKind)
	case tm.APIVersion == nil || *tm.APIVersion == "":
		c.failed = fmt.Errorf("field apiVersion is missing in a %s: %w", *tm.Kind, errNoKind)
	default:
		return nil
	}
	return c.failed
}

// visit adds every object of the inputs that the builder is given to s. Objects of one
// source are numbered in order, as Source.Document. kustomize names the
// directory that -k built, if any.
func (s *Set) visit(inputs func(*resource.Builder) *resource.Builder, defaultNamespace, kustomize string) error {
	check := &kindCheck{}
	// The local builder has no RESTMapper, so it cannot tell namespaced
	// kinds from cluster-scoped ones and its DefaultNamespace would set
	// nothing: add sets the namespace of the kinds it knows instead.
	// Inputs come after the decoder and the check, which the builder
	// hands to each input as it is added.
	result := inputs(resource.NewLocalBuilder().Unstructured().Schema(check)).Do()
	docs := map[string]int{}
	name := func(source string) string {
		if kustomize != "" && source == kustomize {
			return "kustomize build " + source
		}
		return source
	}
	err := result.Visit(func(info *resource.Info, err error) error {
		if err != nil {
			return err
		}
		docs[info.Source]++
		src := Source{File: name(info.Source), Document: docs[info.Source]}
		js, err := runtime.Encode(unstructured.UnstructuredJSONScheme, info.Object)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInput, src, err)
		}
		return s.add(js, src, defaultNamespace)
	})
	if err == nil || errors.Is(err, ErrInput) {
		return err
	}
	// The builder reports a document it cannot read as text that names
	// the file: "error validating "f.yaml": ..." for the check above, and
	// "error parsing f.yaml: ..." for broken YAML. The document is the one
	// after the last object read from that file.
	msg := err.Error()
	var source string
	if _, scanErr := fmt.Sscanf(msg, "error validating %q", &source); scanErr == nil && check.failed != nil {
		src := Source{File: name(source), Document: docs[source] + 1}
		return fmt.Errorf("%w: %s: %w", ErrInput, src, check.failed)
	}
	if rest, ok := strings.CutPrefix(msg, "error parsing "); ok {
		for source := range docs {
			if detail, ok := strings.CutPrefix(rest, source+": "); ok {
				return fmt.Errorf("%w: %s: not YAML or JSON: %s", ErrInput, Source{File: name(source), Document: docs[source] + 1}, detail)
			}
		}
		if source, detail, ok := strings.Cut(rest, ": "); ok {
			return fmt.Errorf("%w: %s: not YAML or JSON: %s", ErrInput, Source{File: name(source), Document: 1}, detail)
		}
	}
	if kustomize != "" {
		return fmt.Errorf("%w: kustomize build %s: %w", ErrInput, kustomize, err)
	}
	return fmt.Errorf("%w: %w", ErrInput, err)
}
