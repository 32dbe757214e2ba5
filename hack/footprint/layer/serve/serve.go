// Package serve is the token server's HTTP, JSON and slog layer, one layer of the sidecar's stack that the
// hack/footprint programs add one at a time (BENCHMARKS.md, "Sidecar
// footprint"). A program links only the layers it imports.
package serve

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
)

// Serve starts a loopback HTTP server whose one handler answers JSON and
// logs a slog JSON line, as the token server does.
func Serve() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /msi/token", func(w http.ResponseWriter, r *http.Request) {
		log.Info("token request", "resource", r.URL.Query().Get("resource"))
		_ = json.NewEncoder(w).Encode(map[string]string{"access_token": "x"})
	})
	go func() { _ = http.Serve(ln, mux) }()
	log.Info("serving", "address", ln.Addr().String())
}
