package tokenserver

// The one log line per request, served or refused: the sidecar's audit
// trail, whose message ("token request") and fields the operator docs
// (docs/operations.md, docs/troubleshooting.md) and the tests rely on.
// It is kept apart so that a change to it is a change to that contract,
// seen as one.

import (
	"log/slog"
	"net/http"
	"time"
)

// logRequest writes the one line per token request. It never logs the
// token, the header secret or any other header.
func (s *Server) logRequest(r *http.Request, start time.Time, id *identity, resource string, status int, hit bool, e *apiError) {
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	} else if status >= 400 {
		level = slog.LevelWarn
	}
	if !s.log.Enabled(r.Context(), level) {
		return
	}
	attrs := make([]slog.Attr, 0, 8)
	attrs = append(attrs,
		// The client chose path and resource: escaped, so that a log line
		// always reads unambiguously.
		slog.String("path", truncate(r.URL.Path)),
		slog.String("identity", identityLabel(id)),
		slog.String("resource", logValue(resource)),
		slog.Int("status", status),
		slog.Bool("cacheHit", hit),
		slog.Duration("latency", time.Since(start)),
	)
	if e != nil {
		attrs = append(attrs, slog.String("error", e.code), slog.String("reason", e.description))
	}
	s.log.LogAttrs(r.Context(), level, "token request", attrs...)
}

// logValue is a client's value for a log line: at most maxResourceLen
// bytes, escaped.
func logValue(s string) string {
	if len(s) > maxResourceLen {
		return escape(s[:maxResourceLen]) + "..."
	}
	return escape(s)
}

func identityLabel(id *identity) string {
	if id == nil {
		return ""
	}
	return id.label
}
