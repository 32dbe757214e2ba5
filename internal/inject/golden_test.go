package inject_test

import (
	"flag"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/podidentity/injector/internal/inject"
	"github.com/podidentity/injector/internal/inject/injecttest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml from the current output")

// TestGolden runs every testdata/<case>.yaml through Inject and compares the
// pod with testdata/<case>.golden.yaml byte for byte. A case without a golden
// fails, and so does a stale golden, unless -update rewrites them.
func TestGolden(t *testing.T) {
	dir := injecttest.Dir()
	cases, err := injecttest.Names(dir)
	require.NoError(t, err)
	require.NotEmpty(t, cases, "no golden cases in %s", dir)

	for _, name := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := injecttest.Load(dir, name)
			require.NoError(t, err)
			input := c.Pod.DeepCopy()

			require.NoError(t, injecttest.CheckStructure(&c.Pod), "the case's input must be well formed")
			got, res, err := c.Inject()
			require.NoError(t, err)
			assert.NoError(t, injecttest.CheckStructure(got), "Inject's output is not well formed")
			assert.True(t, equality.Semantic.DeepEqual(input, &c.Pod), "Inject modified its input pod")
			assert.Equal(t, !equality.Semantic.DeepEqual(input, got), res.Changed, "Result.Changed must say whether the pod changed")
			assert.Equal(t, inject.DefaultIdentity(c.Identities).Name, res.DefaultIdentity)

			gotBytes, err := injecttest.Marshal(got)
			require.NoError(t, err)
			if *update {
				require.NoError(t, injecttest.WriteGolden(dir, name, got))
			}
			want, wantBytes, err := injecttest.LoadGolden(dir, name)
			require.NoError(t, err, "case %s has no golden: run go test ./internal/inject -update and review the diff", name)
			if string(gotBytes) != string(wantBytes) {
				t.Fatalf("golden %s is stale (run go test ./internal/inject -update and review the diff); -golden +got:\n%s",
					injecttest.GoldenPath(dir, name), cmp.Diff(string(wantBytes), string(gotBytes)))
			}

			// Idempotency: the golden fed back in is left alone, whatever
			// secret the second call brings.
			again, res2, err := inject.Inject(want, c.Identities, c.Config, "another-secret-that-must-not-be-used")
			require.NoError(t, err)
			assert.False(t, res2.Changed, "Inject changed its own output")
			assert.Empty(t, cmp.Diff(want, again), "Inject(golden) differs from golden (-golden +got)")
			assert.Equal(t, res.DefaultIdentity, res2.DefaultIdentity)
			assert.Equal(t, res.Warnings, res2.Warnings)
		})
	}
}
