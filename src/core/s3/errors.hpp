// How failed S3 exchanges become reportstore::Error: transport failures, S3
// XML error documents (classified by their code), bare status codes, and
// failed integrity checks. Messages never include credentials, and text from
// the server is repeated through ServerText.
#pragma once

#include <string>
#include <string_view>

#include "core/error.hpp"
#include "core/http/engine.hpp"

namespace reportstore::s3 {

// Server-provided text (codes, messages, ETags) as messages repeat it:
// printable ASCII, at most 300 bytes.
std::string ServerText(std::string_view text);

// "s3://bucket/key": how messages name an object.
std::string ObjectName(const std::string &bucket, const std::string &key);

// Maps a failed HTTP exchange to a reportstore::Error: transport failures,
// S3 XML error bodies (code, message, request id) and bare status codes.
// Transient: 5xx, SlowDown, RequestTimeout, timeouts, resets. Systemic:
// AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch, ExpiredToken,
// NoSuchBucket, connection refused, TLS errors. Never includes credentials.
Error ErrorFromResponse(const http::Response &resp, const std::string &operation, const std::string &bucket,
                        const std::string &key);

// The same for an operation on the bucket itself, with the whole message
// given; when access is denied the hint names the missing `permission`
// (e.g. "to list it (s3:ListBucket)").
Error BucketError(const http::Response &resp, const std::string &message, const char *permission);

// Bytes sent or received that do not match (kIntegrity, XX001). `what` is
// "uploaded" or "downloaded".
Error IntegrityError(const std::string &what, const std::string &bucket, const std::string &key,
                     const std::string &detail);

} // namespace reportstore::s3
