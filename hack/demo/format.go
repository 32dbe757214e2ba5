package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podidentity/injector/internal/names"
)

// shownEnv reports whether a container's env var is part of the identity
// contract the demo shows. Everything else (the user's own env, the
// sidecar's JSON config) would only bury it.
func shownEnv(name string) bool {
	switch name {
	case names.EnvIdentityEndpoint, names.EnvIdentityHeader, names.EnvAzureClientID, names.EnvAuthorityHost:
		return true
	}
	return strings.HasPrefix(name, "AZCOPY_")
}

// envValue is how the demo prints one env var: the header secret only by
// its length, since anyone holding it can ask the sidecar for tokens.
func envValue(ev corev1.EnvVar) string {
	switch {
	case ev.ValueFrom != nil:
		return "(from valueFrom)"
	case ev.Name == names.EnvIdentityHeader:
		return fmt.Sprintf("(per-pod secret, %d chars)", len(ev.Value))
	default:
		return ev.Value
	}
}

// writeContainers prints each init container and container of pod in the
// order the kubelet starts them: name, image, restartPolicy if set, the
// identity env vars and the volume mounts.
func writeContainers(w io.Writer, pod *corev1.Pod) {
	for _, group := range []struct {
		kind string
		list []corev1.Container
	}{{"init container", pod.Spec.InitContainers}, {"container", pod.Spec.Containers}} {
		for _, c := range group.list {
			fmt.Fprintf(w, "  %s %s\n", group.kind, c.Name)
			fmt.Fprintf(w, "      image          %s\n", c.Image)
			if c.RestartPolicy != nil {
				fmt.Fprintf(w, "      restartPolicy  %s\n", *c.RestartPolicy)
			}
			for _, ev := range c.Env {
				if shownEnv(ev.Name) {
					fmt.Fprintf(w, "      env            %s=%s\n", ev.Name, envValue(ev))
				}
			}
			for _, m := range c.VolumeMounts {
				ro := ""
				if m.ReadOnly {
					ro = " (read-only)"
				}
				fmt.Fprintf(w, "      mount          %s <- volume %s%s\n", m.MountPath, m.Name, ro)
			}
		}
	}
}

// claimLine prints the claims that say who a token is for and from whom,
// never the token itself. exp, a JSON number of seconds, is shown as a UTC
// time and as the lifetime left at now.
func claimLine(claims map[string]any, now time.Time) string {
	var parts []string
	for _, k := range []string{"aud", "iss", "sub", "appid", "tid"} {
		if v, ok := claims[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	if exp, ok := claims["exp"].(float64); ok {
		t := time.Unix(int64(exp), 0).UTC()
		parts = append(parts, fmt.Sprintf("exp=%s (in %s)", t.Format(time.RFC3339), t.Sub(now).Round(time.Second)))
	}
	return strings.Join(parts, " ")
}

// azcopyResult is the line of azcopy's output that says how the login
// ended: the last line that is not blank.
func azcopyResult(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
