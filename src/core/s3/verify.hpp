// Checks of an upload against what the S3 server reports, shared by single
// PUTs and multipart uploads.
#pragma once

#include <string>

#include "core/http/engine.hpp"
#include "core/s3/client.hpp"

namespace reportstore::s3 {

// With SSE-KMS or SSE-C (asked for or reported by the server) an ETag is not
// the MD5 of the bytes, so it proves nothing about them.
bool EtagIsOpaque(const PutRequest &req, const http::Response &resp);

// Throws an integrity error unless the stored object (from a HEAD) has the
// size of req.body and sha256_hex as its SHA-256 metadata.
void CheckStoredObject(const PutRequest &req, const ObjectInfo &info, const std::string &sha256_hex);

// The error of a refused upload (PutObject or CreateMultipartUpload). When a
// storage class was asked for and the server calls the request a bad
// argument, it names the class: AWS answers InvalidStorageClass, Ceph RGW a
// bare InvalidArgument (no message) for a class its placement lacks.
Error UploadError(const PutRequest &req, const http::Response &resp);

// sse = AES256 (SSE-S3) asked for: the answer to the PUT or
// CreateMultipartUpload must confirm it (AWS, MinIO and moto echo
// x-amz-server-side-encryption). Ceph RGW 16 accepts the header, stores the
// object unencrypted and says nothing: such an upload must not count as
// encrypted. Throws kConfig (0A000) naming `step`.
void CheckSseS3Confirmed(const PutRequest &req, const http::Response &resp, const char *step);

} // namespace reportstore::s3
