package awsclient

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/sony/gobreaker/v2"

	"github.com/mailrelay/mailrelay/mailproc/failure"
)

// S3 fetches and deletes the raw mails SES stored in S3.
type S3 struct {
	client        *s3.Client
	dep           *dependency
	getTimeout    time.Duration
	deleteTimeout time.Duration
	maxBytes      int64
}

// Get returns the object's bytes. An object larger than MaxObjectBytes fails
// permanently with reason failure.ReasonMessageTooLarge, refused on its
// Content-Length before the body is read (and cut off by a limited reader
// should the length lie). Errors are classified (see Classify).
func (c *S3) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	var data []byte
	err := c.dep.do(ctx, "GetObject", c.getTimeout, func(ctx context.Context) error {
		out, err := c.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
		if err != nil {
			return fmt.Errorf("s3 get %s/%s: %w", bucket, key, err)
		}
		defer out.Body.Close()
		if n := out.ContentLength; n != nil && *n > c.maxBytes {
			return failure.Permanentf(failure.ReasonMessageTooLarge, "s3 get %s/%s: object is %d bytes, limit %d", bucket, key, *n, c.maxBytes)
		}
		var buf bytes.Buffer
		if n := out.ContentLength; n != nil && *n > 0 {
			buf.Grow(int(*n))
		}
		n, err := io.Copy(&buf, io.LimitReader(out.Body, c.maxBytes+1))
		if err != nil {
			return fmt.Errorf("s3 get %s/%s: reading body: %w", bucket, key, err)
		}
		if n > c.maxBytes {
			return failure.Permanentf(failure.ReasonMessageTooLarge, "s3 get %s/%s: object exceeds limit %d", bucket, key, c.maxBytes)
		}
		data = buf.Bytes()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return data, nil
}

// Delete removes the object. Deleting a missing object succeeds (S3
// semantics), so a retried Delete is harmless.
func (c *S3) Delete(ctx context.Context, bucket, key string) error {
	return c.dep.do(ctx, "DeleteObject", c.deleteTimeout, func(ctx context.Context) error {
		if _, err := c.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &key}); err != nil {
			return fmt.Errorf("s3 delete %s/%s: %w", bucket, key, err)
		}
		return nil
	})
}

// BreakerState reports the S3 breaker's state.
func (c *S3) BreakerState() gobreaker.State { return c.dep.state() }
