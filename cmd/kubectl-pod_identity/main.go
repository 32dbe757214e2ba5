// Command kubectl-pod_identity is the kubectl plugin of pod-identity-injector
// (`kubectl pod-identity ...` once it is on PATH). It answers two questions
// before and during a migration off aad-pod-identity, with the webhook's own
// code:
//   - explain: what the webhook will do to a pod or workload;
//   - migrate: which federated credentials to create in Azure, and what
//     blocks the switch.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes, so that the plugin can gate a GitOps pipeline.
const (
	exitOK       = 0
	exitFindings = 1 // explain: a workload would be denied or its decision failed; migrate: something blocks the switch
	exitBadInput = 2 // bad flags or manifests, or the cluster could not be read
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `kubectl pod-identity: what pod-identity-injector will do, and how to migrate to it

Usage:
  kubectl pod-identity explain (-f FILE|DIR|- [-R] | -k DIR) [-n NS] [-o text|yaml|json|diff] [--live]
  kubectl pod-identity migrate [-f FILE... --issuer URL] [--cluster-name NAME] [-o text|json|terraform]
  kubectl pod-identity version

Run a command with -h for its flags.
`

// errFindings is returned by a command whose report found what it looks
// for: a denied workload, or a blocker.
var errFindings = errors.New("findings")

// run dispatches the subcommand and maps its outcome to an exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitBadInput
	}
	var err error
	switch args[0] {
	case "migrate":
		err = runMigrate(ctx, args[1:], stdin, stdout, stderr)
	case "explain":
		err = runExplain(ctx, args[1:], stdin, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, versionString())
		return exitOK
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "kubectl pod-identity: unknown command %q\n\n%s", args[0], usage)
		return exitBadInput
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errFindings):
		return exitFindings
	default:
		fmt.Fprintln(stderr, "kubectl pod-identity:", err)
		return exitBadInput
	}
}
