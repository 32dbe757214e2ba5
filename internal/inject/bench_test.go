package inject_test

import (
	"testing"

	"github.com/podidentity/injector/internal/inject"
	"github.com/podidentity/injector/internal/inject/injecttest"
)

// BenchmarkInject measures one mutation of the seed pod, the cost the
// webhook pays per admission on top of decoding and patching.
func BenchmarkInject(b *testing.B) {
	c := loadCase(b, "seed")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := inject.Inject(&c.Pod, c.Identities, c.Config, c.Secret); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInjectAlreadyInjected measures a reinvocation that changes
// nothing: the sidecar's config is parsed back instead of built.
func BenchmarkInjectAlreadyInjected(b *testing.B) {
	c := loadCase(b, "seed")
	golden, _, err := injecttest.LoadGolden(injecttest.Dir(), "seed")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := inject.Inject(golden, c.Identities, c.Config, c.Secret); err != nil {
			b.Fatal(err)
		}
	}
}
