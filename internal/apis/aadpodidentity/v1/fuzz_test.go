package v1_test

import (
	"encoding/json"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"sigs.k8s.io/yaml"

	"github.com/podidentity/injector/examples"
	v1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
)

// FuzzDecodeIdentitySpec feeds arbitrary bytes to the tolerant decoders. It
// must never panic, the messages must be computable for whatever decoded,
// and what Marshal writes must decode, without notes, to the same spec.
// The binding and exception decoders get the same input.
//
//	go test -run '^$' -fuzz FuzzDecodeIdentitySpec ./internal/apis/aadpodidentity/v1
func FuzzDecodeIdentitySpec(f *testing.F) {
	for _, seed := range []string{
		`{"type":0,"resourceID":"/r","clientID":"c"}`,
		`{"Type":"1","ClientID":"c","ClientPassword":{"Name":"s","namespace":"n"},"TenantId":"t"}`,
		`{"clientID":"a","ClientID":"b","clientid":"a"}`,
		`{"type":true,"replicas":1e10,"auxiliaryTenantIDs":["a",2],"clientPassword":"x"}`,
		`{"type":2.0,"replicas":null,"weight":-3,"Selector":"s","podLabels":{"a":"b"}}`,
		`{"AzureIdentity":"id","selector":{"x":1},"PodLabels":{"a":1}}`,
		`{"clientID":"c","adEndpoint":"http://evil.example/"}`,
		`{"ClientID":"c","ADEndpoint":"https://login.microsoftonline.com@evil.example"}`,
		`"not an object"`,
		`null`,
	} {
		f.Add([]byte(seed))
	}
	if raw, err := examples.Blog("azureidentity.yaml"); err == nil {
		var obj struct {
			Spec json.RawMessage `json:"spec"`
		}
		if yaml.Unmarshal(raw, &obj) == nil {
			f.Add([]byte(obj.Spec))
		}
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		var id v1.AzureIdentity
		id.Name, id.Namespace = "x", "team-a"
		if id.Spec.UnmarshalJSON(data) == nil {
			_, _ = id.Warnings(), id.DecodeErr()
			if id.Validate() == nil && id.Spec.ADEndpoint != "" {
				// Credentials go to this URL: a valid identity never
				// names a clear-text or host-hiding one.
				u, err := url.Parse(id.Spec.ADEndpoint)
				if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.User != nil {
					t.Fatalf("Validate accepted adEndpoint %q", id.Spec.ADEndpoint)
				}
			}
			roundTrip(t, id.Spec, func(s v1.AzureIdentitySpec) v1.DecodeNotes { return s.Decoding })
		}
		var b v1.AzureIdentityBinding
		if b.Spec.UnmarshalJSON(data) == nil {
			_, _, _ = b.Warnings(), b.DecodeErr(), b.Validate()
			roundTrip(t, b.Spec, func(s v1.AzureIdentityBindingSpec) v1.DecodeNotes { return s.Decoding })
		}
		var e v1.AzurePodIdentityException
		if e.Spec.UnmarshalJSON(data) == nil {
			_, _, _ = e.Warnings(), e.DecodeErr(), e.Validate()
			roundTrip(t, e.Spec, func(s v1.AzurePodIdentityExceptionSpec) v1.DecodeNotes { return s.Decoding })
		}
	})
}

// roundTrip marshals spec and decodes the result: the canonical keys must
// give the same fields and no notes at all.
func roundTrip[S any](t *testing.T, spec S, notes func(S) v1.DecodeNotes) {
	t.Helper()
	out, err := json.Marshal(spec)
	if err != nil {
		t.Fatalf("marshal %#v: %v", spec, err)
	}
	var again S
	if err := json.Unmarshal(out, &again); err != nil {
		t.Fatalf("decode what marshal wrote, %s: %v", out, err)
	}
	if n := notes(again); len(n) != 0 {
		t.Fatalf("canonical output %s decoded with notes %+v", out, n)
	}
	if diff := cmp.Diff(spec, again, ignoreNotes, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("round trip through %s changed the spec (-before +after):\n%s", out, diff)
	}
}
