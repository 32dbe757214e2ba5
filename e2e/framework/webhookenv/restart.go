package webhookenv

import (
	"context"
	"time"
)

// WebhookPID is the process id of the running webhook, for benchmarks that
// read its memory from /proc.
func (e *Env) WebhookPID() int { return e.webhook.Process.Pid }

// RestartWebhook stops the webhook and starts it again with the same flags,
// as a rollout would, and returns the time from its exec to its readiness
// (/readyz, which waits for the informer cache to sync). The new process
// listens on new ports: WebhookURL and MetricsURL change, and the caller
// re-registers the MutatingWebhookConfiguration if it uses one.
func (e *Env) RestartWebhook(ctx context.Context) (time.Duration, error) {
	terminate(e.webhook.Process, e.whDone, 5*time.Second)
	if e.whLog != nil {
		_ = e.whLog.Close()
	}
	start := time.Now()
	if err := e.startWebhook(ctx); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}
