// Command deploycheck validates sessiond's deployment files offline, against the real schemas
// and types of the tools that consume them:
//
//	deploycheck dockerfile FILE      BuildKit's Dockerfile parser and `docker build --check` rules
//	deploycheck compose FILE         the Compose specification's JSON schema and model (compose-go)
//	deploycheck envoy FILE           Envoy's v3 Bootstrap proto, strict, with every typed_config
//	                                 unpacked and its protoc-gen-validate rules applied
//	deploycheck callers FILE         a sessiond --callers-file, with sessiond's own rules
//	deploycheck k8s FILE|-           rendered manifests decoded strictly into the k8s.io/api types
//	                                 (and the Prometheus Operator's ServiceMonitor), then checked for
//	                                 consistency: selectors, named ports, volumes, references
//
// Each subcommand prints what it checked and exits 1 on the first file with a problem. It needs
// no network once its module is downloaded (scripts/check-deploy builds it).
package main

import (
	"fmt"
	"os"
	"strings"
)

// problems collects findings so one run reports all of them.
type problems struct {
	list []string
}

func (p *problems) add(format string, args ...any) {
	p.list = append(p.list, fmt.Sprintf(format, args...))
}

func (p *problems) ok() bool { return len(p.list) == 0 }

func (p *problems) report(what string) int {
	if p.ok() {
		return 0
	}
	fmt.Fprintf(os.Stderr, "FAIL %s: %d problem(s)\n", what, len(p.list))
	for _, s := range p.list {
		fmt.Fprintf(os.Stderr, "  - %s\n", s)
	}
	return 1
}

func usage() int {
	fmt.Fprintln(os.Stderr, strings.TrimSpace(`
usage: deploycheck dockerfile FILE
       deploycheck compose FILE
       deploycheck envoy FILE
       deploycheck callers FILE
       deploycheck k8s [-external-secret NAME]... [-external-configmap NAME]... [-external-pvc NAME]... FILE|-`))
	return 2
}

func main() {
	if len(os.Args) < 3 {
		os.Exit(usage())
	}
	var code int
	switch os.Args[1] {
	case "dockerfile":
		code = checkDockerfile(os.Args[2])
	case "compose":
		code = checkCompose(os.Args[2])
	case "envoy":
		code = checkEnvoy(os.Args[2])
	case "callers":
		code = checkCallersPath(os.Args[2])
	case "k8s":
		code = checkK8s(os.Args[2:])
	default:
		code = usage()
	}
	os.Exit(code)
}
