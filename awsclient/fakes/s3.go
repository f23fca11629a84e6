package fakes

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// S3 is a fake Amazon S3: gofakes3 with its in-memory backend, served on
// 127.0.0.1 behind a Faults wrapper. Clients must use path-style
// addressing (awsclient does with any endpoint override).
type S3 struct {
	backend *s3mem.Backend
	faults  *Faults
	srv     *httptest.Server
}

// NewS3 starts a fake S3 on 127.0.0.1 on a free port.
func NewS3() (*S3, error) { return NewS3On("") }

// NewS3On starts a fake S3 on addr ("" for 127.0.0.1 on a free port).
func NewS3On(addr string) (*S3, error) {
	backend := s3mem.New()
	faker := gofakes3.New(backend)
	s := &S3{backend: backend, faults: &Faults{}}
	srv, err := startServer(addr, s.faults.Wrap(faker.Server()))
	if err != nil {
		return nil, fmt.Errorf("fake s3: %w", err)
	}
	s.srv = srv
	return s, nil
}

// URL is the server's base URL ("http://127.0.0.1:port").
func (s *S3) URL() string { return s.srv.URL }

// Faults injects failures into the next requests and counts requests.
func (s *S3) Faults() *Faults { return s.faults }

// Close stops the server, waiting for requests in flight.
func (s *S3) Close() { s.srv.Close() }

// Put stores data at bucket/key, creating the bucket if needed. It goes to
// the backend directly: no request is counted or faulted.
func (s *S3) Put(bucket, key string, data []byte) error {
	if err := s.backend.CreateBucket(bucket); err != nil && !gofakes3.HasErrorCode(err, gofakes3.ErrBucketAlreadyExists) {
		return fmt.Errorf("fake s3: create bucket %s: %w", bucket, err)
	}
	if _, err := s.backend.PutObject(bucket, key, map[string]string{}, bytes.NewReader(data), int64(len(data)), nil); err != nil {
		return fmt.Errorf("fake s3: put %s/%s: %w", bucket, key, err)
	}
	return nil
}

// Has reports whether bucket/key exists.
func (s *S3) Has(bucket, key string) bool {
	obj, err := s.backend.HeadObject(bucket, key)
	if err == nil && obj.Contents != nil {
		obj.Contents.Close()
	}
	return err == nil
}

// Get returns the bytes stored at bucket/key.
func (s *S3) Get(bucket, key string) ([]byte, error) {
	obj, err := s.backend.GetObject(bucket, key, nil)
	if err != nil {
		return nil, fmt.Errorf("fake s3: get %s/%s: %w", bucket, key, err)
	}
	if obj.Contents == nil {
		return nil, errors.New("fake s3: object without contents")
	}
	defer obj.Contents.Close()
	return io.ReadAll(obj.Contents)
}
