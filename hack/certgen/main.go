// Command gen issues the webhook's TLS material without cert-manager, from
// the same Certificate manifests that cert-manager reads in a cluster:
//
//	go run ./hack/certgen --out /tmp/webhook-certs --ip-addresses 127.0.0.1
//
// It writes tls.crt, tls.key and ca.crt into --out, the layout of the
// serving Certificate's Secret that the webhook's --cert-dir expects. With
// --ca-dir it keeps the CA there and reuses it on the next run, so that
// running it again rotates the serving certificate under the same CA, as a
// cert-manager renewal does. With --secret-yaml it also writes the Secret
// manifest that cert-manager would have created.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/podidentity/injector/test/certgen"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "hack/certgen:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	var cfg certgen.CommandConfig
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	written, err := cfg.Run(stdout)
	if err != nil {
		return err
	}
	for _, path := range written {
		fmt.Fprintln(stderr, "wrote", path)
	}
	return nil
}
