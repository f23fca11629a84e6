package awsclient

import (
	"context"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyauth "github.com/aws/smithy-go/auth"
	smithyendpoints "github.com/aws/smithy-go/endpoints"
)

// maxCachedEndpoints bounds the S3 endpoint cache; the relay reads one or a
// few buckets, so it is never reached in practice (past it, endpoints are
// resolved on every call as without the cache).
const maxCachedEndpoints = 64

// s3EndpointCache remembers the S3 endpoints the SDK's rules resolve.
//
// The S3 client evaluates its endpoint rule set twice per call (once to
// pick the auth scheme, once to set the URL): about a tenth of the client's
// CPU per call on the relay's path. The answer depends only on the
// parameters in s3EndpointKey — the bucket, the region, the endpoint
// override and the flags; the object key, prefix and copy source are
// parameters too but the rules never read them — so it is cached per key.
// Errors are not cached. Every call gets its own copy of the endpoint's
// headers, properties and auth options, because the SDK writes into the
// auth options it is given.
type s3EndpointCache struct {
	next s3.EndpointResolverV2

	mu sync.RWMutex
	m  map[s3EndpointKey]smithyendpoints.Endpoint
}

func newS3EndpointCache(next s3.EndpointResolverV2) *s3EndpointCache {
	return &s3EndpointCache{next: next, m: make(map[s3EndpointKey]smithyendpoints.Endpoint)}
}

// optString and optBool keep "unset" apart from the zero value.
type optString struct {
	set bool
	s   string
}

type optBool uint8 // 0 unset, 1 false, 2 true

func strOf(p *string) optString {
	if p == nil {
		return optString{}
	}
	return optString{set: true, s: *p}
}

func boolOf(p *bool) optBool {
	switch {
	case p == nil:
		return 0
	case *p:
		return 2
	}
	return 1
}

// s3EndpointKey is every s3.EndpointParameters field the endpoint rules
// read (TestS3EndpointKeyCoversParameters fails when an SDK update adds
// one).
type s3EndpointKey struct {
	bucket, region, endpoint optString

	useFIPS, useDualStack, forcePathStyle, accelerate, useGlobalEndpoint,
	useObjectLambdaEndpoint, disableAccessPoints, disableMultiRegionAccessPoints,
	useArnRegion, useS3ExpressControlEndpoint, disableS3ExpressSessionAuth optBool
}

func s3KeyOf(p s3.EndpointParameters) s3EndpointKey {
	return s3EndpointKey{
		bucket:                         strOf(p.Bucket),
		region:                         strOf(p.Region),
		endpoint:                       strOf(p.Endpoint),
		useFIPS:                        boolOf(p.UseFIPS),
		useDualStack:                   boolOf(p.UseDualStack),
		forcePathStyle:                 boolOf(p.ForcePathStyle),
		accelerate:                     boolOf(p.Accelerate),
		useGlobalEndpoint:              boolOf(p.UseGlobalEndpoint),
		useObjectLambdaEndpoint:        boolOf(p.UseObjectLambdaEndpoint),
		disableAccessPoints:            boolOf(p.DisableAccessPoints),
		disableMultiRegionAccessPoints: boolOf(p.DisableMultiRegionAccessPoints),
		useArnRegion:                   boolOf(p.UseArnRegion),
		useS3ExpressControlEndpoint:    boolOf(p.UseS3ExpressControlEndpoint),
		disableS3ExpressSessionAuth:    boolOf(p.DisableS3ExpressSessionAuth),
	}
}

// ResolveEndpoint implements s3.EndpointResolverV2.
func (c *s3EndpointCache) ResolveEndpoint(ctx context.Context, params s3.EndpointParameters) (smithyendpoints.Endpoint, error) {
	k := s3KeyOf(params)
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return copyEndpoint(e), nil
	}
	e, err := c.next.ResolveEndpoint(ctx, params)
	if err != nil {
		return e, err
	}
	c.mu.Lock()
	if len(c.m) < maxCachedEndpoints {
		c.m[k] = copyEndpoint(e)
	}
	c.mu.Unlock()
	return copyEndpoint(e), nil
}

// copyEndpoint returns e with its own headers, properties and auth options
// (the URL is a value; the options' property maps are only read).
func copyEndpoint(e smithyendpoints.Endpoint) smithyendpoints.Endpoint {
	out := smithyendpoints.Endpoint{URI: e.URI, Headers: e.Headers.Clone()}
	for k, v := range e.Properties.Values() {
		out.Properties.Set(k, v)
	}
	if opts, ok := smithyauth.GetAuthOptions(&e.Properties); ok {
		cp := make([]*smithyauth.Option, len(opts))
		for i, o := range opts {
			oc := *o
			cp[i] = &oc
		}
		smithyauth.SetAuthOptions(&out.Properties, cp)
	}
	return out
}
