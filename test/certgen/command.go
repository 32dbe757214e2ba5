package certgen

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// CommandConfig is the configuration of the hack/certgen command.
type CommandConfig struct {
	// Certificate is the serving Certificate manifest.
	Certificate string
	// CACertificate is the CA Certificate manifest, read when no CA is
	// reused.
	CACertificate string
	// Out is the directory that receives tls.crt, tls.key and ca.crt.
	Out string
	// CADir keeps the CA: reused when it holds one, else created there.
	// Empty means a fresh CA that is not kept.
	CADir string
	// DNSNames and IPAddresses are added to the manifest's names.
	DNSNames    []string
	IPAddresses []string
	// SecretYAML, when set, also receives the Secret manifest.
	SecretYAML string
}

// AddFlags registers the command's flags, with defaults that work from the
// repository root.
func (c *CommandConfig) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Certificate, "certificate", "certs/serving-certificate.yaml", "serving Certificate manifest")
	fs.StringVar(&c.CACertificate, "ca-certificate", "certs/ca-certificate.yaml", "CA Certificate manifest, used when --ca-dir holds no CA")
	fs.StringVar(&c.Out, "out", "", "directory for tls.crt, tls.key and ca.crt (required)")
	fs.StringVar(&c.CADir, "ca-dir", "", "directory that keeps the CA (tls.crt, tls.key, ca.crt): reused if present, created if not; empty: a fresh CA that is not kept")
	fs.Func("dns-names", "comma-separated DNS names to add to the manifest's spec.dnsNames", func(s string) error {
		c.DNSNames = append(c.DNSNames, splitList(s)...)
		return nil
	})
	fs.Func("ip-addresses", "comma-separated IP addresses to add to the manifest's spec.ipAddresses (e.g. 127.0.0.1)", func(s string) error {
		c.IPAddresses = append(c.IPAddresses, splitList(s)...)
		return nil
	})
	fs.StringVar(&c.SecretYAML, "secret-yaml", "", "also write the kubernetes.io/tls Secret manifest cert-manager would create to this file (- for stdout)")
}

// Validate reports a missing required flag.
func (c *CommandConfig) Validate() error {
	if c.Out == "" {
		return errors.New("--out is required: the directory to write tls.crt, tls.key and ca.crt to")
	}
	if c.Certificate == "" {
		return errors.New("--certificate is required: the serving Certificate manifest, e.g. certs/serving-certificate.yaml")
	}
	return nil
}

// Run issues the certificate and writes the files; a --secret-yaml of "-"
// goes to stdout. It returns the paths it wrote, for the user to see.
func (c *CommandConfig) Run(stdout io.Writer) ([]string, error) {
	serving, err := ReadCertificate(c.Certificate)
	if err != nil {
		return nil, err
	}
	opts := Options{Serving: serving, DNSNames: c.DNSNames, IPAddresses: c.IPAddresses}

	newCA := true
	if c.CADir != "" {
		// A directory with a tls.crt must hold a whole CA: never replace
		// half of one.
		_, err := os.Stat(filepath.Join(c.CADir, fileCert))
		switch {
		case err == nil:
			if opts.ExistingCA, err = ReadDir(c.CADir); err != nil {
				return nil, fmt.Errorf("--ca-dir %s: %w", c.CADir, err)
			}
			newCA = false
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("--ca-dir %s: %w", c.CADir, err)
		}
	}
	if newCA {
		if opts.CA, err = ReadCertificate(c.CACertificate); err != nil {
			return nil, err
		}
	}

	b, err := Issue(opts)
	if err != nil {
		return nil, err
	}
	var written []string
	if newCA && c.CADir != "" {
		if err := b.CA.WriteDir(c.CADir); err != nil {
			return nil, err
		}
		written = append(written, filepath.Join(c.CADir, fileCert), filepath.Join(c.CADir, fileKey), filepath.Join(c.CADir, fileCA))
	}
	if err := b.Serving.WriteDir(c.Out); err != nil {
		return nil, err
	}
	written = append(written, filepath.Join(c.Out, fileCert), filepath.Join(c.Out, fileKey), filepath.Join(c.Out, fileCA))

	if c.SecretYAML != "" {
		manifest, err := SecretYAML(b.Certificate, b.Serving)
		if err != nil {
			return nil, err
		}
		if c.SecretYAML == "-" {
			if _, err := stdout.Write(manifest); err != nil {
				return nil, fmt.Errorf("write Secret manifest: %w", err)
			}
		} else {
			if err := writeFileAtomic(c.SecretYAML, manifest, 0o600); err != nil {
				return nil, err
			}
			written = append(written, c.SecretYAML)
		}
	}
	return written, nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
