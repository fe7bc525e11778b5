package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// newObject maps apiVersion/kind to the typed struct a manifest must decode into. A kind the
// chart does not render is an error, so a typo in apiVersion or kind cannot slip through.
func newObject(apiVersion, kind string) (any, bool) {
	switch apiVersion + "/" + kind {
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1/Secret":
		return &corev1.Secret{}, true
	case "v1/Service":
		return &corev1.Service{}, true
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "v1/PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}, true
	case "v1/Pod":
		return &corev1.Pod{}, true
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, true
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, true
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, true
	}
	return nil, false
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// manifests is one rendered release, by kind and name.
type manifests struct {
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	services     map[string]*corev1.Service
	accounts     map[string]*corev1.ServiceAccount
	claims       map[string]*corev1.PersistentVolumeClaim
	pods         map[string]*corev1.Pod
	deployments  map[string]*appsv1.Deployment
	budgets      map[string]*policyv1.PodDisruptionBudget
	autoscalers  map[string]*autoscalingv2.HorizontalPodAutoscaler
	monitors     map[string]*monitoringv1.ServiceMonitor
	externalSecr map[string]bool
	externalCM   map[string]bool
	externalPVC  map[string]bool
}

func checkK8s(args []string) int {
	fs := flag.NewFlagSet("k8s", flag.ContinueOnError)
	var extSecrets, extConfigMaps, extClaims listFlag
	fs.Var(&extSecrets, "external-secret", "a Secret the manifests may reference without defining it")
	fs.Var(&extConfigMaps, "external-configmap", "a ConfigMap the manifests may reference without defining it")
	fs.Var(&extClaims, "external-pvc", "a PersistentVolumeClaim the manifests may reference without defining it")
	writeDir := fs.String("write-config", "", "write each rendered config.toml and callers.toml into this directory")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		return usage()
	}
	path := fs.Arg(0)
	var p problems
	var in io.Reader
	if path == "-" {
		in = os.Stdin
		path = "<stdin>"
	} else {
		f, err := os.Open(path)
		if err != nil {
			p.add("%v", err)
			return p.report(path)
		}
		defer f.Close()
		in = f
	}
	m := &manifests{
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		services: map[string]*corev1.Service{}, accounts: map[string]*corev1.ServiceAccount{},
		claims: map[string]*corev1.PersistentVolumeClaim{}, pods: map[string]*corev1.Pod{},
		deployments: map[string]*appsv1.Deployment{}, budgets: map[string]*policyv1.PodDisruptionBudget{},
		autoscalers: map[string]*autoscalingv2.HorizontalPodAutoscaler{}, monitors: map[string]*monitoringv1.ServiceMonitor{},
		externalSecr: set(extSecrets), externalCM: set(extConfigMaps), externalPVC: set(extClaims),
	}
	kinds := map[string]int{}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(in))
	for n := 1; ; n++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p.add("document %d: %v", n, err)
			break
		}
		if isEmptyDoc(doc) {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			p.add("document %d: %v", n, err)
			continue
		}
		obj, ok := newObject(tm.APIVersion, tm.Kind)
		if !ok {
			p.add("document %d: unexpected %s %s (add it to deploycheck if the chart now renders it)", n, tm.APIVersion, tm.Kind)
			continue
		}
		// Strict: unknown fields, duplicate keys and wrong types are errors, as with
		// `kubectl apply --validate=strict`.
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			p.add("%s (document %d): %v", tm.Kind, n, err)
			continue
		}
		kinds[tm.Kind]++
		m.add(obj, &p)
	}
	if len(kinds) == 0 && p.ok() {
		p.add("no manifests to check (did the render fail?)")
	}
	m.check(&p)
	m.checkSessiondFiles(&p)
	if *writeDir != "" {
		if err := m.writeSessiondFiles(*writeDir); err != nil {
			p.add("%v", err)
		}
	}
	if code := p.report(path); code != 0 {
		return code
	}
	var summary []string
	for k, c := range kinds {
		summary = append(summary, fmt.Sprintf("%d %s", c, k))
	}
	sort.Strings(summary)
	fmt.Printf("  checked: k8s %s: strict k8s.io/api decoding and cross-checks: %s\n", path, strings.Join(summary, ", "))
	return 0
}

func set(l []string) map[string]bool {
	out := map[string]bool{}
	for _, s := range l {
		out[s] = true
	}
	return out
}

func isEmptyDoc(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' && string(t) != "---" {
			return false
		}
	}
	return true
}

func (m *manifests) add(obj any, p *problems) {
	var meta metav1.ObjectMeta
	var kind string
	dup := false
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		meta, kind, dup = o.ObjectMeta, "ConfigMap", m.configMaps[o.Name] != nil
		m.configMaps[o.Name] = o
	case *corev1.Secret:
		meta, kind, dup = o.ObjectMeta, "Secret", m.secrets[o.Name] != nil
		m.secrets[o.Name] = o
	case *corev1.Service:
		meta, kind, dup = o.ObjectMeta, "Service", m.services[o.Name] != nil
		m.services[o.Name] = o
	case *corev1.ServiceAccount:
		meta, kind, dup = o.ObjectMeta, "ServiceAccount", m.accounts[o.Name] != nil
		m.accounts[o.Name] = o
	case *corev1.PersistentVolumeClaim:
		meta, kind, dup = o.ObjectMeta, "PersistentVolumeClaim", m.claims[o.Name] != nil
		m.claims[o.Name] = o
	case *corev1.Pod:
		meta, kind, dup = o.ObjectMeta, "Pod", m.pods[o.Name] != nil
		m.pods[o.Name] = o
	case *appsv1.Deployment:
		meta, kind, dup = o.ObjectMeta, "Deployment", m.deployments[o.Name] != nil
		m.deployments[o.Name] = o
	case *policyv1.PodDisruptionBudget:
		meta, kind, dup = o.ObjectMeta, "PodDisruptionBudget", m.budgets[o.Name] != nil
		m.budgets[o.Name] = o
	case *autoscalingv2.HorizontalPodAutoscaler:
		meta, kind, dup = o.ObjectMeta, "HorizontalPodAutoscaler", m.autoscalers[o.Name] != nil
		m.autoscalers[o.Name] = o
	case *monitoringv1.ServiceMonitor:
		meta, kind, dup = o.ObjectMeta, "ServiceMonitor", m.monitors[o.Name] != nil
		m.monitors[o.Name] = o
	}
	where := kind + " " + meta.Name
	if dup {
		p.add("%s is rendered twice", where)
	}
	checkMeta(where, kind, meta, p)
}

// checkMeta applies the API server's name and label rules.
func checkMeta(where, kind string, meta metav1.ObjectMeta, p *problems) {
	if meta.Name == "" {
		p.add("%s: no metadata.name", where)
	}
	nameRule := validation.IsDNS1123Subdomain
	if kind == "Service" {
		nameRule = validation.IsDNS1035Label
	}
	for _, msg := range nameRule(meta.Name) {
		p.add("%s: name: %s", where, msg)
	}
	checkLabels(where+": label", meta.Labels, p)
	for k := range meta.Annotations {
		for _, msg := range validation.IsQualifiedName(strings.ToLower(k)) {
			p.add("%s: annotation %q: %s", where, k, msg)
		}
	}
}

func checkLabels(where string, l map[string]string, p *problems) {
	for k, v := range l {
		for _, msg := range validation.IsQualifiedName(k) {
			p.add("%s %q: %s", where, k, msg)
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			p.add("%s %q value %q: %s", where, k, v, msg)
		}
	}
}

func (m *manifests) check(p *problems) {
	for name, d := range m.deployments {
		where := "Deployment " + name
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || d.Spec.Selector == nil || sel.Empty() {
			p.add("%s: spec.selector is missing or invalid", where)
		} else if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			p.add("%s: spec.selector does not match the pod template's labels", where)
		}
		checkLabels(where+": pod label", d.Spec.Template.Labels, p)
		m.checkPod(where, &d.Spec.Template.Spec, p)
	}
	for name, pod := range m.pods {
		m.checkPod("Pod "+name, &pod.Spec, p)
	}
	for name, s := range m.services {
		where := "Service " + name
		if len(s.Spec.Selector) == 0 {
			p.add("%s: no selector", where)
			continue
		}
		d := m.deploymentFor(labels.SelectorFromSet(s.Spec.Selector))
		if d == nil {
			p.add("%s: selector %v matches no Deployment's pods", where, s.Spec.Selector)
			continue
		}
		for _, port := range s.Spec.Ports {
			for _, msg := range validation.IsValidPortName(port.Name) {
				p.add("%s: port name %q: %s", where, port.Name, msg)
			}
			if port.TargetPort.Type == intstr.String && !hasPort(&d.Spec.Template.Spec, port.TargetPort.StrVal) {
				p.add("%s: targetPort %q is no container port of Deployment %s", where, port.TargetPort.StrVal, d.Name)
			}
		}
	}
	for name, b := range m.budgets {
		where := "PodDisruptionBudget " + name
		sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
		if err != nil || sel.Empty() || m.deploymentFor(sel) == nil {
			p.add("%s: selector matches no Deployment's pods", where)
		}
		if (b.Spec.MinAvailable == nil) == (b.Spec.MaxUnavailable == nil) {
			p.add("%s: set exactly one of minAvailable and maxUnavailable", where)
		}
	}
	for name, h := range m.autoscalers {
		where := "HorizontalPodAutoscaler " + name
		ref := h.Spec.ScaleTargetRef
		d, ok := m.deployments[ref.Name]
		if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || !ok {
			p.add("%s: scaleTargetRef %s %s %s is not a rendered Deployment", where, ref.APIVersion, ref.Kind, ref.Name)
		} else if d.Spec.Replicas != nil {
			p.add("%s: Deployment %s sets spec.replicas, which would fight the autoscaler on every upgrade", where, ref.Name)
		}
		if h.Spec.MinReplicas != nil && *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			p.add("%s: minReplicas > maxReplicas", where)
		}
		if len(h.Spec.Metrics) == 0 {
			p.add("%s: no metrics", where)
		}
	}
	for name, sm := range m.monitors {
		where := "ServiceMonitor " + name
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil || sel.Empty() {
			p.add("%s: empty or invalid selector", where)
			continue
		}
		var matched []*corev1.Service
		for _, s := range m.services {
			if sel.Matches(labels.Set(s.Labels)) {
				matched = append(matched, s)
			}
		}
		if len(matched) == 0 {
			p.add("%s: selector matches no rendered Service's labels", where)
		}
		for _, ep := range sm.Spec.Endpoints {
			for _, s := range matched {
				found := false
				for _, port := range s.Spec.Ports {
					found = found || port.Name == ep.Port
				}
				if !found && !strings.HasSuffix(s.Name, "-headless") {
					p.add("%s: endpoint port %q is not a port of Service %s", where, ep.Port, s.Name)
				}
			}
		}
	}
}

func (m *manifests) deploymentFor(sel labels.Selector) *appsv1.Deployment {
	for _, d := range m.deployments {
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			return d
		}
	}
	return nil
}

func hasPort(spec *corev1.PodSpec, name string) bool {
	for _, c := range spec.Containers {
		for _, port := range c.Ports {
			if port.Name == name {
				return true
			}
		}
	}
	return false
}

// checkPod holds the pod-level promises: references resolve, probes point at declared ports,
// and every container runs non-root, read-only, without privilege escalation or capabilities.
func (m *manifests) checkPod(where string, spec *corev1.PodSpec, p *problems) {
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		if volumes[v.Name] {
			p.add("%s: volume %q defined twice", where, v.Name)
		}
		volumes[v.Name] = true
		for _, msg := range validation.IsDNS1123Label(v.Name) {
			p.add("%s: volume name %q: %s", where, v.Name, msg)
		}
		switch {
		case v.ConfigMap != nil:
			if m.configMaps[v.ConfigMap.Name] == nil && !m.externalCM[v.ConfigMap.Name] {
				p.add("%s: volume %q: ConfigMap %q is not rendered", where, v.Name, v.ConfigMap.Name)
			}
		case v.Secret != nil:
			if m.secrets[v.Secret.SecretName] == nil && !m.externalSecr[v.Secret.SecretName] {
				p.add("%s: volume %q: Secret %q is not rendered", where, v.Name, v.Secret.SecretName)
			}
		case v.PersistentVolumeClaim != nil:
			if m.claims[v.PersistentVolumeClaim.ClaimName] == nil && !m.externalPVC[v.PersistentVolumeClaim.ClaimName] {
				p.add("%s: volume %q: PersistentVolumeClaim %q is not rendered", where, v.Name, v.PersistentVolumeClaim.ClaimName)
			}
		}
	}
	if sa := spec.ServiceAccountName; sa != "" && sa != "default" && m.accounts[sa] == nil {
		p.add("%s: ServiceAccount %q is not rendered", where, sa)
	}
	if len(spec.Containers) == 0 {
		p.add("%s: no containers", where)
	}
	podNonRoot := spec.SecurityContext != nil && spec.SecurityContext.RunAsNonRoot != nil && *spec.SecurityContext.RunAsNonRoot
	all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	names := map[string]bool{}
	for _, c := range all {
		cw := fmt.Sprintf("%s: container %q", where, c.Name)
		if names[c.Name] {
			p.add("%s: defined twice", cw)
		}
		names[c.Name] = true
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			p.add("%s: name: %s", cw, msg)
		}
		if c.Image == "" || strings.ContainsAny(c.Image, " \t") {
			p.add("%s: bad image %q", cw, c.Image)
		}
		ports := map[string]bool{}
		for _, port := range c.Ports {
			if port.Name == "" {
				continue
			}
			for _, msg := range validation.IsValidPortName(port.Name) {
				p.add("%s: port name %q: %s", cw, port.Name, msg)
			}
			ports[port.Name] = true
		}
		for kind, probe := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
			if probe == nil || probe.HTTPGet == nil {
				continue
			}
			if pt := probe.HTTPGet.Port; pt.Type == intstr.String && !ports[pt.StrVal] {
				p.add("%s: %s port %q is not a declared container port", cw, kind, pt.StrVal)
			}
		}
		for _, vm := range c.VolumeMounts {
			if !volumes[vm.Name] {
				p.add("%s: mounts undefined volume %q", cw, vm.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				ref := e.ValueFrom.SecretKeyRef
				if s := m.secrets[ref.Name]; s != nil {
					if _, ok := s.Data[ref.Key]; !ok {
						if _, ok := s.StringData[ref.Key]; !ok {
							p.add("%s: env %s: Secret %s has no key %q", cw, e.Name, ref.Name, ref.Key)
						}
					}
				} else if !m.externalSecr[ref.Name] {
					p.add("%s: env %s: Secret %q is not rendered", cw, e.Name, ref.Name)
				}
			}
		}
		sc := c.SecurityContext
		nonRoot := podNonRoot || (sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot)
		if !nonRoot {
			p.add("%s: runAsNonRoot is not set", cw)
		}
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			p.add("%s: readOnlyRootFilesystem is not true", cw)
		}
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			p.add("%s: allowPrivilegeEscalation is not false", cw)
		}
		if sc == nil || sc.Capabilities == nil || !dropsAll(sc.Capabilities.Drop) {
			p.add("%s: capabilities do not drop ALL", cw)
		}
		for res, req := range c.Resources.Requests {
			if lim, ok := c.Resources.Limits[res]; ok && req.Cmp(lim) > 0 {
				p.add("%s: %s request %s exceeds its limit %s", cw, res, req.String(), lim.String())
			}
		}
		if _, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok {
			p.add("%s: no memory request", cw)
		}
	}
}

func dropsAll(caps []corev1.Capability) bool {
	for _, c := range caps {
		if c == "ALL" {
			return true
		}
	}
	return false
}

// checkSessiondFiles checks what sessiond itself will read from the rendered objects.
func (m *manifests) checkSessiondFiles(p *problems) {
	for name, cm := range m.configMaps {
		if text, ok := cm.Data["config.toml"]; ok {
			checkSessiondConfig("ConfigMap "+name, text, p)
		}
	}
	for name, s := range m.secrets {
		where := "Secret " + name
		if b, ok := s.Data["callers.toml"]; ok {
			checkCallersFile(where, string(b), p)
		}
		if b, ok := s.Data["store-uri"]; ok {
			checkStoreURI(where+": store-uri", string(b), p)
		}
		if b, ok := s.Data["pepper"]; ok && len(b) < 32 {
			p.add("%s: pepper has %d bytes, sessiond needs at least 32", where, len(b))
		}
		if b, ok := s.Data["signing-key.pem"]; ok && !bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN PRIVATE KEY-----")) {
			p.add("%s: signing-key.pem is not a PKCS#8 PEM private key", where)
		}
	}
}

// writeSessiondFiles writes <ConfigMap>.config.toml and <Secret>.callers.toml into dir, for a
// sessiond binary to read back (scripts/check-deploy).
func (m *manifests) writeSessiondFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, cm := range m.configMaps {
		if text, ok := cm.Data["config.toml"]; ok {
			if err := os.WriteFile(filepath.Join(dir, name+".config.toml"), []byte(text), 0o600); err != nil {
				return err
			}
		}
	}
	for name, s := range m.secrets {
		if b, ok := s.Data["callers.toml"]; ok {
			if err := os.WriteFile(filepath.Join(dir, name+".callers.toml"), b, 0o600); err != nil {
				return err
			}
		}
	}
	return nil
}
