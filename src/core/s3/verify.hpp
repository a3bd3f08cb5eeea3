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

} // namespace reportstore::s3
