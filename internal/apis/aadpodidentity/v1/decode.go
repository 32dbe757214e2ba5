package v1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// The decoders below exist because Kubernetes' JSON decoder
// (sigs.k8s.io/json, behind client-go and controller-runtime's caches) is
// case-sensitive, while aad-pod-identity's users relied on Go's
// case-insensitive encoding/json. They follow three rules:
//
//   - a key matches a field when strings.EqualFold says so, and a spelling
//     other than the canonical one earns a note;
//   - a bad value never fails the decode, because an informer decodes a
//     whole List at once and one broken object must not empty the cache for
//     everyone: it earns an error note and leaves its field zero;
//   - keys that match no field are kept by the CRD and ignored here, but
//     each earns a NoteUnknownKey warning, so that a misspelling such as
//     `clientIDs` is not silently without effect; the only exception is
//     aad-pod-identity's own `metadata` key inside spec (its v1 Go types
//     embedded an ObjectMeta there), which it never read either.
//
// Marshalling needs no code: the json tags write canonical keys only.

// UnmarshalJSON decodes an AzureIdentity spec tolerantly; see the package
// documentation. It fails only when data is not a JSON object. A number
// written as a string for `type` (`type: "1"`) is accepted with a warning
// note: such objects were stored before aad-pod-identity's CRDs had a schema.
// The binding's `weight` is treated the same way; numbers written as strings
// in other fields are invalid.
func (s *AzureIdentitySpec) UnmarshalJSON(data []byte) error {
	var out AzureIdentitySpec
	fields := []field{
		{"type", parseIdentityType, func(v any) { out.Type = v.(IdentityType) }},
		{"resourceID", parseString, func(v any) { out.ResourceID = v.(string) }},
		{"clientID", parseString, func(v any) { out.ClientID = v.(string) }},
		{"clientPassword", parseSecretReference, func(v any) { out.ClientPassword = v.(corev1.SecretReference) }},
		{"tenantID", parseString, func(v any) { out.TenantID = v.(string) }},
		{"auxiliaryTenantIDs", parseStrings, func(v any) { out.AuxiliaryTenantIDs = v.([]string) }},
		{"adResourceID", parseString, func(v any) { out.ADResourceID = v.(string) }},
		{"adEndpoint", parseString, func(v any) { out.ADEndpoint = v.(string) }},
		{"replicas", parseInt32Pointer, func(v any) { out.Replicas = v.(*int32) }},
	}
	if err := decodeSpec(KindAzureIdentity, data, fields, &out.Decoding); err != nil {
		return err
	}
	if !isNull(data) {
		*s = out
	}
	return nil
}

// UnmarshalJSON decodes an AzureIdentityBinding spec tolerantly; see the
// package documentation. It fails only when data is not a JSON object.
func (s *AzureIdentityBindingSpec) UnmarshalJSON(data []byte) error {
	var out AzureIdentityBindingSpec
	fields := []field{
		{"azureIdentity", parseString, func(v any) { out.AzureIdentity = v.(string) }},
		{"selector", parseString, func(v any) { out.Selector = v.(string) }},
		{"weight", parseWeight, func(v any) { out.Weight = v.(int) }},
	}
	if err := decodeSpec(KindAzureIdentityBinding, data, fields, &out.Decoding); err != nil {
		return err
	}
	if !isNull(data) {
		*s = out
	}
	return nil
}

// UnmarshalJSON decodes an AzurePodIdentityException spec tolerantly; see
// the package documentation. The label keys inside podLabels are data, and
// are matched exactly. It fails only when data is not a JSON object.
func (s *AzurePodIdentityExceptionSpec) UnmarshalJSON(data []byte) error {
	var out AzurePodIdentityExceptionSpec
	fields := []field{
		{"podLabels", parseStringMap, func(v any) { out.PodLabels = v.(map[string]string) }},
	}
	if err := decodeSpec(KindAzurePodIdentityException, data, fields, &out.Decoding); err != nil {
		return err
	}
	if !isNull(data) {
		*s = out
	}
	return nil
}

// field is one canonical key of a JSON object and how to decode its value.
type field struct {
	name string
	// parse decodes one value. It returns a non-empty problem, such as
	// "must be a string, not a number", when the value is unusable. Nested
	// objects add their own notes under path.
	parse func(raw json.RawMessage, at path, notes *DecodeNotes) (value any, problem string)
	set   func(value any)
}

// path is where a value sits: as written, and canonically.
type path struct{ written, canonical string }

func (p path) child(key, name string) path {
	if p.written == "" {
		return path{key, name}
	}
	return path{p.written + "." + key, p.canonical + "." + name}
}

// member is one key of a JSON object and its raw value.
type member struct {
	key   string
	value json.RawMessage
}

// occurrence is one spelling of a field that parsed.
type occurrence struct {
	key   string // the path as written, for messages
	own   string // the member's own key, to compare with the field name
	value any
}

// decodeSpec decodes a whole spec object. Its only error is for data that
// is not a JSON object, which the CRD schema rules out on a real cluster.
func decodeSpec(kind string, data []byte, fields []field, notes *DecodeNotes) error {
	if isNull(data) {
		// encoding/json's convention: null leaves the value alone.
		return nil
	}
	ms, err := members(data)
	if err != nil {
		return fmt.Errorf("%s spec must be a JSON object, not %s: %w", kind, describeJSON(data), ErrInvalidField)
	}
	decodeMembers(ms, path{}, fields, notes)
	return nil
}

// ignoredSpecKeys are keys aad-pod-identity's own v1 types had in every
// spec and never read: its Go structs embedded a metav1.ObjectMeta as
// `metadata`. They earn no unknown-key warning. docs/migration.md lists
// them.
var ignoredSpecKeys = []string{"metadata"}

// decodeMembers matches members to fields case-insensitively, sets each
// field that has exactly one usable value, and notes everything else.
func decodeMembers(ms []member, at path, fields []field, notes *DecodeNotes) {
	byField := make([][]member, len(fields))
	for _, m := range ms {
		if isNull(m.value) {
			// As in encoding/json, null means absent.
			continue
		}
		known := false
		for i, f := range fields {
			if strings.EqualFold(m.key, f.name) {
				byField[i] = append(byField[i], m)
				known = true
				break
			}
		}
		if !known && (at.written != "" || !slices.ContainsFunc(ignoredSpecKeys, func(k string) bool { return strings.EqualFold(k, m.key) })) {
			written := at.child(m.key, m.key).written
			*notes = append(*notes, DecodeNote{Kind: NoteUnknownKey, Field: written, Keys: []string{written}})
		}
	}
	for i, f := range fields {
		decodeField(byField[i], at, f, notes)
	}
}

// decodeField decides one field from all its spellings: a single usable
// value is set; a bad value or disagreeing values leave the field zero.
func decodeField(ms []member, at path, f field, notes *DecodeNotes) {
	if len(ms) == 0 {
		return
	}
	canonical := at.child(f.name, f.name).canonical
	var good []occurrence
	broken := false
	for _, m := range ms {
		here := at.child(m.key, f.name)
		v, problem := f.parse(m.value, here, notes)
		if problem != "" {
			*notes = append(*notes, DecodeNote{Kind: NoteInvalid, Field: canonical, Keys: []string{here.written}, Detail: problem})
			broken = true
			continue
		}
		good = append(good, occurrence{here.written, m.key, v})
	}
	if broken {
		// Leave the field zero rather than guess which value was meant.
		return
	}
	keys := make([]string, len(good))
	for i, o := range good {
		keys[i] = o.key
	}
	for _, o := range good[1:] {
		if !reflect.DeepEqual(o.value, good[0].value) {
			*notes = append(*notes, DecodeNote{Kind: NoteConflict, Field: canonical, Keys: keys})
			return
		}
	}
	switch {
	case len(distinct(keys)) > 1:
		*notes = append(*notes, DecodeNote{Kind: NoteDuplicateKey, Field: canonical, Keys: keys})
	case good[0].own != f.name:
		// Only the member's own spelling counts here: a legacy parent key
		// has a note of its own.
		*notes = append(*notes, DecodeNote{Kind: NoteLegacyKey, Field: canonical, Keys: keys[:1]})
	}
	f.set(good[0].value)
}

// members splits a JSON object into its members in document order, keeping
// repeated keys, which a map would lose.
func members(data []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("object key is not a string")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, member{key, v})
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errors.New("unterminated JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return out, nil
}

func isNull(raw []byte) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// describeJSON names the JSON type of a raw value, for messages.
func describeJSON(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "empty"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "a list"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return "a number"
	}
	return "malformed JSON"
}

func parseString(raw json.RawMessage, _ path, _ *DecodeNotes) (any, string) {
	var s string
	if describeJSON(raw) != "a string" || json.Unmarshal(raw, &s) != nil {
		return nil, "must be a string, not " + describeJSON(raw)
	}
	return s, ""
}

func parseStrings(raw json.RawMessage, _ path, _ *DecodeNotes) (any, string) {
	var items []json.RawMessage
	if describeJSON(raw) != "a list" || json.Unmarshal(raw, &items) != nil {
		return nil, "must be a list of strings, not " + describeJSON(raw)
	}
	out := make([]string, len(items))
	for i, item := range items {
		s, problem := parseString(item, path{}, nil)
		if problem != "" {
			return nil, fmt.Sprintf("must be a list of strings, but item %d is %s", i+1, describeJSON(item))
		}
		out[i] = s.(string)
	}
	return out, ""
}

// wholeNumber parses a JSON number that is a whole number within
// [lo, hi]. 2.0 counts, as it does for the API server's integer schema.
func wholeNumber(raw json.RawMessage, lo, hi int64) (int64, string) {
	text := string(bytes.TrimSpace(raw))
	if describeJSON(raw) != "a number" {
		return 0, "must be a whole number, not " + describeJSON(raw)
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(text, 64)
		if ferr != nil || f != math.Trunc(f) || f < float64(lo) || f > float64(hi) {
			return 0, fmt.Sprintf("must be a whole number between %d and %d, not %s", lo, hi, text)
		}
		n = int64(f)
	}
	if n < lo || n > hi {
		return 0, fmt.Sprintf("must be a whole number between %d and %d, not %s", lo, hi, text)
	}
	return n, ""
}

func parseInt32Pointer(raw json.RawMessage, _ path, _ *DecodeNotes) (any, string) {
	n, problem := wholeNumber(raw, math.MinInt32, math.MaxInt32)
	if problem != "" {
		return nil, problem
	}
	v := int32(n)
	return &v, ""
}

// quotedWhole parses a whole number within [lo, hi], or a string that
// holds one, which earns a NoteQuotedNumber. want starts the problem
// message, such as "must be the number 0, 1 or 2".
func quotedWhole(raw json.RawMessage, at path, notes *DecodeNotes, lo, hi int64, want string) (int64, string) {
	if describeJSON(raw) == "a string" {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, want + ", not " + describeJSON(raw)
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < lo || n > hi {
			return 0, fmt.Sprintf("%s, not the string %q", want, s)
		}
		*notes = append(*notes, DecodeNote{Kind: NoteQuotedNumber, Field: at.canonical, Keys: []string{at.written}, Detail: s})
		return n, ""
	}
	if describeJSON(raw) != "a number" {
		return 0, want + ", not " + describeJSON(raw)
	}
	n, problem := wholeNumber(raw, lo, hi)
	if problem != "" {
		return 0, want + ", not " + string(bytes.TrimSpace(raw))
	}
	return n, ""
}

// parseIdentityType accepts a number, or a string that holds a whole
// number. Unknown numbers parse; Validate rejects them with a message that
// lists the known ones.
func parseIdentityType(raw json.RawMessage, at path, notes *DecodeNotes) (any, string) {
	n, problem := quotedWhole(raw, at, notes, math.MinInt32, math.MaxInt32, "must be the number 0, 1 or 2")
	if problem != "" {
		return nil, problem
	}
	return IdentityType(n), ""
}

// parseWeight accepts a whole number, or a string that holds one, like
// parseIdentityType: aad-pod-identity's schema-less CRDs stored both.
func parseWeight(raw json.RawMessage, at path, notes *DecodeNotes) (any, string) {
	n, problem := quotedWhole(raw, at, notes, math.MinInt32, math.MaxInt32, "must be a whole number")
	if problem != "" {
		return nil, problem
	}
	return int(n), ""
}

// parseSecretReference decodes {name, namespace} with the same tolerance as
// a spec, since aad-pod-identity's users wrote `Name:` there too.
func parseSecretReference(raw json.RawMessage, at path, notes *DecodeNotes) (any, string) {
	ms, err := members(raw)
	if err != nil {
		return nil, "must be an object with name and namespace, not " + describeJSON(raw)
	}
	var ref corev1.SecretReference
	decodeMembers(ms, at, []field{
		{"name", parseString, func(v any) { ref.Name = v.(string) }},
		{"namespace", parseString, func(v any) { ref.Namespace = v.(string) }},
	}, notes)
	return ref, ""
}

// parseStringMap decodes a map of label keys to values. Keys are data and
// kept exactly as written.
func parseStringMap(raw json.RawMessage, _ path, _ *DecodeNotes) (any, string) {
	ms, err := members(raw)
	if err != nil {
		return nil, "must be an object of label keys and values, not " + describeJSON(raw)
	}
	out := make(map[string]string, len(ms))
	for _, m := range ms {
		s, problem := parseString(m.value, path{}, nil)
		if problem != "" {
			return nil, fmt.Sprintf("must map each label key to a string, but %q is %s", m.key, describeJSON(m.value))
		}
		if prev, dup := out[m.key]; dup && prev != s.(string) {
			return nil, fmt.Sprintf("has label key %q twice with different values", m.key)
		}
		out[m.key] = s.(string)
	}
	return out, ""
}
