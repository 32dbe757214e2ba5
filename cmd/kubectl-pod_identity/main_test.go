package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestExitCodesAndUsage(t *testing.T) {
	tests := map[string]struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		"no command":     {args: nil, code: exitBadInput, inStderr: "Usage:"},
		"unknown":        {args: []string{"frobnicate"}, code: exitBadInput, inStderr: `unknown command "frobnicate"`},
		"help":           {args: []string{"help"}, code: exitOK, inStdout: "kubectl pod-identity migrate"},
		"version":        {args: []string{"version"}, code: exitOK, inStdout: "kubectl-pod_identity "},
		"bad output":     {args: []string{"migrate", "-o", "yaml"}, code: exitBadInput, inStderr: `-o "yaml": want text, json or terraform`},
		"http issuer":    {args: []string{"migrate", "--issuer", "http://x"}, code: exitBadInput, inStderr: "want an https URL"},
		"bad source":     {args: []string{"migrate", "--default-token-source", "magic"}, code: exitBadInput, inStderr: `--default-token-source "magic"`},
		"stray argument": {args: []string{"migrate", "extra"}, code: exitBadInput, inStderr: "migrate takes no arguments"},
		"no kubeconfig":  {args: []string{"migrate", "--kubeconfig", "/nonexistent/kubeconfig"}, code: exitBadInput, inStderr: "load kubeconfig"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), tc.args, strings.NewReader(""), &out, &errOut)
			assert.Equal(t, tc.code, code, "stderr: %s", errOut.String())
			assert.Contains(t, out.String(), tc.inStdout)
			assert.Contains(t, errOut.String(), tc.inStderr)
		})
	}
}
