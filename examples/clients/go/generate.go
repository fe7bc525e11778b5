package main

// The stubs in gen/ are generated from proto/ by protoc with the plugins pinned as tools in
// go.mod: `PROTOC=protoc go generate` (PROTOC names the protoc command; scripts/test-clients
// uses the one grpcio-tools bundles). The M options place the package inside this module
// instead of at the proto's go_package.
//go:generate sh -c "mkdir -p gen && $PROTOC -I ../../../proto --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$(go tool -n protoc-gen-go-grpc) --go_out=gen --go_opt=paths=source_relative,Msessiond/v1/session.proto=sessiond.dev/examples/clients/go/gen/sessiond/v1 --go-grpc_out=gen --go-grpc_opt=paths=source_relative,Msessiond/v1/session.proto=sessiond.dev/examples/clients/go/gen/sessiond/v1 sessiond/v1/session.proto"
