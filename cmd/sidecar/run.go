package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/podidentity/injector/internal/memtune"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
	"github.com/podidentity/injector/internal/tokenserver"
	"github.com/podidentity/injector/internal/version"
)

// errUsage is wrapped when the command line names no known subcommand.
var errUsage = errors.New("usage: pod-identity-sidecar serve|probe [flags], or --version")

// run is the whole program: parse the command line, then serve or probe.
// getenv and stderr are parameters so that tests drive it like main does.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	if args[0] == "--version" || args[0] == "-version" {
		_, err := fmt.Fprintln(os.Stdout, version.String("pod-identity-sidecar"))
		return err
	}
	sub := args[0]
	if sub != names.SidecarServeCommand && sub != names.SidecarProbeCommand {
		return fmt.Errorf("%w: unknown subcommand %q", errUsage, sub)
	}
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("pod-identity-sidecar "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.AddFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if sub == names.SidecarProbeCommand {
		return probe(ctx, cfg, getenv)
	}
	return serve(ctx, cfg, getenv, stderr)
}

// loadConfig reads the sidecar config document from --config-file or the
// environment.
func loadConfig(cfg Config, getenv func(string) string) (*sidecarconfig.Config, error) {
	var data []byte
	if cfg.ConfigFile != "" {
		b, err := os.ReadFile(cfg.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("read --config-file: %w", err)
		}
		data = b
	} else {
		data = []byte(getenv(names.EnvSidecarConfig))
		if len(data) == 0 {
			return nil, fmt.Errorf("no sidecar config: %s is empty and --config-file is not set; the webhook sets %s on the %s container",
				names.EnvSidecarConfig, names.EnvSidecarConfig, names.SidecarContainerName)
		}
	}
	sc, err := sidecarconfig.Parse(data)
	if err != nil {
		return nil, err
	}
	if cfg.Port != 0 {
		sc.Port = cfg.Port
	}
	return sc, nil
}

// serve loads every identity's credentials, then answers token requests on
// 127.0.0.1 until ctx is cancelled (SIGTERM).
func serve(ctx context.Context, cfg Config, getenv func(string) string, stderr io.Writer) error {
	// Before any credential is read.
	if err := disableDumping(); err != nil {
		return err
	}
	level, _ := cfg.level() // validated
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	sc, err := loadConfig(cfg, getenv)
	if err != nil {
		return err
	}
	var ca []byte
	if cfg.CAFile != "" {
		if ca, err = os.ReadFile(cfg.CAFile); err != nil {
			return fmt.Errorf("read --ca-file: %w", err)
		}
	}
	httpClient, err := tokenserver.NewHTTPClient(ca)
	if err != nil {
		return fmt.Errorf("--ca-file %s: %w", cfg.CAFile, err)
	}
	// Every identity gets an explicit authority, so that azidentity never
	// falls back on $AZURE_AUTHORITY_HOST, and each is on the allow-list
	// the webhook wrote: a pod whose config was edited by hand cannot send
	// credentials to a host the webhook would have refused. Config
	// validation checked the identities' own authorities.
	fallback := cmp.Or(cfg.AuthorityHost, sidecarconfig.DefaultAuthorityHost)
	so := tokenserver.SourceOptions{AuthorityHost: fallback, Transport: httpClient, IMDSEndpoint: cfg.IMDSEndpoint, AllowedAuthorityHosts: sc.AllowedAuthorities()}
	sources := map[string]tokenserver.Source{}
	for _, id := range sc.Identities {
		if id.AuthorityHost == "" && id.Source != names.TokenSourceIMDS {
			if err := sidecarconfig.CheckAuthority(fallback, sc.AllowedAuthorities()); err != nil {
				return fmt.Errorf("AzureIdentity %s/%s names no authority, and --authority-host %s: %w; the webhook's --allowed-authority-hosts decides which hosts may receive credentials",
					id.Namespace, id.Name, fallback, err)
			}
		}
		src, err := tokenserver.LoadSource(id, so)
		if err != nil {
			return err
		}
		sources[id.Name] = src
	}
	srv, err := tokenserver.New(tokenserver.Options{
		Config:         sc,
		Sources:        sources,
		IdentityHeader: getenv(names.EnvIdentityHeader),
		Logger:         log,
		Cache: tokenserver.CacheOptions{MaxResourcesPerIdentity: cfg.MaxResourcesPerIdentity,
			UpstreamRate: rate.Limit(cfg.UpstreamRate), UpstreamBurst: cfg.UpstreamBurst},
		ShutdownTimeout: cfg.ShutdownTimeout,
		MaxConnections:  cfg.MaxConnections,
	})
	if err != nil {
		return err
	}
	// Loopback only: nothing outside the pod's network namespace may ask.
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(sc.Port)))
	if err != nil {
		srv.Close()
		return fmt.Errorf("listen on 127.0.0.1:%d: %w; another container of the pod may use the port, choose another with the %s annotation",
			sc.Port, err, names.TokenPortAnnotation)
	}
	ids := make([]string, 0, len(sc.Identities))
	for _, id := range sc.Identities {
		ids = append(ids, id.Namespace+"/"+id.Name+" ("+id.Source+")")
	}
	// In the background: the listener is open, so the probe passes
	// without waiting for it.
	go releaseStartupMemory()
	go releaseAfterBursts(ctx)
	log.Info("serving", "address", ln.Addr().String(), "identities", ids, "defaultIdentity", sc.DefaultIdentity, "memoryLimit", memtune.Limit())
	err = srv.Serve(ctx, ln)
	log.Info("stopped")
	return err
}

// probeRetry is how often probe dials again while nothing listens.
const probeRetry = 10 * time.Millisecond

// probe exits 0 when the server on the configured port answers its health
// endpoint.
func probe(ctx context.Context, cfg Config, getenv func(string) string) error {
	// The probe runs as the sidecar's user in the sidecar's mount
	// namespace, so while it runs its /proc/<pid>/root is the sidecar's
	// root, token and Secrets included: it is made not dumpable first, as
	// serve is.
	if err := disableDumping(); err != nil {
		return err
	}
	port := cfg.Port
	if port == 0 {
		sc, err := loadConfig(cfg, getenv)
		if err != nil {
			return err
		}
		port = sc.Port
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.ProbeTimeout)
	defer cancel()
	url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + names.PathHealth
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	resp, err := client.Do(req)
	// The kubelet's probe ticks once a period (1 s) from when it took the
	// pod, so a tick can land just after the container started and before
	// the server listens. A refused connection is therefore retried within
	// the probe's own timeout: that probe then passes as soon as the
	// server listens, instead of one period later.
	for errors.Is(err, syscall.ECONNREFUSED) {
		refused := fmt.Errorf("probe %s: %w (retried until the probe's %s timeout)", url, err, cfg.ProbeTimeout)
		select {
		case <-ctx.Done():
			return refused
		case <-time.After(probeRetry):
		}
		if resp, err = client.Do(req); err != nil && ctx.Err() != nil {
			// The timeout cut this attempt short; the refusal is the news.
			return refused
		}
	}
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: status %d", url, resp.StatusCode)
	}
	return nil
}
