package main

import (
	"fmt"
	"os"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	// The extensions a typed_config may name. An unknown @type fails the check with a message
	// naming it: add its package here.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_web/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// validatable is what protoc-gen-validate generates on every Envoy API message.
type validatable interface {
	ValidateAll() error
}

func checkEnvoy(path string) int {
	var p problems
	raw, err := os.ReadFile(path)
	if err != nil {
		p.add("%v", err)
		return p.report(path)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		p.add("yaml: %v", err)
		return p.report(path)
	}
	var bs bootstrapv3.Bootstrap
	// Strict: an unknown or misspelt field, or an unknown @type, is an error.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, &bs); err != nil {
		p.add("envoy.config.bootstrap.v3.Bootstrap: %v", err)
		return p.report(path)
	}
	if err := bs.ValidateAll(); err != nil {
		p.add("bootstrap: %v", err)
	}
	anys := 0
	walkAnys(bs.ProtoReflect(), "bootstrap", &p, &anys)

	clusters := map[string]bool{}
	http2 := map[string]bool{}
	for _, c := range bs.GetStaticResources().GetClusters() {
		if clusters[c.GetName()] {
			p.add("cluster %q is defined twice", c.GetName())
		}
		clusters[c.GetName()] = true
		if opts, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; ok {
			var hpo upstreamhttpv3.HttpProtocolOptions
			if err := opts.UnmarshalTo(&hpo); err == nil && hpo.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil {
				http2[c.GetName()] = true
			}
		}
	}
	authz := 0
	for _, l := range bs.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(&hcm) != nil {
					continue
				}
				where := fmt.Sprintf("listener %q", l.GetName())
				checkRoutes(hcm.GetRouteConfig(), clusters, where, &p)
				filters := hcm.GetHttpFilters()
				if n := len(filters); n == 0 || !strings.HasSuffix(filters[n-1].GetTypedConfig().GetTypeUrl(), ".router.v3.Router") {
					p.add("%s: the last http filter must be the router", where)
				}
				for _, hf := range filters {
					var ea extauthzv3.ExtAuthz
					if hf.GetTypedConfig() == nil || hf.GetTypedConfig().UnmarshalTo(&ea) != nil {
						continue
					}
					authz++
					checkExtAuthz(&ea, clusters, http2, where, &p)
				}
			}
		}
	}
	if authz == 0 {
		p.add("no ext_authz filter: sessiond is not asked about any request")
	}
	if code := p.report(path); code != 0 {
		return code
	}
	fmt.Printf("  checked: envoy %s: Bootstrap v3 strict, %d typed configs unpacked and validated, %d clusters, %d ext_authz filter(s) fail closed\n",
		path, anys, len(clusters), authz)
	return 0
}

// walkAnys unpacks every google.protobuf.Any below m, validates it and walks into it.
func walkAnys(m protoreflect.Message, where string, p *problems, count *int) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := where + "." + string(fd.Name())
		switch {
		case fd.IsList() && fd.Message() != nil:
			list := v.List()
			for i := 0; i < list.Len(); i++ {
				visit(list.Get(i).Message(), fmt.Sprintf("%s[%d]", name, i), p, count)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				visit(mv.Message(), fmt.Sprintf("%s[%s]", name, k.String()), p, count)
				return true
			})
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			visit(v.Message(), name, p, count)
		}
		return true
	})
}

func visit(m protoreflect.Message, where string, p *problems, count *int) {
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		walkAnys(m, where, p, count)
		return
	}
	inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
	if err != nil {
		p.add("%s: %s: %v", where, a.GetTypeUrl(), err)
		return
	}
	*count++
	if v, ok := inner.(validatable); ok {
		if err := v.ValidateAll(); err != nil {
			p.add("%s (%s): %v", where, a.GetTypeUrl(), err)
		}
	}
	walkAnys(inner.ProtoReflect(), where+"<"+string(inner.ProtoReflect().Descriptor().Name())+">", p, count)
}

func checkRoutes(rc *routev3.RouteConfiguration, clusters map[string]bool, where string, p *problems) {
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if c := r.GetRoute().GetCluster(); c != "" && !clusters[c] {
				p.add("%s: route to unknown cluster %q", where, c)
			}
		}
	}
}

// checkExtAuthz holds the deployment's promises about the authorization filter.
func checkExtAuthz(ea *extauthzv3.ExtAuthz, clusters, http2 map[string]bool, where string, p *problems) {
	if ea.GetFailureModeAllow() {
		p.add("%s: ext_authz failure_mode_allow must be false (fail closed)", where)
	}
	if ea.GetWithRequestBody() != nil {
		p.add("%s: ext_authz with_request_body must stay off: sessiond decides on headers", where)
	}
	gs := ea.GetGrpcService()
	if gs == nil {
		p.add("%s: ext_authz must use grpc_service (sessiond's envoy.service.auth.v3.Authorization)", where)
		return
	}
	c := gs.GetEnvoyGrpc().GetClusterName()
	if !clusters[c] {
		p.add("%s: ext_authz names unknown cluster %q", where, c)
	} else if !http2[c] {
		p.add("%s: cluster %q carries gRPC and needs explicit_http_config.http2_protocol_options", where, c)
	}
	auth := false
	for _, md := range gs.GetInitialMetadata() {
		if strings.EqualFold(md.GetKey(), "authorization") && strings.HasPrefix(md.GetValue(), "Bearer ") {
			auth = true
		}
	}
	if !auth {
		p.add("%s: ext_authz initial_metadata lacks `authorization: Bearer <validator credential>`", where)
	}
}
