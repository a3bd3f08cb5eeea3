// Checks of uploads. See verify.hpp.
#include "core/s3/verify.hpp"

#include "core/s3/errors.hpp"
#include "core/strings.hpp"

namespace reportstore::s3 {

namespace {

bool IsKms(const std::string &sse) {
	return strings::StartsWith(strings::Lower(sse), "aws:kms");
}

} // namespace

bool EtagIsOpaque(const PutRequest &req, const http::Response &resp) {
	const std::string *sse = resp.Header("x-amz-server-side-encryption");
	return (sse && IsKms(*sse)) || IsKms(req.sse) ||
	       resp.Header("x-amz-server-side-encryption-customer-algorithm") != nullptr;
}

void CheckStoredObject(const PutRequest &req, const ObjectInfo &info, const std::string &sha256_hex) {
	if (info.size != req.body.size())
		throw IntegrityError("uploaded", req.bucket, req.key,
		                     "The stored object has " + std::to_string(info.size) + " bytes, " +
		                         std::to_string(req.body.size()) + " were sent.");
	const std::string *sha = info.Meta(kSha256MetaKey);
	if (!sha)
		throw IntegrityError("uploaded", req.bucket, req.key, "The stored object has no SHA-256 metadata.");
	if (strings::Lower(*sha) != sha256_hex)
		throw IntegrityError("uploaded", req.bucket, req.key,
		                     "The stored object's SHA-256 metadata is " + ServerText(*sha) + ", the body's is " +
		                         sha256_hex + ".");
}

} // namespace reportstore::s3
