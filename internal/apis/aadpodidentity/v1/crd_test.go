package v1_test

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/podidentity/injector/examples"
	v1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
)

const crdDir = "../../../../manifests/crds"

// crdCase ties a CRD file to the Go types it must describe.
type crdCase struct {
	file     string
	kind     string
	plural   string
	spec     reflect.Type
	status   reflect.Type
	seedFile string // a seed manifest of this kind, if there is one
}

var crdCases = []crdCase{
	{"aadpodidentity.k8s.io_azureidentities.yaml", v1.KindAzureIdentity, v1.ResourceAzureIdentities,
		reflect.TypeFor[v1.AzureIdentitySpec](), reflect.TypeFor[v1.AzureIdentityStatus](), "azureidentity.yaml"},
	{"aadpodidentity.k8s.io_azureidentitybindings.yaml", v1.KindAzureIdentityBinding, v1.ResourceAzureIdentityBindings,
		reflect.TypeFor[v1.AzureIdentityBindingSpec](), reflect.TypeFor[v1.AzureIdentityBindingStatus](), "azureidentitybinding.yaml"},
	{"aadpodidentity.k8s.io_azurepodidentityexceptions.yaml", v1.KindAzurePodIdentityException, v1.ResourceAzurePodIdentityExceptions,
		reflect.TypeFor[v1.AzurePodIdentityExceptionSpec](), reflect.TypeFor[v1.AzurePodIdentityExceptionStatus](), ""},
}

func readCRD(t *testing.T, file string) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(crdDir, file))
	require.NoError(t, err)
	var crd apiextensionsv1.CustomResourceDefinition
	require.NoError(t, yaml.UnmarshalStrict(raw, &crd), "%s must parse as a v1 CustomResourceDefinition", file)
	return &crd
}

func TestCRDsDescribeTheGoTypes(t *testing.T) {
	for _, tc := range crdCases {
		t.Run(tc.kind, func(t *testing.T) {
			crd := readCRD(t, tc.file)
			assert.Equal(t, "apiextensions.k8s.io/v1", crd.APIVersion)
			assert.Equal(t, tc.plural+"."+v1.SchemeGroupVersion.Group, crd.Name)
			assert.Equal(t, v1.SchemeGroupVersion.Group, crd.Spec.Group)
			assert.Equal(t, tc.kind, crd.Spec.Names.Kind)
			assert.Equal(t, tc.kind+"List", crd.Spec.Names.ListKind)
			assert.Equal(t, tc.plural, crd.Spec.Names.Plural)
			assert.Equal(t, apiextensionsv1.NamespaceScoped, crd.Spec.Scope)
			// The API server refuses a *.k8s.io group without this annotation.
			assert.True(t, strings.HasPrefix(crd.Annotations[apiextensionsv1.KubeAPIApprovedAnnotation], "unapproved"),
				"annotation %s must start with \"unapproved\"", apiextensionsv1.KubeAPIApprovedAnnotation)

			require.Len(t, crd.Spec.Versions, 1)
			ver := crd.Spec.Versions[0]
			assert.Equal(t, v1.Version, ver.Name)
			assert.True(t, ver.Served)
			assert.True(t, ver.Storage)
			require.NotNil(t, ver.Schema)
			root := ver.Schema.OpenAPIV3Schema

			spec := root.Properties["spec"]
			require.NotNil(t, spec.XPreserveUnknownFields, "spec must preserve unknown fields so legacy keys survive")
			assert.True(t, *spec.XPreserveUnknownFields)
			assert.Empty(t, spec.Required, "a legacy spelling could never satisfy a required canonical key")
			assertSchemaMatches(t, "spec", tc.spec, spec)
			assertSchemaMatches(t, "status", tc.status, root.Properties["status"])

			// The API server takes only structural schemas.
			s := structural(t, root)
			assert.Empty(t, structuralschema.ValidateStructural(field.NewPath("openAPIV3Schema"), s))
		})
	}
}

// assertSchemaMatches checks that every serialised field of typ is a
// property of schema with the matching JSON type, and that schema has no
// property that typ lacks, so that YAML and Go cannot drift apart.
func assertSchemaMatches(t *testing.T, path string, typ reflect.Type, schema apiextensionsv1.JSONSchemaProps) {
	t.Helper()
	want := map[string]reflect.Type{}
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		want[name] = f.Type
		prop, ok := schema.Properties[name]
		if !assert.True(t, ok, "%s.%s (Go field %s) is missing from the CRD schema", path, name, f.Name) {
			continue
		}
		assert.Equal(t, jsonSchemaType(f.Type), prop.Type, "%s.%s has the wrong schema type", path, name)
		if f.Type.Kind() == reflect.Struct {
			assertSchemaMatches(t, path+"."+name, f.Type, prop)
			require.NotNil(t, prop.XPreserveUnknownFields, "%s.%s must preserve unknown fields so legacy keys survive", path, name)
			assert.True(t, *prop.XPreserveUnknownFields)
		}
	}
	for name := range schema.Properties {
		assert.Contains(t, want, name, "%s.%s is in the CRD schema but not in the Go type %s", path, name, typ)
	}
}

func jsonSchemaType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return jsonSchemaType(t.Elem())
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "integer"
	case reflect.Slice:
		return "array"
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Bool:
		return "boolean"
	}
	return "unknown Go kind " + t.Kind().String()
}

func structural(t *testing.T, v1Schema *apiextensionsv1.JSONSchemaProps) *structuralschema.Structural {
	t.Helper()
	var internal apiextensions.JSONSchemaProps
	require.NoError(t, apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v1Schema, &internal, nil))
	s, err := structuralschema.NewStructural(&internal)
	require.NoError(t, err)
	return s
}

// TestCRDsKeepLegacyKeys runs the API server's own pruning over the seed
// manifests: the capitalised keys must be stored as written.
func TestCRDsKeepLegacyKeys(t *testing.T) {
	for _, tc := range crdCases {
		if tc.seedFile == "" {
			continue
		}
		t.Run(tc.kind, func(t *testing.T) {
			raw, err := examples.Blog(tc.seedFile)
			require.NoError(t, err)
			var obj, pruned map[string]any
			require.NoError(t, yaml.Unmarshal(raw, &obj))
			require.NoError(t, yaml.Unmarshal(raw, &pruned))

			s := structural(t, readCRD(t, tc.file).Spec.Versions[0].Schema.OpenAPIV3Schema)
			pruning.Prune(pruned, s, true)
			assert.Equal(t, obj, pruned, "pruning must keep every key of the seed")
		})
	}

	// A nested legacy key, under a canonical parent, survives too.
	s := structural(t, readCRD(t, crdCases[0].file).Spec.Versions[0].Schema.OpenAPIV3Schema)
	obj := map[string]any{"spec": map[string]any{"clientPassword": map[string]any{"Name": "sp-secret"}}}
	pruning.Prune(obj, s, true)
	assert.Equal(t, map[string]any{"Name": "sp-secret"}, obj["spec"].(map[string]any)["clientPassword"])
}

func TestKustomizationListsEveryCRD(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(crdDir, "kustomization.yaml"))
	require.NoError(t, err)
	var k struct {
		Resources []string `json:"resources"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &k))

	files, err := filepath.Glob(filepath.Join(crdDir, "*_*.yaml"))
	require.NoError(t, err)
	var want []string
	for _, f := range files {
		want = append(want, filepath.Base(f))
	}
	slices.Sort(want)
	slices.Sort(k.Resources)
	assert.Equal(t, want, k.Resources)

	var fromCases []string
	for _, tc := range crdCases {
		fromCases = append(fromCases, tc.file)
	}
	slices.Sort(fromCases)
	assert.Equal(t, fromCases, want, "every CRD file must be checked by TestCRDsDescribeTheGoTypes")
}
