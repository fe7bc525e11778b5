package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerui"
	digest "github.com/opencontainers/go-digest"
)

// offlineImages answers BuildKit's base-image lookups without a registry: an empty Linux image
// config. Rules that depend on a base image's own ENV cannot see it; every other rule of
// `docker build --check` runs as in BuildKit.
type offlineImages struct{}

func (offlineImages) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}}`)
	return ref, digest.FromBytes(config), config, nil
}

// checkDockerfile runs the Dockerfile through BuildKit's parser and the lint rules of
// `docker build --check` (all stages, experimental rules included); any warning fails.
func checkDockerfile(path string) int {
	var p problems
	dt, err := os.ReadFile(path)
	if err != nil {
		p.add("%v", err)
		return p.report(path)
	}
	ctx := context.Background()
	def, err := llb.Scratch().Marshal(ctx)
	if err != nil {
		p.add("llb: %v", err)
		return p.report(path)
	}
	sm := llb.NewSourceMap(nil, path, "Dockerfile", dt)
	sm.Definition = def
	opt := dockerfile2llb.ConvertOpt{
		Config:       dockerui.Config{},
		SourceMap:    sm,
		MetaResolver: offlineImages{},
	}
	// Every rule, experimental ones too; none skipped.
	opt.LinterConfig = &linter.Config{ExperimentalAll: true}
	results, err := dockerfile2llb.DockerfileLint(ctx, dt, opt)
	if err != nil {
		p.add("lint: %v", err)
		return p.report(path)
	}
	if results.Error != nil {
		p.add("build error: %s", results.Error.Message)
	}
	for _, w := range results.Warnings {
		line := 0
		if w.Location != nil && len(w.Location.Ranges) > 0 {
			line = int(w.Location.Ranges[0].Start.Line)
		}
		p.add("line %d: %s: %s (%s)", line, w.RuleName, strings.TrimSpace(w.Detail), w.URL)
	}
	if code := p.report(path); code != 0 {
		return code
	}
	fmt.Printf("  checked: dockerfile %s: parsed by BuildKit, no `docker build --check` warnings\n", path)
	return 0
}
