package awsclient

import (
	"context"
	"reflect"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyauth "github.com/aws/smithy-go/auth"
)

// TestS3EndpointKeyCoversParameters fails when the SDK's endpoint
// parameters gain a field the cache key does not hold: the new field could
// change the endpoint, and the cache would then answer wrongly.
func TestS3EndpointKeyCoversParameters(t *testing.T) {
	// Parameters the rules never read, left out of the key on purpose.
	ignored := []string{"Key", "Prefix", "CopySource"}
	keyed := []string{"Bucket", "Region", "Endpoint", "UseFIPS", "UseDualStack", "ForcePathStyle",
		"Accelerate", "UseGlobalEndpoint", "UseObjectLambdaEndpoint", "DisableAccessPoints",
		"DisableMultiRegionAccessPoints", "UseArnRegion", "UseS3ExpressControlEndpoint",
		"DisableS3ExpressSessionAuth"}
	pt := reflect.TypeFor[s3.EndpointParameters]()
	for i := range pt.NumField() {
		name := pt.Field(i).Name
		if !slices.Contains(ignored, name) && !slices.Contains(keyed, name) {
			t.Errorf("s3.EndpointParameters.%s is not in the endpoint cache key", name)
		}
	}
	if got, want := reflect.TypeFor[s3EndpointKey]().NumField(), len(keyed); got != want {
		t.Errorf("s3EndpointKey has %d fields, want %d", got, want)
	}
}

// TestS3EndpointCache: the cached answer equals the rules' answer for each
// parameter set, differs where the parameters do, and every caller gets its
// own auth options.
func TestS3EndpointCache(t *testing.T) {
	ctx := context.Background()
	rules := s3.NewDefaultEndpointResolverV2()
	cache := newS3EndpointCache(rules)
	cases := []s3.EndpointParameters{
		{Bucket: aws.String("inbound"), Region: aws.String("us-east-1"), Key: aws.String("a")},
		{Bucket: aws.String("inbound"), Region: aws.String("us-east-1"), Key: aws.String("b")},
		{Bucket: aws.String("inbound"), Region: aws.String("eu-west-1"), Key: aws.String("a")},
		{Bucket: aws.String("other"), Region: aws.String("eu-west-1"), UseFIPS: aws.Bool(true)},
		{Bucket: aws.String("inbound"), Region: aws.String("us-east-1"), Endpoint: aws.String("http://127.0.0.1:4566"), ForcePathStyle: aws.Bool(true)},
		{Bucket: aws.String("inbound"), Region: aws.String("us-east-1"), UseDualStack: aws.Bool(true)},
	}
	for round := range 2 {
		for i, p := range cases {
			want, err := rules.ResolveEndpoint(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := cache.ResolveEndpoint(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if got.URI.String() != want.URI.String() || !reflect.DeepEqual(got.Headers, want.Headers) {
				t.Errorf("round %d case %d: got %s %v, want %s %v", round, i, got.URI.String(), got.Headers, want.URI.String(), want.Headers)
			}
			wo, _ := smithyauth.GetAuthOptions(&want.Properties)
			go1, _ := smithyauth.GetAuthOptions(&got.Properties)
			if !reflect.DeepEqual(wo, go1) {
				t.Errorf("round %d case %d: auth options %+v, want %+v", round, i, go1, wo)
			}
			again, _ := cache.ResolveEndpoint(ctx, p)
			go2, _ := smithyauth.GetAuthOptions(&again.Properties)
			if len(go1) > 0 && go1[0] == go2[0] {
				t.Errorf("round %d case %d: two callers share an auth option", round, i)
			}
		}
	}
	if n := len(cache.m); n != len(cases)-1 {
		t.Errorf("%d cached endpoints, want %d (the object key is not part of the key)", n, len(cases)-1)
	}
	if _, err := cache.ResolveEndpoint(ctx, s3.EndpointParameters{}); err == nil {
		t.Error("no region: want the rules' error")
	}
}

// BenchmarkS3Endpoint compares the rules' evaluation with a cache hit; the
// S3 client resolves twice per call, four times per mail (Get, Delete).
func BenchmarkS3Endpoint(b *testing.B) {
	ctx := context.Background()
	p := s3.EndpointParameters{Bucket: aws.String("inbound"), Region: aws.String("us-east-1"), Key: aws.String("mail/abc"),
		ForcePathStyle: aws.Bool(false), UseFIPS: aws.Bool(false), UseDualStack: aws.Bool(false)}
	for _, r := range []struct {
		name string
		r    s3.EndpointResolverV2
	}{{"rules", s3.NewDefaultEndpointResolverV2()}, {"cached", newS3EndpointCache(s3.NewDefaultEndpointResolverV2())}} {
		b.Run(r.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.r.ResolveEndpoint(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
