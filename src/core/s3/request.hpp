// Building the signed HTTP requests of the S3 client: where a request goes
// (path-style or virtual-hosted), its SigV4 signature, its limits, and the
// headers of an upload.
#pragma once

#include <cstdint>
#include <string>

#include "core/aws/sigv4.hpp"
#include "core/http/engine.hpp"
#include "core/s3/client.hpp"

namespace reportstore::s3 {

// Largest response of a request that expects a few hundred bytes at most
// (PUT, HEAD, DELETE, multipart steps): anything bigger is not S3.
inline constexpr std::uint64_t kMaxSmallResponseBytes = 1u << 20;

// Where a request goes.
struct Target {
	std::string url;  // without query string
	std::string host; // Host header
	std::string path; // raw (decoded) path, as the signer wants it
};

// URL of an object, not validated (Client::ObjectUrl).
std::string ObjectUrlOf(const Config &config, const std::string &bucket, const std::string &key);
// An object; throws reportstore::Error when the bucket or the key is empty.
Target ObjectTarget(const Config &config, const std::string &bucket, const std::string &key);
// The bucket itself (list, lifecycle); throws when the bucket is empty.
Target BucketTarget(const Config &config, const std::string &bucket);

// The request to target with the query (encoded here), Host, the caller's
// headers and the signature headers. payload_hash is the hex SHA-256 of the
// body the caller sets. Its limits are the configured base timeouts and
// kMaxSmallResponseBytes; callers that move more bytes raise them.
http::Request SignedRequest(const Config &config, const aws::Signer &signer, const Target &target,
                            const std::string &method, const aws::QueryParams &query, http::Headers headers,
                            const std::string &payload_hash);

// Where the client's signer takes its credentials: config.credentials_provider,
// else the fixed config.credentials.
aws::CredentialsProviderPtr CredentialsOf(const Config &config);

// ?versionId=... when ref names a version.
aws::QueryParams VersionQuery(const ObjectRef &ref);

// Throws reportstore::Error (kConfig, 22023) on an invalid storage class,
// server-side encryption or KMS key id.
void ValidatePutOptions(const PutRequest &req);

// Headers of a PUT or CreateMultipartUpload: content type and encoding,
// storage class, encryption, the body's SHA-256 as metadata (kSha256MetaKey),
// the caller's metadata, and Content-MD5 when md5_base64 is not empty.
http::Headers PutHeaders(const PutRequest &req, const std::string &sha256_hex, const std::string &md5_base64);

} // namespace reportstore::s3
