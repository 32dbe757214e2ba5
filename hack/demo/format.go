package main

import (
	"fmt"
	"io"
	"regexp"
	"sort"
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

// writeStatuses prints the pod's node and each container's state in the
// kubelet's start order: the native sidecar (started once its startupProbe
// passed), the init container that ran to completion, the app.
func writeStatuses(w io.Writer, pod *corev1.Pod) {
	probed := map[string]bool{}
	for _, c := range append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
		probed[c.Name] = c.StartupProbe != nil
	}
	fmt.Fprintf(w, "on node %s, pod IP %s:\n", pod.Spec.NodeName, pod.Status.PodIP)
	for _, group := range []struct {
		kind string
		list []corev1.ContainerStatus
	}{{"init container", pod.Status.InitContainerStatuses}, {"container", pod.Status.ContainerStatuses}} {
		for _, s := range group.list {
			fmt.Fprintf(w, "  %-15s %-20s %s\n", group.kind, s.Name, stateLine(s, probed[s.Name]))
		}
	}
}

// stateLine is one container's state, with the kubelet's times (1 s
// resolution); probed says the container has a startupProbe.
func stateLine(s corev1.ContainerStatus, probed bool) string {
	switch {
	case s.State.Running != nil:
		line := "running since " + s.State.Running.StartedAt.UTC().Format(time.TimeOnly)
		switch {
		case s.Started != nil && *s.Started && probed:
			line += ", started: its startupProbe passed"
		case s.Started != nil && *s.Started:
			line += ", started"
		}
		return line
	case s.State.Terminated != nil:
		t := s.State.Terminated
		return fmt.Sprintf("terminated: %s, exit code %d (ran %s to %s)", t.Reason, t.ExitCode, t.StartedAt.UTC().Format(time.TimeOnly), t.FinishedAt.UTC().Format(time.TimeOnly))
	case s.State.Waiting != nil:
		return "waiting: " + s.State.Waiting.Reason
	}
	return "no state yet"
}

// writeEvents prints events as kubectl describe does, oldest first: type,
// reason, source, and the message after the container it is about.
func writeEvents(w io.Writer, events []corev1.Event) {
	sorted := append([]corev1.Event(nil), events...)
	sort.SliceStable(sorted, func(i, j int) bool { return eventTime(sorted[i]).Before(eventTime(sorted[j])) })
	for _, e := range sorted {
		from := e.Source.Component
		if from == "" {
			from = e.ReportingController
		}
		msg := e.Message
		if e.InvolvedObject.FieldPath != "" {
			msg = e.InvolvedObject.FieldPath + ": " + msg
		}
		fmt.Fprintf(w, "  %-7s %-22s %-18s %s\n", e.Type, e.Reason, from, msg)
	}
}

// eventTime is when an event last happened, whichever field its reporter
// set.
func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// jwtShape matches a JSON Web Token: three base64url parts, the first a
// JSON object ("eyJ").
var jwtShape = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)

// redact hides, in a container's log, every secret (the pod's
// IDENTITY_HEADER values) and anything shaped like a token, should a
// program print one: the demo shows claims, never a token.
func redact(log string, secrets []string) string {
	for _, s := range secrets {
		if s != "" {
			log = strings.ReplaceAll(log, s, "(IDENTITY_HEADER value, redacted)")
		}
	}
	return jwtShape.ReplaceAllString(log, "(a token, redacted)")
}

// azcopyStory are the lines of azcopy's output that say how the seed's
// `azcopy login --identity && azcopy copy` went.
var azcopyStory = []string{"login", "Number of File Transfers Completed", "Number of File Transfers Failed", "Total Number of Bytes Transferred", "Final Job Status"}

// storyLines keeps the lines of a log that contain one of keep (in any
// case), trimmed, and says how many lines the log had; an empty keep keeps
// every line.
func storyLines(log string, keep []string) (lines []string, total int) {
	all := strings.Split(strings.TrimRight(log, "\n"), "\n")
	if log == "" {
		all = nil
	}
	for _, l := range all {
		if len(keep) == 0 {
			lines = append(lines, l)
			continue
		}
		for _, k := range keep {
			if strings.Contains(strings.ToLower(l), strings.ToLower(k)) {
				lines = append(lines, strings.TrimSpace(l))
				break
			}
		}
	}
	return lines, len(all)
}
