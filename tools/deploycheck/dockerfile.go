package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
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
	files := checkContext(path, dt, &p)
	if code := p.report(path); code != 0 {
		return code
	}
	fmt.Printf("  checked: dockerfile %s: parsed by BuildKit, no `docker build --check` warnings; every COPY source is in the build context (%d files after .dockerignore)\n", path, files)
	return 0
}

// checkContext applies .dockerignore as Docker does (moby/patternmatcher) to the Dockerfile's
// directory, then checks that every COPY or ADD source from the context has files in it: an
// allow-list .dockerignore that forgets a path breaks the build only at `docker build` time.
func checkContext(path string, dt []byte, p *problems) int {
	dir := filepath.Dir(path)
	var patterns []string
	if f, err := os.Open(filepath.Join(dir, ".dockerignore")); err == nil {
		patterns, err = ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			p.add(".dockerignore: %v", err)
			return 0
		}
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		p.add(".dockerignore: %v", err)
		return 0
	}
	var included []string
	err = filepath.WalkDir(dir, func(file string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, file)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		excluded, err := pm.MatchesOrParentMatches(rel)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if excluded && !mayReinclude(pm, rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if !excluded {
			included = append(included, rel)
		}
		return nil
	})
	if err != nil {
		p.add("build context: %v", err)
		return 0
	}
	ast, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		p.add("parse: %v", err)
		return len(included)
	}
	stages, _, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		p.add("parse: %v", err)
		return len(included)
	}
	for _, st := range stages {
		for _, cmd := range st.Commands {
			var sources []string
			switch c := cmd.(type) {
			case *instructions.CopyCommand:
				if c.From != "" {
					continue
				}
				sources = c.SourcePaths
			case *instructions.AddCommand:
				sources = c.SourcePaths
			default:
				continue
			}
			for _, src := range sources {
				clean := strings.TrimPrefix(filepath.ToSlash(filepath.Clean(src)), "/")
				found := false
				for _, f := range included {
					if clean == "." || f == clean || strings.HasPrefix(f, clean+"/") {
						found = true
						break
					}
				}
				if !found {
					p.add("line %d: COPY source %q has no files in the build context (missing, or excluded by .dockerignore)", cmd.Location()[0].Start.Line, src)
				}
			}
		}
	}
	return len(included)
}

// mayReinclude tells whether an exception pattern (!path) could bring back something under dir.
func mayReinclude(pm *patternmatcher.PatternMatcher, dir string) bool {
	for _, pat := range pm.Patterns() {
		if pat.Exclusion() && (strings.HasPrefix(pat.String(), dir+"/") || strings.ContainsAny(pat.String(), "*?[")) {
			return true
		}
	}
	return false
}
