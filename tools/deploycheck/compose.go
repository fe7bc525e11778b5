package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// checkCompose loads a Compose file as `docker compose config` does: the Compose
// specification's JSON schema, interpolation, merge keys, normalisation and the model's
// consistency checks (unknown services in depends_on, undeclared volumes and networks). Then it
// checks what the schema cannot: that bind-mounted files exist, that a service waited on with
// service_healthy has a health check, and that one waited on with
// service_completed_successfully is a one-shot (restart "no").
func checkCompose(path string) int {
	var p problems
	abs, err := filepath.Abs(path)
	if err != nil {
		p.add("%v", err)
		return p.report(path)
	}
	dir := filepath.Dir(abs)
	details := types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: abs}},
		// Only what the file itself defaults: the caller's environment must not mask a gap.
		Environment: types.Mapping{},
	}
	project, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("check", true)
		o.ResolvePaths = true
	})
	if err != nil {
		p.add("%v", err)
		return p.report(path)
	}
	names := make([]string, 0, len(project.Services))
	for name, svc := range project.Services {
		names = append(names, name)
		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					p.add("service %s: bind mount source %s: %v", name, v.Source, err)
				}
			}
		}
		if svc.Build != nil {
			ctx := svc.Build.Context
			if _, err := os.Stat(filepath.Join(ctx, svc.Build.Dockerfile)); err != nil {
				p.add("service %s: build: %v", name, err)
			}
		}
		if store, ok := svc.Environment["SESSIOND_STORE"]; ok && store != nil {
			checkStoreURI("service "+name+": SESSIOND_STORE", *store, &p)
		}
		for dep, cond := range svc.DependsOn {
			target, ok := project.Services[dep]
			if !ok {
				p.add("service %s depends on unknown service %s", name, dep)
				continue
			}
			switch cond.Condition {
			case types.ServiceConditionHealthy:
				if target.HealthCheck == nil || target.HealthCheck.Disable || len(target.HealthCheck.Test) == 0 {
					p.add("service %s waits for %s to be healthy, but %s has no health check", name, dep, dep)
				}
			case types.ServiceConditionCompletedSuccessfully:
				if target.Restart != "" && target.Restart != "no" {
					p.add("service %s waits for %s to complete, but %s restarts (%s)", name, dep, dep, target.Restart)
				}
			}
		}
	}
	sort.Strings(names)
	if code := p.report(path); code != 0 {
		return code
	}
	fmt.Printf("  checked: compose %s: Compose spec schema and model, %d services %v, %d volumes\n",
		path, len(names), names, len(project.Volumes))
	return 0
}
