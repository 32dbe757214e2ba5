package v1

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Reasons an object is unusable. Every error this package returns wraps one
// of them, so that callers can tell them apart with errors.Is; errors.As with
// *FieldError gives the object and field.
var (
	// ErrLegacyConflict: two spellings of one key hold different values.
	ErrLegacyConflict = errors.New("conflicting spellings of a spec key")
	// ErrInvalidField: a value has the wrong JSON type or is out of range.
	ErrInvalidField = errors.New("invalid spec field")
	// ErrMissingField: a field the object needs is empty.
	ErrMissingField = errors.New("missing spec field")
	// ErrUnknownType: AzureIdentity.spec.type is not 0, 1 or 2.
	ErrUnknownType = errors.New("unknown identity type")
	// ErrCrossNamespaceSecret: an AzureIdentity names a Secret in another
	// namespace.
	ErrCrossNamespaceSecret = errors.New("secret in another namespace")
)

// NoteKind says what the tolerant decoder noticed about a key.
type NoteKind string

const (
	// NoteLegacyKey means the key is spelled other than canonically, for example
	// "ResourceID" for "resourceID". A warning.
	NoteLegacyKey NoteKind = "LegacyKey"
	// NoteDuplicateKey means several spellings of one key hold the same value.
	// A warning.
	NoteDuplicateKey NoteKind = "DuplicateKey"
	// NoteQuotedNumber means a number was written as a string, as in
	// `type: "1"` or `weight: "10"`. The number is used. A warning.
	NoteQuotedNumber NoteKind = "QuotedNumber"
	// NoteUnknownKey means a key matches no field, as `clientIDs` for
	// `clientID`. The CRD keeps it and nothing reads it. A warning.
	NoteUnknownKey NoteKind = "UnknownKey"
	// NoteConflict means several spellings of one key hold different values.
	// The field is left zero. An error (ErrLegacyConflict).
	NoteConflict NoteKind = "Conflict"
	// NoteInvalid means a value has the wrong JSON type or is out of range. The
	// field is left zero. An error (ErrInvalidField).
	NoteInvalid NoteKind = "Invalid"
)

// IsError reports whether a note of this kind makes the object unusable.
func (k NoteKind) IsError() bool {
	return k == NoteConflict || k == NoteInvalid
}

// DecodeNote is one thing the tolerant decoder noticed.
type DecodeNote struct {
	// Kind says what was noticed.
	Kind NoteKind
	// Field is the canonical path of the field, such as "clientID" or
	// "clientPassword.name".
	Field string
	// Keys are the keys involved, as written and in document order, with
	// the parent's key as written in front for nested fields
	// ("ClientPassword.Name").
	Keys []string
	// Detail says what is wrong with the value (NoteInvalid) or what the
	// string held (NoteQuotedNumber).
	Detail string
}

// DecodeNotes is everything the tolerant decoder noticed about one spec,
// field by field in the order of the Go struct.
type DecodeNotes []DecodeNote

// HasErrors reports whether any note makes the object unusable.
func (ns DecodeNotes) HasErrors() bool {
	for _, n := range ns {
		if n.Kind.IsError() {
			return true
		}
	}
	return false
}

// errorFor reports whether a field, or a field nested in it, has an error
// note, so that Validate does not report an empty field twice.
func (ns DecodeNotes) errorFor(field string) bool {
	for _, n := range ns {
		if n.Kind.IsError() && (n.Field == field || strings.HasPrefix(n.Field, field+".")) {
			return true
		}
	}
	return false
}

// warnings turns the notes that are not errors into admission warnings.
// It runs on every admission of a pod whose objects use legacy keys, so
// it names the object once and builds each message without fmt.
func (ns DecodeNotes) warnings(kind string, meta *metav1.ObjectMeta) []string {
	var out []string
	var ref string
	for _, n := range ns {
		if n.Kind.IsError() {
			continue
		}
		if out == nil {
			out, ref = make([]string, 0, len(ns)), objectRef(kind, meta)+": "
		}
		out = append(out, ref+n.message())
	}
	return out
}

// fieldErrors turns the notes that are errors into errors, in order.
func (ns DecodeNotes) fieldErrors(kind string, meta *metav1.ObjectMeta) []error {
	var errs []error
	for _, n := range ns {
		if !n.Kind.IsError() {
			continue
		}
		reason := ErrInvalidField
		if n.Kind == NoteConflict {
			reason = ErrLegacyConflict
		}
		errs = append(errs, newFieldError(kind, meta, n.Field, reason, n.message()))
	}
	return errs
}

// message is the note as a sentence about "spec", without the object.
func (n DecodeNote) message() string {
	canonical := n.Field
	if n.Kind == NoteLegacyKey {
		return "spec key " + strconv.Quote(n.Keys[0]) + " is a legacy spelling; rename it to " + strconv.Quote(canonical)
	}
	keys := distinct(n.Keys)
	switch n.Kind {
	case NoteDuplicateKey:
		if others, ok := without(keys, canonical); ok {
			return fmt.Sprintf("spec keys %s set the same value; delete %s", quoteList(keys), quoteList(others))
		}
		return fmt.Sprintf("spec keys %s set the same value; keep one of them and rename it to %q", quoteList(keys), canonical)
	case NoteUnknownKey:
		return fmt.Sprintf("spec key %q is not a field this webhook or aad-pod-identity reads, so it has no effect; check its spelling, or delete it", n.Keys[0])
	case NoteQuotedNumber:
		return fmt.Sprintf("spec key %q holds the string %q; write it as the number %s, without quotes", n.Keys[0], n.Detail, n.Detail)
	case NoteConflict:
		if len(keys) == 1 {
			return fmt.Sprintf("spec has key %q %d times with different values; delete all but one of them", keys[0], len(n.Keys))
		}
		what := "delete one of them"
		if len(keys) > 2 {
			what = "delete all but one of them"
		}
		if _, ok := without(keys, canonical); !ok {
			what += fmt.Sprintf(" and rename the one you keep to %q", canonical)
		}
		both := "both "
		if len(keys) > 2 {
			both = ""
		}
		return fmt.Sprintf("spec has %s%s with different values; %s", both, quoteList(keys), what)
	case NoteInvalid:
		return fmt.Sprintf("spec key %q %s; fix its value", n.Keys[0], n.Detail)
	}
	return fmt.Sprintf("spec field %q: %s %s", canonical, n.Kind, n.Detail)
}

// FieldError is an error about one field of one object. Its message is a
// whole sentence for kubectl: the object, the field and what to do.
//
// +kubebuilder:object:generate=false
type FieldError struct {
	// Kind, Namespace and Name identify the object.
	Kind, Namespace, Name string
	// Field is the canonical path of the field within spec.
	Field string
	// Reason is one of the Err* sentinels of this package.
	Reason error
	// Message is the sentence returned by Error.
	Message string
}

// Error returns the message, which names the object and the field.
func (e *FieldError) Error() string { return e.Message }

// Unwrap returns the sentinel, for errors.Is.
func (e *FieldError) Unwrap() error { return e.Reason }

func newFieldError(kind string, meta *metav1.ObjectMeta, field string, reason error, message string) *FieldError {
	return &FieldError{
		Kind:      kind,
		Namespace: meta.Namespace,
		Name:      meta.Name,
		Field:     field,
		Reason:    reason,
		Message:   objectRef(kind, meta) + ": " + message,
	}
}

// errorList is several errors about one object, on one line, so that an
// admission denial stays readable in kubectl.
//
// +kubebuilder:object:generate=false
type errorList []error

func (l errorList) Error() string {
	msgs := make([]string, len(l))
	for i, err := range l {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap lets errors.Is and errors.As see every error of the list.
func (l errorList) Unwrap() []error { return l }

// joinErrors returns nil, the one error, or an errorList.
func joinErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return errorList(errs)
}

// objectRef names an object the way kubectl users read it:
// "AzureIdentity team-a/blob-reader".
func objectRef(kind string, meta *metav1.ObjectMeta) string {
	name := meta.Name
	if name == "" {
		name = "(unnamed)"
	}
	if meta.Namespace == "" {
		return kind + " " + name
	}
	return kind + " " + meta.Namespace + "/" + name
}

// quoteList renders `"a"`, `"a" and "b"` or `"a", "b" and "c"`.
func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	if len(q) <= 1 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
}

// distinct drops repeated strings, keeping the first of each.
func distinct(items []string) []string {
	var out []string
	for _, s := range items {
		seen := false
		for _, o := range out {
			seen = seen || o == s
		}
		if !seen {
			out = append(out, s)
		}
	}
	return out
}

// without returns items other than s, and whether s was among them.
func without(items []string, s string) ([]string, bool) {
	var out []string
	found := false
	for _, it := range items {
		if it == s {
			found = true
			continue
		}
		out = append(out, it)
	}
	return out, found
}
