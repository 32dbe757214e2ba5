// Package examples carries the manifests that users start from, so that the
// tests, the demo and a reader all use the same files, from the repository
// itself.
package examples

import (
	"embed"
	"fmt"
	"os"
	"path/filepath"
)

// BlogDir is the folder, under examples/, of the blog-era aad-pod-identity
// manifests; its README says where they come from.
const BlogDir = "aad-pod-identity-blog"

// BlogFiles are the blog-era manifests in the order they are applied: the
// Deployment last, so that its pod finds the identity and the binding.
var BlogFiles = []string{"namespace.yaml", "azureidentity.yaml", "azureidentitybinding.yaml", "deployment.yaml"}

//go:embed aad-pod-identity-blog/*.yaml
var blog embed.FS

// BlogPath is the folder of the blog-era manifests in the checkout at
// repoRoot, for tools that apply them from disk (kubectl, the demo).
func BlogPath(repoRoot string) string {
	return filepath.Join(repoRoot, "examples", BlogDir)
}

// Blog returns one of BlogFiles, byte for byte as committed.
func Blog(name string) ([]byte, error) {
	data, err := blog.ReadFile(BlogDir + "/" + name)
	if err != nil {
		return nil, fmt.Errorf("examples: %s/%s: %w", BlogDir, name, err)
	}
	return data, nil
}

// WriteBlog writes every one of BlogFiles into dir, for tools such as
// kubectl that read files, and returns their paths in apply order.
func WriteBlog(dir string) ([]string, error) {
	paths := make([]string, 0, len(BlogFiles))
	for _, name := range BlogFiles {
		data, err := Blog(name)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return nil, fmt.Errorf("examples: write %s: %w", path, err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}
