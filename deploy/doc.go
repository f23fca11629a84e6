// Package deploy checks the deployment files of mailrelay: the Helm chart,
// the Terraform module, the Grafana dashboard, the Prometheus alert rules and
// the Dockerfile. It is its own Go module so that Helm, the Kubernetes API
// types, the PromQL parser and HCL never enter the relay's module.
//
// The functions here are the parsing and rendering the tests build on:
// RenderChart renders the chart with the Helm library as `helm template`
// would, ParseDockerfile reads the stages of a Dockerfile, RetryWindow
// computes how long an SNS HTTP/S delivery policy retries, and
// PromQLMetrics lists the metrics a PromQL expression reads.
//
// Run the checks with `cd deploy && go test ./...`.
package deploy
