package objstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// countRequests counts every attempt the SDK sends, retries included.
func (b *Bucket) countRequests(stack *middleware.Stack) error {
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("forgeCountRequests",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			b.requests.Add(1)
			return next.HandleFinalize(ctx, in)
		}), middleware.After)
}

// wrap turns an SDK error into one line that says what failed and what to
// check, keeping ErrNotFound and ErrPrecondition testable.
func (b *Bucket) wrap(op, key string, err error) error {
	what := "S3 " + op
	if key != "" {
		what += " " + key
	}
	what += " (" + b.loc.String() + ")"
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	// A server that cannot be reached: the SDK wraps the dial error in
	// a response error of status 0, so this is looked for first.
	var op2 *net.OpError
	var dns *net.DNSError
	if errors.As(err, &dns) || errors.As(err, &op2) {
		return fmt.Errorf("%s: cannot reach the endpoint: %s", what, firstLine(rootCause(err)))
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchBucket":
			return fmt.Errorf("%s: %w", what, ErrNoBucket)
		case "NoSuchKey", "NotFound":
			return fmt.Errorf("%s: %w", what, ErrNotFound)
		case "PreconditionFailed", "ConditionalRequestConflict":
			return fmt.Errorf("%s: %w", what, ErrPrecondition)
		case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken":
			return fmt.Errorf("%s: access denied (%s): check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE) and the bucket's permissions", what, api.ErrorCode())
		}
	}
	var resp *smithyhttp.ResponseError
	if errors.As(err, &resp) {
		switch resp.HTTPStatusCode() {
		case http.StatusNotFound:
			if key == "" {
				return fmt.Errorf("%s: %w", what, ErrNoBucket)
			}
			return fmt.Errorf("%s: %w", what, ErrNotFound)
		case http.StatusPreconditionFailed, http.StatusConflict:
			return fmt.Errorf("%s: %w", what, ErrPrecondition)
		case http.StatusForbidden, http.StatusUnauthorized:
			return fmt.Errorf("%s: access denied (HTTP %d): check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE) and the bucket's permissions", what, resp.HTTPStatusCode())
		}
		if resp.HTTPStatusCode() != 0 {
			return fmt.Errorf("%s: HTTP %d: %s", what, resp.HTTPStatusCode(), firstLine(rootCause(err)))
		}
	}
	return fmt.Errorf("%s: %s", what, firstLine(err))
}

// rootCause is the innermost wrapped error: the SDK's chain repeats the
// operation, the retries and the request before it.
func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
