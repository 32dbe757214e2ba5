package nodeparts

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/podidentity/injector/e2e/framework/controlplane"
)

// AzuriteVersion is the Azurite that hack/build-tools.sh installs from npm
// (hack/tools/azurite/package-lock.json).
const AzuriteVersion = "3.37.0"

// StorageAccount and StorageHost are the seed's blob account and host, which
// the suite's DNS answers with Address, where Azurite listens on 443.
const (
	StorageAccount = "mystorageaccount"
	StorageHost    = StorageAccount + ".blob.core.windows.net"
)

// Azurite is the Azure Storage blob emulator, serving StorageHost over TLS
// on Address:443 with OAuth on (its "basic" level: it checks a bearer
// token's issuer, audience and lifetime, not its signature).
type Azurite struct {
	proc   *controlplane.Component
	client *http.Client
}

// AzuriteOptions configure StartAzurite.
type AzuriteOptions struct {
	Cluster *controlplane.Cluster // runs Azurite as one of its components
	// CertPEM and KeyPEM serve StorageHost; the images trust their CA.
	CertPEM, KeyPEM []byte
	// RootCAs verify CertPEM for the suite's own client (Put).
	RootCAs *tls.Config
}

// AzuriteDir is where hack/build-tools.sh installs Azurite.
func AzuriteDir() (string, error) {
	cache, err := controlplane.CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "azurite-"+AzuriteVersion)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", ".bin", "azurite-blob")); err != nil {
		return "", fmt.Errorf("%w: azurite %s in %s; run `hack/build-tools.sh azurite` (needs npm)", controlplane.ErrBinariesMissing, AzuriteVersion, dir)
	}
	return dir, nil
}

// StartAzurite runs azurite-blob with node and waits for its port.
func StartAzurite(ctx context.Context, o AzuriteOptions) (*Azurite, error) {
	dir, err := AzuriteDir()
	if err != nil {
		return nil, err
	}
	work := filepath.Join(o.Cluster.WorkDir(), "azurite")
	if err := os.MkdirAll(work, 0o700); err != nil {
		return nil, err
	}
	cert, key := filepath.Join(work, "tls.crt"), filepath.Join(work, "tls.key")
	if err := os.WriteFile(cert, o.CertPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(key, o.KeyPEM, 0o600); err != nil {
		return nil, err
	}
	accountKey := make([]byte, 64)
	if _, err := rand.Read(accountKey); err != nil {
		return nil, err
	}
	proc, err := o.Cluster.Run("azurite", filepath.Join(dir, "node_modules", ".bin", "azurite-blob"),
		[]string{"AZURITE_ACCOUNTS=" + StorageAccount + ":" + base64.StdEncoding.EncodeToString(accountKey)},
		"--blobHost", Address, "--blobPort", "443",
		"--cert", cert, "--key", key,
		"--oauth", "basic",
		"--inMemoryPersistence",
		"--disableTelemetry",
		"--skipApiVersionCheck",
		"--loose",
	)
	if err != nil {
		return nil, err
	}
	a := &Azurite{proc: proc, client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: o.RootCAs,
		// The suite's own resolver knows nothing of StorageHost.
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(Address, "443"))
		},
	}}}
	if err := proc.WaitReady(ctx, time.Minute, func(ctx context.Context) error {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(Address, "443"))
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		return nil, err
	}
	return a, nil
}

// LogTail is the end of Azurite's log.
func (a *Azurite) LogTail(n int) string { return a.proc.LogTail(n) }

// Put creates container (if new) and writes blob with data, authenticated
// with bearerToken (a storage token of the fake Entra ID).
func (a *Azurite) Put(ctx context.Context, bearerToken, container, blob string, data []byte) error {
	base := "https://" + StorageHost + "/" + container
	if err := a.do(ctx, bearerToken, http.MethodPut, base+"?restype=container", nil, nil, http.StatusCreated, http.StatusConflict); err != nil {
		return err
	}
	return a.do(ctx, bearerToken, http.MethodPut, base+"/"+blob, data, map[string]string{"x-ms-blob-type": "BlockBlob"}, http.StatusCreated)
}

func (a *Azurite) do(ctx context.Context, token, method, url string, body []byte, hdr map[string]string, want ...int) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("x-ms-version", "2021-08-06")
	req.Header.Set("Content-Length", strconv.Itoa(len(body)))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	for _, w := range want {
		if resp.StatusCode == w {
			return nil
		}
	}
	return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, msg)
}
