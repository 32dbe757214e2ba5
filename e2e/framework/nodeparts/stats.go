package nodeparts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ContainerMemory is one container's memory as the kubelet's
// /stats/summary reports it (cAdvisor's sample, refreshed at each
// housekeeping, every 10-15 s).
type ContainerMemory struct {
	// Time is when the kubelet sampled the figures; the summary gives it to
	// the second.
	Time time.Time
	// WorkingSetBytes is what the kubelet evicts and limits on: usage less
	// inactive file pages. RSSBytes is anonymous memory (cgroup v1's rss);
	// nil when the runtime does not report it.
	WorkingSetBytes, RSSBytes *uint64
}

// ErrNoStats is returned when the summary has no memory sample for the
// container yet.
var ErrNoStats = errors.New("no memory sample for the container in the kubelet's /stats/summary")

// ContainerMemory reads one container's memory from the kubelet's
// /stats/summary (StatsSummary).
func (n *Node) ContainerMemory(ctx context.Context, namespace, pod, container string) (ContainerMemory, error) {
	raw, err := n.StatsSummary(ctx)
	if err != nil {
		return ContainerMemory{}, fmt.Errorf("GET the kubelet's /stats/summary: %w", err)
	}
	return containerMemory(raw, namespace, pod, container)
}

// containerMemory finds one container's memory in a /stats/summary
// document.
func containerMemory(summary []byte, namespace, pod, container string) (ContainerMemory, error) {
	var s struct {
		Pods []struct {
			PodRef struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"podRef"`
			Containers []struct {
				Name   string `json:"name"`
				Memory *struct {
					Time            time.Time `json:"time"`
					WorkingSetBytes *uint64   `json:"workingSetBytes"`
					RSSBytes        *uint64   `json:"rssBytes"`
				} `json:"memory"`
			} `json:"containers"`
		} `json:"pods"`
	}
	if err := json.Unmarshal(summary, &s); err != nil {
		return ContainerMemory{}, fmt.Errorf("decode the kubelet's /stats/summary: %w", err)
	}
	for _, p := range s.Pods {
		if p.PodRef.Namespace != namespace || p.PodRef.Name != pod {
			continue
		}
		for _, c := range p.Containers {
			if c.Name != container || c.Memory == nil || c.Memory.WorkingSetBytes == nil {
				continue
			}
			return ContainerMemory{Time: c.Memory.Time, WorkingSetBytes: c.Memory.WorkingSetBytes, RSSBytes: c.Memory.RSSBytes}, nil
		}
	}
	return ContainerMemory{}, fmt.Errorf("container %s of pod %s/%s: %w", container, namespace, pod, ErrNoStats)
}
