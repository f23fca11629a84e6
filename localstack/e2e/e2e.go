// Package e2e drives the real mailrelay binary against a real LocalStack:
// `make e2e` starts LocalStack in host mode (localstack/run.sh), builds the
// binary and runs the tests here, which are behind the build tag e2e so that
// plain `go test ./...` needs no installed services.
package e2e
